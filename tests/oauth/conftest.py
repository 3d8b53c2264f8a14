"""OAuth fixtures: a clinic with a public patient app and a private_key_jwt system client."""

from __future__ import annotations

import json

import pytest
from card_support import login
from cryptography.hazmat.primitives.asymmetric import ec
from oauth_support import REDIRECT
from oauth_support import b64

from authz.extensions import db as flask_db
from authz.registry import service as registry


@pytest.fixture
def setup(demo_app):
    with demo_app.app_context():
        session = flask_db.session()
        from authz.keys import service as keys

        keys.ensure_keys(session, demo_app.config["AUTHZ_KEK_BYTES"])
        clinic = registry.add_institution(session, registry.InstitutionSpec(
            "テスト診療所", "clinic", "1300000001"), actor="test")
        app_client = registry.add_client(session, registry.ClientSpec(
            institution=clinic.id, name="Patient app", auth_method="none",
            redirect_uris=[REDIRECT], scope="openid profile offline_access consents"),
            actor="test")
        private = ec.generate_private_key(ec.SECP256R1())
        numbers = private.public_key().public_numbers()
        jwks = {"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1",
                          "x": b64(numbers.x.to_bytes(32, "big")),
                          "y": b64(numbers.y.to_bytes(32, "big"))}]}
        system = registry.add_client(session, registry.ClientSpec(
            institution=clinic.id, name="Clinic system", auth_method="private_key_jwt",
            redirect_uris=[], scope="decisions", jwks=json.dumps(jwks)), actor="test")
        ids = (app_client.client_id, system.client_id, clinic.id)
        flask_db.session.remove()
    return {"public": ids[0], "system": ids[1], "institution": ids[2], "key": private}


@pytest.fixture
def logged_in(demo_app, browser, issue, setup):
    login(browser, issue())
    return browser


