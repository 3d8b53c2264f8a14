"""Per-client FAPI requirements: ``require_pushed_authorization_requests`` (RFC 9126 §6) and
``dpop_bound_access_tokens`` (RFC 9449 §5.2), set with ``authz client add``."""

from __future__ import annotations

import hashlib
import json

import pytest
from oauth_support import REDIRECT
from test_code_flow import approve
from test_code_flow import authorize_params
from test_code_flow import code_from
from test_code_flow import exchange
from test_code_flow import pkce
from test_dpop_flow import TOKEN_URL
from test_dpop_flow import Holder
from test_dpop_flow import token_request
from test_par import consent

import authz.cli
from authz.extensions import db as flask_db
from authz.oauth.models import RefreshToken
from authz.registry import service as registry


@pytest.fixture
def strict(demo_app, setup):
    """A public app of the clinic that must push its requests and bind its tokens."""
    with demo_app.app_context():
        client = registry.add_client(flask_db.session(), registry.ClientSpec(
            institution=setup["institution"], name="Strict app", auth_method="none",
            redirect_uris=[REDIRECT], scope="openid offline_access", require_par=True,
            dpop_bound=True), actor="test")
        client_id = client.client_id
        flask_db.session.remove()
    return client_id


def test_cli_flags_and_the_rfc_names_in_json(runner, create_institution):
    institution = create_institution().id
    result = runner.invoke(authz.cli.authz_cli, [
        "client", "add", "--institution", institution, "--name", "FAPI app",
        "--auth-method", "none", "--redirect-uri", "https://app.example/cb",
        "--scope", "openid", "--require-par", "--dpop-bound", "--json"])
    assert result.exit_code == 0, result.output
    created = json.loads(result.stdout)
    assert created["require_pushed_authorization_requests"] is True
    assert created["dpop_bound_access_tokens"] is True
    plain = runner.invoke(authz.cli.authz_cli, [
        "client", "add", "--institution", institution, "--name", "Plain app",
        "--auth-method", "none", "--redirect-uri", "https://app.example/cb",
        "--scope", "openid", "--json"])
    body = json.loads(plain.stdout)
    assert body["require_pushed_authorization_requests"] is False
    assert body["dpop_bound_access_tokens"] is False
    shown = json.loads(runner.invoke(authz.cli.authz_cli, [
        "client", "show", created["client_id"], "--json"]).stdout)
    assert shown["require_pushed_authorization_requests"] is True


def test_require_par_without_redirect_uri_is_a_usage_error(runner, create_institution):
    result = runner.invoke(authz.cli.authz_cli, [
        "client", "add", "--institution", create_institution().id, "--name", "System",
        "--auth-method", "private_key_jwt", "--scope", "decisions", "--require-par"])
    assert result.exit_code == 2
    assert result.stderr.startswith("authz: error:")


def test_a_require_par_client_must_push(demo_app, logged_in, setup, strict):
    _verifier, challenge = pkce()
    direct = logged_in.get("/oauth/authorize", query_string=authorize_params(
        strict, challenge, scope="openid offline_access"))
    assert direct.status_code == 400
    assert "Location" not in direct.headers
    assert "invalid_request" in direct.get_data(as_text=True)
    # other clients of the same service are not affected
    assert logged_in.get("/oauth/authorize", query_string=authorize_params(
        setup["public"], challenge)).status_code == 200


def test_a_dpop_bound_client_gets_tokens_only_with_a_proof(demo_app, logged_in, strict):
    client = demo_app.test_client()
    holder = Holder().ready(client)
    verifier, challenge = pkce()
    pushed = client.post("/oauth/par", data=authorize_params(
        strict, challenge, scope="openid offline_access"))
    assert pushed.status_code == 201, pushed.get_json()
    code = code_from(consent(logged_in, {"client_id": strict,
                                         "request_uri": pushed.get_json()["request_uri"]}))
    code = code["code"][0]
    bare = exchange(client, {"public": strict}, code, verifier)
    assert (bare.status_code, bare.get_json()["error"]) == (400, "invalid_dpop_proof")
    assert "access_token" not in bare.get_json()
    bound = token_request(client, {"public": strict}, code, verifier,
                          holder.proof("POST", TOKEN_URL))
    assert bound.status_code == 200, bound.get_json()
    tokens = bound.get_json()
    assert tokens["token_type"] == "DPoP"
    with demo_app.app_context():
        row = flask_db.session().get(
            RefreshToken, hashlib.sha256(tokens["refresh_token"].encode()).hexdigest())
        assert row.dpop_jkt == holder.jkt  # the refresh token is bound too
    refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
               "client_id": strict}
    refused = client.post("/oauth/token", data=refresh)
    assert (refused.status_code, refused.get_json()["error"]) == (400, "invalid_dpop_proof")
    rotated = client.post("/oauth/token", data=refresh,
                          headers={"DPoP": holder.proof("POST", TOKEN_URL)})
    assert rotated.status_code == 200, rotated.get_json()


def test_other_clients_still_get_bearer_tokens(demo_app, logged_in, setup, strict):
    verifier, challenge = pkce()
    code = code_from(approve(logged_in, authorize_params(setup["public"], challenge)))["code"][0]
    response = exchange(demo_app.test_client(), setup, code, verifier)
    assert response.get_json()["token_type"] == "Bearer"
