"""No parameter value, however malformed, makes an OAuth endpoint answer 5xx.

Authlib builds some error descriptions from request values and refuses characters outside
RFC 6749's set with a ValueError; these cases are where that once turned into a 500.
"""

from __future__ import annotations

import pytest
from test_code_flow import authorize_params
from test_code_flow import pkce

FIELDS = ["response_type", "scope", "state", "nonce", "prompt", "max_age", "code_challenge",
          "code_challenge_method", "redirect_uri", "client_id", "resource", "claims",
          "authorization_details"]
VALUES = ['"x\\', "é", "\x00"]


@pytest.mark.parametrize("value", VALUES)
@pytest.mark.parametrize("field", FIELDS)
def test_authorization_and_par_never_fail_with_5xx(demo_app, logged_in, setup, field, value):
    _verifier, challenge = pkce()
    params = {**authorize_params(setup["public"], challenge), field: value}
    assert logged_in.get("/oauth/authorize", query_string=params).status_code < 500
    assert demo_app.test_client().post("/oauth/par", data=params).status_code < 500


@pytest.mark.parametrize("value", VALUES)
def test_token_endpoint_never_fails_with_5xx(demo_app, value):
    response = demo_app.test_client().post("/oauth/token", data={
        name: value for name in ("grant_type", "code", "client_id", "redirect_uri",
                                 "code_verifier", "refresh_token", "scope", "resource")})
    assert response.status_code == 400
