"""Consent fixtures: a patient's token for the patient API and an institution's decision token."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import pytest
from card_support import login
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwt
from joserfc.jwk import ECKey
from sqlalchemy import select
from sqlalchemy import text

from authz.audit.models import AuditEvent
from authz.consent.models import PairwiseSubject
from authz.database import utcnow
from authz.database import write
from authz.extensions import db as flask_db
from authz.keys import service as keys
from authz.registry import service as registry

ISSUER = "http://127.0.0.1:8000"
REDIRECT = "https://app.example/cb"


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _jwks(private: ec.EllipticCurvePrivateKey) -> str:
    numbers = private.public_key().public_numbers()
    return json.dumps({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1",
                                 "x": b64(numbers.x.to_bytes(32, "big")),
                                 "y": b64(numbers.y.to_bytes(32, "big"))}]})


class World:
    """A patient app, a clinic, a hospital registered for emergencies, a pharmacy."""

    def __init__(self, app):
        self.app = app
        self.keys = {}
        with app.app_context():
            session = flask_db.session()
            keys.ensure_keys(session, app.config["AUTHZ_KEK_BYTES"])
            portal = registry.add_institution(session, registry.InstitutionSpec(
                "患者ポータル", "resource_server", "9900000001"), actor="test")
            self.patient_app = registry.add_client(session, registry.ClientSpec(
                institution=portal.id, name="Patient app", auth_method="none",
                redirect_uris=[REDIRECT], scope="openid profile offline_access consents"),
                actor="test").client_id
            self.portal = portal.id
            self.institutions = {}
            self.systems = {}
            self.web_clients = {}
            for name, kind, code, roles, emergency in (
                    ("テスト診療所", "clinic", "1300000001", ["physician", "nurse"], False),
                    ("テスト病院", "hospital", "1300000002",
                     ["physician", "emergency_physician"], True),
                    ("テスト薬局", "pharmacy", "1300000003", ["pharmacist"], False)):
                institution = registry.add_institution(session, registry.InstitutionSpec(
                    name, kind, code, roles=roles, emergency=emergency), actor="test")
                private = ec.generate_private_key(ec.SECP256R1())
                system = registry.add_client(session, registry.ClientSpec(
                    institution=institution.id, name=f"{name} system",
                    auth_method="private_key_jwt", redirect_uris=[], scope="decisions",
                    jwks=_jwks(private)), actor="test")
                self.web_clients[kind] = registry.add_client(session, registry.ClientSpec(
                    institution=institution.id, name=f"{name} web", auth_method="none",
                    redirect_uris=[REDIRECT], scope="openid"), actor="test").client_id
                self.institutions[kind] = institution.id
                self.systems[kind] = system.client_id
                self.keys[kind] = private
            flask_db.session.remove()

    def add_system(self, name, kind, scope, redirect_uris=()):
        """Another private_key_jwt client of the ``kind`` institution (``portal`` for the
        patient portal), known as ``name``."""
        private = ec.generate_private_key(ec.SECP256R1())
        institution = self.portal if kind == "portal" else self.institutions[kind]
        with self.app.app_context():
            system = registry.add_client(flask_db.session(), registry.ClientSpec(
                institution=institution, name=f"{name} system",
                auth_method="private_key_jwt", redirect_uris=list(redirect_uris), scope=scope,
                jwks=_jwks(private)), actor="test").client_id
            flask_db.session.remove()
        self.systems[name] = system
        self.keys[name] = private
        return system

    def assertion(self, kind):
        key = ECKey.import_key(self.keys[kind])
        now = int(time.time())
        return jwt.encode({"alg": "ES256", "kid": "k1"}, {
            "iss": self.systems[kind], "sub": self.systems[kind], "aud": ISSUER,
            "iat": now, "exp": now + 60, "jti": secrets.token_urlsafe(12)}, key)

    def system_token(self, client, kind, scope="decisions"):
        assertion = self.assertion(kind)
        response = client.post("/oauth/token", data={
            "grant_type": "client_credentials", "scope": scope,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion})
        assert response.status_code == 200, response.get_json()
        return response.get_json()["access_token"]

    def patient_token(self, browser, scope="openid consents", client=None):
        """A patient's token through the code flow: of the public patient app, or of the
        private_key_jwt client ``client`` (a name given to ``add_system``)."""
        client_id = self.systems[client] if client else self.patient_app
        verifier = secrets.token_urlsafe(48)
        challenge = b64(hashlib.sha256(verifier.encode()).digest())
        params = {"response_type": "code", "client_id": client_id,
                  "redirect_uri": REDIRECT, "scope": scope, "state": "s1",
                  "nonce": secrets.token_urlsafe(8), "code_challenge": challenge,
                  "code_challenge_method": "S256"}
        page = browser.get("/oauth/authorize", query_string=params)
        assert page.status_code == 200, page.status_code
        csrf = page.get_data(as_text=True).split('name="csrf" value="')[1].split('"')[0]
        answer = browser.post("/oauth/authorize", query_string=params,
                              data={"csrf": csrf, "decision": "approve"},
                              headers={"Origin": ISSUER})
        assert answer.status_code == 302, answer.status_code
        code = parse_qs(urlsplit(answer.headers["Location"]).query)["code"][0]
        authentication = {"client_id": client_id} if client is None else {
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": self.assertion(client)}
        response = browser.post("/oauth/token", data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
            "code_verifier": verifier, **authentication})
        assert response.status_code == 200, response.get_json()
        return response.get_json()["access_token"]

    def pairwise(self, account_id, kind):
        return self.pairwise_at(account_id, self.institutions[kind])

    def pairwise_at(self, account_id, institution_id):
        from authz.identity.crypto import IdentityKeys
        return IdentityKeys.from_kek(self.app.config["AUTHZ_KEK_BYTES"]).pairwise_sub(
            account_id, institution_id)

    def know(self, account_id, kind):
        """Record the institution's pairwise sub for the patient (as its first token would)."""
        with self.app.app_context():
            session = flask_db.session()
            with write(session):
                if session.get(PairwiseSubject, (self.institutions[kind],
                                                 self.pairwise(account_id, kind))) is None:
                    session.add(PairwiseSubject(
                        institution_id=self.institutions[kind],
                        sub=self.pairwise(account_id, kind), account_id=account_id,
                        created_at=utcnow()))
            flask_db.session.remove()
        return self.pairwise(account_id, kind)

    def ask(self, account_id, kind, **overrides):
        """A decision request of the ``kind`` institution about the patient."""
        return {"patient": self.pairwise(account_id, kind), "categories": ["medication"],
                "action": "read", "purpose": "treatment_visit", "role": "physician",
                "practitioner": "dr-001", **overrides}


