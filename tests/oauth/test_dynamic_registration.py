"""RFC 7591 registration with an initial access token, RFC 7592 management, through the real
endpoints; each refusal leaves clients, registrations and token uses as they were."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import threading
import time
from datetime import timedelta
from typing import Any
from typing import NamedTuple
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from oauth_support import ISSUER
from oauth_support import b64
from sqlalchemy import func
from sqlalchemy import select

from authz.audit.models import HEAD_ID
from authz.audit.models import AuditHead
from authz.audit.verify import verify_database
from authz.database import utcnow
from authz.extensions import db as flask_db
from authz.oauth import registration
from authz.oauth.models import AccessToken
from authz.registry import service as registry
from authz.registry.models import Client
from authz.registry.models import ClientRegistration
from authz.registry.models import RegistrationToken

NATIVE = "jp.example.clinic:/cb"


class Stored(NamedTuple):
    clients: int
    registrations: int
    uses_left: int
    audit_seq: int


def stored(app) -> Stored:
    with app.app_context():
        session = flask_db.session()
        try:
            return Stored(
                session.execute(select(func.count()).select_from(Client)).scalar_one(),
                session.execute(select(func.count()).select_from(ClientRegistration))
                .scalar_one(),
                session.execute(select(func.coalesce(func.sum(RegistrationToken.uses_left), 0)))
                .scalar_one(),
                session.execute(select(AuditHead.seq).where(AuditHead.id == HEAD_ID))
                .scalar_one())
        finally:
            flask_db.session.remove()


def initial_token(app, institution: str, *, uses: int = 1, lifetime=timedelta(hours=1),
                  issued=None) -> tuple[str, str]:
    with app.app_context():
        row, token = registration.issue_initial_token(
            flask_db.session(), institution, lifetime=lifetime, uses=uses, actor="test",
            now=issued or utcnow())
        ids = row.id, token
        flask_db.session.remove()
    return ids


def es256_key():
    private = ec.generate_private_key(ec.SECP256R1())
    numbers = private.public_key().public_numbers()
    jwk = {"kty": "EC", "crv": "P-256", "kid": "dcr-1",
           "x": b64(numbers.x.to_bytes(32, "big")), "y": b64(numbers.y.to_bytes(32, "big"))}
    return private, jwk


def system_metadata(jwk: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"client_name": "Clinic scheduler", "token_endpoint_auth_method": "private_key_jwt",
            "grant_types": ["client_credentials"], "scope": "decisions",
            "jwks": {"keys": [jwk]}, **extra}


def app_metadata(**extra: Any) -> dict[str, Any]:
    return {"client_name": "Patient app", "token_endpoint_auth_method": "none",
            "redirect_uris": [NATIVE], "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"], "scope": "openid consents", **extra}


def post(client, token: str | None, body: Any, **kw: Any):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if isinstance(body, bytes | str):
        return client.post("/oauth/register", data=body, headers=headers,
                           content_type=kw.get("content_type", "application/json"))
    return client.post("/oauth/register", json=body, headers=headers)


def manage(client, method: str, client_id: str, token: str, body: Any = None):
    return client.open(f"/oauth/register/{client_id}", method=method, json=body,
                       headers={"Authorization": f"Bearer {token}"})


def assertion(client_id: str, key) -> str:
    now = int(time.time())
    return jwt.encode({"iss": client_id, "sub": client_id, "aud": ISSUER,
                       "jti": secrets.token_urlsafe(16), "iat": now, "exp": now + 60},
                      key, algorithm="ES256", headers={"kid": "dcr-1"})


def client_credentials(client, client_id: str, key):
    return client.post("/oauth/token", data={
        "grant_type": "client_credentials", "scope": "decisions",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion(client_id, key)})


def audit_types(app) -> list[dict[str, Any]]:
    with app.app_context():
        from sqlalchemy import text

        records = [json.loads(r) for r in flask_db.session().execute(
            text("SELECT record FROM audit_events ORDER BY seq")).scalars()]
        flask_db.session.remove()
    return records


def test_register_a_private_key_jwt_client_and_use_it(demo_app, setup):
    _, token = initial_token(demo_app, setup["institution"])
    assert token.startswith("azit_") and len(token) >= len("azit_") + 43  # 256 bits
    key, jwk = es256_key()
    http = demo_app.test_client()
    before = stored(demo_app)
    response = post(http, token, system_metadata(jwk, institution="ins_forged"))
    assert response.status_code == 201, response.get_json()
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    client_id = body["client_id"]
    assert body["registration_client_uri"] == f"{ISSUER}/oauth/register/{client_id}"
    assert body["registration_access_token"].startswith("azrat_")
    assert isinstance(body["client_id_issued_at"], int)
    assert body["token_endpoint_auth_method"] == "private_key_jwt"
    assert body["grant_types"] == ["client_credentials"]
    assert body["jwks"] == {"keys": [jwk]}
    assert "client_secret" not in body
    assert stored(demo_app)[:3] == (before.clients + 1, before.registrations + 1,
                                     before.uses_left - 1)
    with demo_app.app_context():
        row = flask_db.session().get(Client, client_id)
        # the token's institution, never the one the request names
        assert row.institution_id == setup["institution"]
        registered = flask_db.session().get(ClientRegistration, client_id)
        assert registered.token_hash == hashlib.sha256(
            body["registration_access_token"].encode()).hexdigest()
        flask_db.session.remove()

    issued = client_credentials(http, client_id, key)
    assert issued.status_code == 200, issued.get_json()
    claims = jwt.decode(issued.get_json()["access_token"], options={"verify_signature": False})
    assert claims["client_id"] == client_id
    added = [r for r in audit_types(demo_app) if r["type"] == "registry.client_added"
             and r.get("client") == client_id]
    assert added and added[0]["actor"].startswith("registration_token:rit_")
    with demo_app.app_context():
        assert verify_database(flask_db.session()).ok
        flask_db.session.remove()


def test_register_a_public_client_that_runs_the_code_flow_with_pkce(demo_app, setup, logged_in):
    _, token = initial_token(demo_app, setup["institution"])
    http = demo_app.test_client()
    response = post(http, token, app_metadata())
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["response_types"] == ["code"]
    assert "jwks" not in body
    verifier = secrets.token_urlsafe(48)
    params = {"response_type": "code", "client_id": body["client_id"], "redirect_uri": NATIVE,
              "scope": "openid consents", "state": "s1", "nonce": "n1",
              "code_challenge": b64(hashlib.sha256(verifier.encode()).digest()),
              "code_challenge_method": "S256"}
    page = logged_in.get("/oauth/authorize", query_string=params)
    assert page.status_code == 200, page.get_data(as_text=True)[:300]
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    approved = logged_in.post("/oauth/authorize", query_string=params,
                              data={"csrf": csrf, "decision": "approve"},
                              headers={"Origin": ISSUER})
    assert approved.status_code == 302
    code = parse_qs(urlsplit(approved.headers["Location"]).query)["code"][0]
    exchanged = http.post("/oauth/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": NATIVE,
        "client_id": body["client_id"], "code_verifier": verifier})
    assert exchanged.status_code == 200, exchanged.get_json()
    assert "id_token" in exchanged.get_json()


def test_read_replace_and_delete_a_registration(demo_app, setup):
    _, token = initial_token(demo_app, setup["institution"])
    key, jwk = es256_key()
    http = demo_app.test_client()
    created = post(http, token, system_metadata(jwk, dpop_bound_access_tokens=False)).get_json()
    client_id, secret = created["client_id"], created["registration_access_token"]

    read = manage(http, "GET", client_id, secret)
    assert read.status_code == 200
    assert read.get_json() == created

    replacement = {**system_metadata(jwk), "client_id": client_id, "client_name": "Renamed",
                   "redirect_uris": ["https://clinic.example/cb"],
                   "grant_types": ["authorization_code", "client_credentials"],
                   "scope": "openid decisions", "require_pushed_authorization_requests": True}
    replaced = manage(http, "PUT", client_id, secret, replacement)
    assert replaced.status_code == 200, replaced.get_json()
    body = replaced.get_json()
    assert body["client_name"] == "Renamed"
    assert body["redirect_uris"] == ["https://clinic.example/cb"]
    assert body["require_pushed_authorization_requests"] is True
    assert body["registration_access_token"] == secret

    # Full replacement: what is omitted is removed.
    trimmed = manage(http, "PUT", client_id, secret, {**system_metadata(jwk),
                                                      "client_id": client_id})
    assert trimmed.status_code == 200, trimmed.get_json()
    assert trimmed.get_json()["redirect_uris"] == []
    assert trimmed.get_json()["require_pushed_authorization_requests"] is False

    issued = client_credentials(http, client_id, key).get_json()["access_token"]
    jti = jwt.decode(issued, options={"verify_signature": False})["jti"]
    before = stored(demo_app)
    deleted = manage(http, "DELETE", client_id, secret)
    assert deleted.status_code == 204
    assert deleted.get_data() == b""
    with demo_app.app_context():
        session = flask_db.session()
        assert session.get(Client, client_id).enabled is False
        assert session.get(AccessToken, jti).revoked_at is not None
        flask_db.session.remove()
    assert stored(demo_app).registrations == before.registrations - 1
    assert manage(http, "GET", client_id, secret).status_code == 401
    refused = client_credentials(http, client_id, key)
    assert refused.get_json()["error"] == "invalid_client"
    types = [r["type"] for r in audit_types(demo_app)]
    assert {"registry.client_replaced", "registry.client_disabled",
            "registry.client_deregistered"} <= set(types)


def test_management_refuses_other_clients_and_bad_tokens(demo_app, setup):
    _, token = initial_token(demo_app, setup["institution"], uses=2)
    http = demo_app.test_client()
    first = post(http, token, app_metadata()).get_json()
    second = post(http, token, app_metadata(client_name="Other app")).get_json()
    # Another client's id answers exactly as an unknown one: existence is not revealed.
    answers = [manage(http, method, cid, tok, body)
               for method, body in (("GET", None), ("PUT", {**app_metadata(),
                                                            "client_id": second["client_id"]}),
                                    ("DELETE", None))
               for cid, tok in ((second["client_id"], first["registration_access_token"]),
                                ("cl_unknown", first["registration_access_token"]),
                                (first["client_id"], "azrat_wrong"),
                                (first["client_id"], token))]
    for answer in answers:
        assert answer.status_code == 401
        assert answer.get_json()["error"] == "invalid_token"
        assert answer.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
    missing = http.get(f"/oauth/register/{first['client_id']}")
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    with demo_app.app_context():
        assert flask_db.session().get(Client, second["client_id"]).name == "Other app"
        flask_db.session.remove()


def test_replace_is_validated_like_registration_and_stores_nothing_when_refused(
        demo_app, setup):
    _, token = initial_token(demo_app, setup["institution"])
    http = demo_app.test_client()
    created = post(http, token, app_metadata()).get_json()
    client_id, secret = created["client_id"], created["registration_access_token"]
    before = stored(demo_app)
    cases = [
        ({**app_metadata(), "client_id": "cl_other"}, "invalid_client_metadata"),
        (app_metadata(), "invalid_client_metadata"),  # client_id missing
        ({**app_metadata(redirect_uris=["http://clinic.example/cb"]), "client_id": client_id},
         "invalid_redirect_uri"),
        ({**app_metadata(scope="openid decisions"), "client_id": client_id},
         "invalid_client_metadata"),
    ]
    for body, error in cases:
        answer = manage(http, "PUT", client_id, secret, body)
        assert answer.status_code == 400, body
        assert answer.get_json()["error"] == error
    after = stored(demo_app)
    assert after[:3] == before[:3]
    assert after.audit_seq == before.audit_seq + len(cases)  # one refusal event each
    assert manage(http, "GET", client_id, secret).get_json() == created


def _jwks_with_private_key() -> dict[str, Any]:
    private, jwk = es256_key()
    d = private.private_numbers().private_value.to_bytes(32, "big")
    return {"keys": [{**jwk, "d": b64(d)}]}


REFUSED_METADATA = {
    "private key in jwks": (lambda jwk: system_metadata(jwk, jwks=_jwks_with_private_key()),
                            "invalid_client_metadata"),
    "jwks_uri": (lambda jwk: {**system_metadata(jwk), "jwks_uri": "https://c.example/jwks"},
                 "invalid_client_metadata"),
    "client_secret_basic": (lambda jwk: system_metadata(
        jwk, token_endpoint_auth_method="client_secret_basic"), "invalid_client_metadata"),
    "unknown auth method": (lambda jwk: system_metadata(
        jwk, token_endpoint_auth_method="tls_client_auth"), "invalid_client_metadata"),
    "implicit grant": (lambda jwk: app_metadata(grant_types=["implicit"]),
                       "invalid_client_metadata"),
    "password grant": (lambda jwk: app_metadata(grant_types=["password"]),
                       "invalid_client_metadata"),
    "hybrid response": (lambda jwk: app_metadata(response_types=["code id_token"]),
                        "invalid_client_metadata"),
    "public client credentials": (lambda jwk: app_metadata(grant_types=["client_credentials"]),
                                  "invalid_client_metadata"),
    "http redirect": (lambda jwk: system_metadata(
        jwk, redirect_uris=["http://clinic.example/cb"]), "invalid_redirect_uri"),
    "fragment redirect": (lambda jwk: app_metadata(redirect_uris=["https://a.example/#x"]),
                          "invalid_redirect_uri"),
    "scope of another institution type": (lambda jwk: system_metadata(
        jwk, scope="introspect"), "invalid_client_metadata"),
    "public client with a confidential scope": (lambda jwk: app_metadata(
        scope="openid decisions"), "invalid_client_metadata"),
    "software statement": (lambda jwk: {**app_metadata(), "software_statement": "e30.e30.x"},
                           "invalid_software_statement"),
    "no name": (lambda jwk: {k: v for k, v in app_metadata().items() if k != "client_name"},
                "invalid_client_metadata"),
    "flag of the wrong type": (lambda jwk: app_metadata(dpop_bound_access_tokens="yes"),
                               "invalid_client_metadata"),
    "ES384 assertions": (lambda jwk: system_metadata(
        jwk, token_endpoint_auth_signing_alg="ES384"), "invalid_client_metadata"),
    "garbage": (lambda jwk: b"{not json", "invalid_client_metadata"),
    "not an object": (lambda jwk: b"[1, 2]", "invalid_client_metadata"),
    "NaN": (lambda jwk: b'{"client_name": NaN}', "invalid_client_metadata"),
    "duplicate members": (lambda jwk: (
        '{"client_name": "a", "client_name": "b", "token_endpoint_auth_method": "none",'
        ' "redirect_uris": ["jp.example.clinic:/cb"], "scope": "openid"}'),
        "invalid_client_metadata"),
    "duplicate nested members": (lambda jwk: json.dumps(system_metadata(jwk)).replace(
        '"kty": "EC"', '"kty": "EC", "kty": "EC"'), "invalid_client_metadata"),
    "oversized": (lambda jwk: app_metadata(client_uri="x" * registration.MAX_BODY),
                  "invalid_client_metadata"),
}


@pytest.mark.parametrize("case", sorted(REFUSED_METADATA))
def test_refused_metadata_stores_nothing(demo_app, setup, case):
    make, error = REFUSED_METADATA[case]
    _, token = initial_token(demo_app, setup["institution"])
    http = demo_app.test_client()
    before = stored(demo_app)
    response = post(http, token, make(es256_key()[1]))
    assert response.status_code == 400, response.get_json()
    body = response.get_json()
    assert body["error"] == error
    assert body["error_description"]
    assert response.headers["Cache-Control"] == "no-store"
    after = stored(demo_app)
    assert after[:3] == before[:3]  # no client, no registration, the token use is given back
    refusals = [r for r in audit_types(demo_app) if r["type"] == "registry.registration_refused"]
    assert after.audit_seq == before.audit_seq + 1
    assert refusals[-1]["reason"] == error
    assert refusals[-1]["outcome"] == "failure"
    assert post(http, token, app_metadata()).status_code == 201  # the use was not spent


def test_client_secret_methods_are_named_as_unsupported(demo_app, setup):
    _, token = initial_token(demo_app, setup["institution"])
    response = post(demo_app.test_client(), token, app_metadata(
        token_endpoint_auth_method="client_secret_post"))
    assert "not supported" in response.get_json()["error_description"]


def test_a_form_body_is_refused(demo_app, setup):
    _, token = initial_token(demo_app, setup["institution"])
    before = stored(demo_app)
    response = post(demo_app.test_client(), token, "client_name=x",
                    content_type="application/x-www-form-urlencoded")
    assert response.get_json()["error"] == "invalid_client_metadata"
    assert stored(demo_app)[:3] == before[:3]


def _expired(app, institution):
    return initial_token(app, institution, issued=utcnow() - timedelta(hours=2))[1]


def _used(app, institution):
    token = initial_token(app, institution)[1]
    assert post(app.test_client(), token, app_metadata()).status_code == 201
    return token


def _revoked(app, institution):
    token_id, token = initial_token(app, institution)
    with app.app_context():
        registration.revoke_initial_token(flask_db.session(), token_id, actor="test",
                                          now=utcnow())
        flask_db.session.remove()
    return token


BAD_TOKENS = {
    "unknown": lambda app, institution: "azit_" + secrets.token_urlsafe(32),
    "expired": _expired,
    "used": _used,
    "revoked": _revoked,
    "malformed": lambda app, institution: "azit_ bad\u00e9",
}


@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
def test_bad_initial_tokens_are_refused_with_a_bearer_challenge(demo_app, setup, case):
    token = BAD_TOKENS[case](demo_app, setup["institution"])
    before = stored(demo_app)
    response = demo_app.test_client().post(
        "/oauth/register", json=app_metadata(),
        headers={"Authorization": f"Bearer {token}".encode().decode("latin-1")})
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_token"
    assert response.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
    assert stored(demo_app) == before  # not even an audit event: nobody was authenticated


@pytest.mark.parametrize("header", [None, "Basic dXNlcjpwYXNz", "Bearer", "DPoP abc"])
def test_missing_initial_token(demo_app, setup, header):
    before = stored(demo_app)
    response = demo_app.test_client().post(
        "/oauth/register", json=app_metadata(),
        headers={"Authorization": header} if header else {})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert stored(demo_app) == before


def test_the_token_in_the_body_or_query_is_not_accepted(demo_app, setup):
    _, token = initial_token(demo_app, setup["institution"])
    http = demo_app.test_client()
    assert http.post("/oauth/register", json=app_metadata(access_token=token)).status_code == 401
    assert http.post(f"/oauth/register?access_token={token}",
                     json=app_metadata()).status_code == 401


def test_a_one_use_token_registers_one_client_under_concurrency(demo_app, setup):
    _, token = initial_token(demo_app, setup["institution"])
    before = stored(demo_app)
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def register(name: str) -> None:
        http = demo_app.test_client()
        barrier.wait()
        statuses.append(post(http, token, app_metadata(client_name=name)).status_code)

    threads = [threading.Thread(target=register, args=(f"App {n}",)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [201, 401]
    after = stored(demo_app)
    assert after.clients == before.clients + 1
    assert after.uses_left == before.uses_left - 1


def test_multi_use_token_counts_down(demo_app, setup):
    token_id, token = initial_token(demo_app, setup["institution"], uses=2)
    http = demo_app.test_client()
    assert post(http, token, app_metadata()).status_code == 201
    assert post(http, token, app_metadata()).status_code == 201
    assert post(http, token, app_metadata()).status_code == 401
    with demo_app.app_context():
        assert flask_db.session().get(RegistrationToken, token_id).uses_left == 0
        flask_db.session.remove()


def test_registration_is_rate_limited(demo_app, setup):
    http = demo_app.test_client()
    answers = [http.post("/oauth/register", json={}).status_code for _ in range(21)]
    assert answers[:20] == [401] * 20
    assert answers[20] == 429


def test_registry_delete_removes_the_registration(demo_app, setup):
    _, token = initial_token(demo_app, setup["institution"])
    created = post(demo_app.test_client(), token, app_metadata()).get_json()
    with demo_app.app_context():
        registry.delete_client(flask_db.session(), created["client_id"], actor="test")
        flask_db.session.remove()
    assert stored(demo_app).registrations == 0


def test_discovery_names_the_registration_endpoint(demo_app):
    http = demo_app.test_client()
    for path in ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"):
        assert http.get(path).get_json()["registration_endpoint"] == f"{ISSUER}/oauth/register"