def account_of(app, token):
    """The account behind a patient's access token."""
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    with app.app_context():
        from authz.oauth.models import AccessToken
        from authz.oauth.models import Grant
        account = flask_db.session.execute(
            select(Grant.account_id).join(AccessToken, AccessToken.grant_id == Grant.id)
            .where(AccessToken.jti == claims["jti"])).scalar_one()
        flask_db.session.remove()
    return account


COUNTED = ("consents", "consent_versions", "emergency_accesses", "pairwise_subjects",
           "audit_events")


def stored(app):
    """What a refused request must leave alone: row counts, every consent's version and
    status, and the audit event types in order."""
    with app.app_context():
        session = flask_db.session()
        state = {table: session.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
                 for table in COUNTED}
        state["consent_rows"] = [tuple(row) for row in session.execute(text(
            "SELECT id, version, status, category_mask FROM consents ORDER BY id"))]
        types = list(session.execute(select(AuditEvent.type).order_by(AuditEvent.seq))
                     .scalars())
        flask_db.session.remove()
    return state, types


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def world(demo_app):
    return World(demo_app)


@pytest.fixture
def patient(demo_app, browser, issue, world):
    """A logged-in patient: (browser, access token, account id)."""
    login(browser, issue())
    token = world.patient_token(browser)
    return browser, token, account_of(demo_app, token)


@pytest.fixture
def other_patient(demo_app, issue, world):
    """A second logged-in patient with their own browser: (browser, token, account id)."""
    browser = demo_app.test_client()
    login(browser, issue(name="佐藤\u3000一郎", birthdate="1970-07-07", gender="male"))
    token = world.patient_token(browser)
    return browser, token, account_of(demo_app, token)
