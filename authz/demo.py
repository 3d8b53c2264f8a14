"""Demo mode (``AUTHZ_DEMO=1``): fictitious institutions and demo cards, created once.

Every name, address and code here is made up; nothing models a real person or institution.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from authz.registry import service as registry
from authz.registry.models import Institution

# Codes are made up in the 10-digit shape of Japan's institution codes; no real institution.
DEMO_INSTITUTIONS = (
    registry.InstitutionSpec("デモ総合病院 (Demo General Hospital)", "hospital", "1399999901",
                             roles=("physician", "dentist", "pharmacist", "nurse",
                                    "emergency_physician"), emergency=True),
    registry.InstitutionSpec("デモ内科クリニック (Demo Clinic)", "clinic", "1399999902",
                             roles=("physician", "nurse")),
    registry.InstitutionSpec("デモ薬局 (Demo Pharmacy)", "pharmacy", "1349999903",
                             roles=("pharmacist",)),
    registry.InstitutionSpec("デモ訪問看護ステーション (Demo Home Care)", "care_provider",
                             "1369999904", roles=("care_worker", "nurse", "physician")),
    registry.InstitutionSpec("デモ市役所 (Demo City Office)", "municipality", "DEMO-MUNI-1",
                             roles=("municipal_officer",)),
    registry.InstitutionSpec("デモ医学研究所 (Demo Research Institute)", "research",
                             "DEMO-RES-1", roles=("researcher",)),
    registry.InstitutionSpec("デモ診療記録サーバ (Demo Record Server)", "resource_server",
                             "DEMO-RS-1"),
)
# A record-only demo patient (no card, no personal attributes) holding consents in every
# state, so the decision API and the consent lifecycle can be tried at once.
DEMO_PATIENT = "acct_demo_patient"
DEMO_PIN = "1234"
DEMO_PASSWORD = "DEMO2026"  # noqa: S105 - the published password of a demo card
AUDITOR_CARD = "kansa.json"


@dataclass(frozen=True)
class DemoCard:
    file: str
    name: str
    birthdate: str
    gender: str
    address: str
    note: str
    note_ja: str
    password: str | None = DEMO_PASSWORD
    moved_to: str | None = None


DEMO_CARDS = (
    DemoCard("hanako.json", "見本\u3000花子", "1985-03-15", "female",
             "東京都千代田区見本町一丁目1番1号", "adult: login and identity proofing",
             "成人：ログインと本人確認"),
    DemoCard("taro.json", "見本\u3000太郎", "2016-08-01", "male",
             "東京都千代田区見本町一丁目1番1号",
             "under 15: authentication certificate only, login-only account",
             "15歳未満：利用者証明用証明書のみ、ログイン専用のアカウント", password=None),
    DemoCard("jiro.json", "見本\u3000次郎", "1970-11-03", "male",
             "東京都千代田区見本町二丁目2番2号",
             "moved: first signature certificate revoked (affiliationChanged), new one issued",
             "転居：最初の署名用証明書は失効（affiliationChanged）、新しい証明書を発行済み",
             moved_to="大阪府大阪市北区見本町三丁目3番3号"),
    DemoCard(AUDITOR_CARD, "見本\u3000監子", "1978-05-20", "female",
             "東京都千代田区見本町四丁目4番4号",
             "the demo auditor: logs in at /auditor (registered with `authz auditor add`)",
             "デモ監査人：/auditor にログイン（authz auditor add で登録済み）"),
)


def seed(session: Session) -> list[str]:
    """Register the demo institutions that are missing; return the codes added."""
    have = set(session.execute(select(Institution.code)).scalars())
    session.rollback()
    added = []
    for spec in DEMO_INSTITUTIONS:
        if spec.code not in have:
            registry.add_institution(session, spec, actor="system:demo")
            added.append(spec.code)
    if added:
        _seed_consents(session)
    from flask import current_app

    ensure_clinic_app(session, current_app.config["AUTHZ_ISSUER"],
                      Path(current_app.instance_path))
    return added


def _seed_consents(session: Session) -> None:
    """Consents of the record-only demo patient: active, expired, revoked, narrowed, a deny."""
    import functools
    from datetime import timedelta

    from flask import current_app

    from authz.consent import service
    from authz.consent.models import PairwiseSubject
    from authz.database import utcnow
    from authz.database import write
    from authz.identity.crypto import IdentityKeys
    from authz.identity.models import Account

    by_type = {row.type: row.id for row in session.execute(select(Institution)).scalars()}
    session.rollback()
    now = utcnow()
    keys = IdentityKeys.from_kek(current_app.config["AUTHZ_KEK_BYTES"])
    with write(session):
        if session.get(Account, DEMO_PATIENT) is None:
            session.add(Account(id=DEMO_PATIENT, person_link_id="demo-record-only-patient",
                                assurance="login_only", created_at=now, updated_at=now))
            session.flush()
            # Each demo institution knows the demo patient by its own pairwise id.
            for institution_id in by_type.values():
                session.add(PairwiseSubject(
                    institution_id=institution_id, account_id=DEMO_PATIENT,
                    sub=keys.pairwise_sub(DEMO_PATIENT, institution_id), created_at=now))
    capture = service.Capture(method="demo", acr=None, auth_time=None,
                              provenance={"source": "demo"})
    grant = functools.partial(service.grant, session, patient_id=DEMO_PATIENT, capture=capture,
                              now=now)
    grant(institution_id=by_type["clinic"], purpose="treatment_visit",
          categories=["medication", "lab_results", "drug_allergy"], end=None)
    grant(institution_id=by_type["pharmacy"], purpose="dispensing",
          categories=["medication", "eprescription"], end=now + timedelta(days=90))
    # A visit consent that lapses a second after the seed: it reads as expired from then on.
    grant(institution_id=by_type["clinic"], purpose="treatment_visit", categories=["surgery"],
          end=now + timedelta(seconds=1))
    revoked = grant(institution_id=by_type["hospital"], purpose="treatment_referral",
                    categories=["referral_letter"], end=now + timedelta(days=30))
    service.revoke(session, revoked.id, patient_id=DEMO_PATIENT, now=now)
    narrowed = grant(institution_id=by_type["care_provider"], purpose="home_or_online_care",
                     categories=["medication", "prescriptions", "other_allergy"],
                     end=now + timedelta(days=180))
    service.narrow(session, narrowed.id, patient_id=DEMO_PATIENT,
                   categories=["medication", "prescriptions"], now=now)
    grant(institution_id=by_type["research"], purpose="secondary_use",
          categories=["lab_results"], end=now + timedelta(days=365))
    grant(institution_id=None, purpose=service.ANY_PURPOSE,
          categories=["mental_health", "genetic"], end=None, decision="deny")


def issue_cards(instance: Path) -> list[tuple[Path, DemoCard]]:
    """Issue the demo cards into ``INSTANCE/demo-cards`` (once); return every card's path."""
    from authz.sim import lifecycle
    from authz.sim.authority import SimAuthority
    from authz.sim.card import VirtualCard

    sim = SimAuthority.open(instance / "jpki-sim")
    folder = instance / "demo-cards"
    folder.mkdir(parents=True, exist_ok=True)
    cards = []
    for card in DEMO_CARDS:
        path = folder / card.file
        if not path.exists():
            lifecycle.issue_card(sim, name=card.name, birthdate=card.birthdate,
                                 gender=card.gender, address=card.address, pin=DEMO_PIN,
                                 password=card.password, out=path)
            if card.moved_to:
                lifecycle.move(sim, VirtualCard.load(path), address=card.moved_to,
                               password=card.password)
        cards.append((path, card))
    return cards


def register_auditor(session: Session, cards: list[tuple[Path, DemoCard]]) -> None:
    """Register the holder of the demo auditor card, as ``authz auditor add --card`` does."""
    from authz.api.identity import verifier
    from authz.audit import auditors
    from authz.audit.models import Auditor
    from authz.sim.card import AUTH_CERT
    from authz.sim.card import VirtualCard

    path = next(path for path, card in cards if card.file == AUDITOR_CARD)
    resolver = verifier()
    link = resolver.links.resolve(VirtualCard.load(path).certificate_der(AUTH_CERT),
                                  resolver.audience)
    known = session.execute(select(Auditor.id).where(
        Auditor.person_link_id == link.person_link_id)).scalar_one_or_none()
    session.rollback()
    if known is None:
        auditors.add(session, link.person_link_id, actor="system:demo")


def describe(cards: list[tuple[Path, DemoCard]]) -> str:
    """The console listing shown at start, so a newcomer can log in at once."""
    lines = ["Demo cards (fictitious people; PIN " + DEMO_PIN + "):"]
    for path, card in cards:
        secret = f", password {card.password}" if card.password else ""
        lines.append(f"  {path}  {card.name.replace(chr(0x3000), ' ')}: {card.note}{secret}")
    lines.append("Log in: open /login, then run")
    lines.append(f"  authz card respond --card {cards[0][0]} --pin {DEMO_PIN}"
                 f" --password {DEMO_PASSWORD} --link '<the page's card link>'")
    return "\n".join(lines)


# -- the demo clinic's app (a relying party served by the demo itself, /demo/clinic) ----------

CLINIC_CODE = "1399999902"
CLINIC_APP = "demo-clinic-app"  # authorization code + PKCE + RAR; the patient logs in
CLINIC_SYSTEM = "demo-clinic-system"  # client credentials, scope `decisions`
CLINIC_KEYS = "demo-clinic-keys.json"  # the two clients' private keys, instance folder, 0600
CLINIC_CALLBACK = "/demo/clinic/callback"


@dataclass(frozen=True)
class ClinicClients:
    """The demo clinic's two registered clients and their private keys (PEM)."""

    institution: str
    app_key: str
    system_key: str


def _clinic_keys(instance: Path) -> dict[str, str]:
    import os

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    path = instance / CLINIC_KEYS
    if path.exists():
        stored = json.loads(path.read_text())
        if isinstance(stored, dict) and all(isinstance(stored.get(k), str)
                                            for k in (CLINIC_APP, CLINIC_SYSTEM)):
            return {k: stored[k] for k in (CLINIC_APP, CLINIC_SYSTEM)}
    made = {name: ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode() for name in (CLINIC_APP, CLINIC_SYSTEM)}
    instance.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(made, handle)
    return made


def public_jwks(private_pem: str) -> str:
    """The JWKS (one ES256 key, kid ``k1``) registered for a demo client."""
    from joserfc.jwk import ECKey

    key = ECKey.import_key(private_pem)
    public = key.as_dict(private=False)
    return json.dumps({"keys": [{"kty": "EC", "crv": "P-256", "x": public["x"],
                                 "y": public["y"], "kid": "k1", "use": "sig",
                                 "alg": "ES256"}]})


def ensure_clinic_app(session: Session, issuer: str, instance: Path) -> ClinicClients | None:
    """Register the demo clinic's app and system clients when missing (or when the issuer,
    hence the redirect URI, changed); None when the demo clinic is not registered."""
    from authz.registry.models import Client

    clinic = session.execute(select(Institution).where(
        Institution.code == CLINIC_CODE)).scalar_one_or_none()
    session.rollback()
    if clinic is None:
        return None
    keys = _clinic_keys(instance)
    redirect_uri = issuer.rstrip("/") + CLINIC_CALLBACK
    wanted = {
        CLINIC_APP: registry.ClientSpec(
            institution=clinic.id, name="デモ内科クリニック 受付アプリ (Demo Clinic app)",
            auth_method="private_key_jwt", redirect_uris=[redirect_uri], scope="openid",
            jwks=public_jwks(keys[CLINIC_APP]), client_id=CLINIC_APP),
        CLINIC_SYSTEM: registry.ClientSpec(
            institution=clinic.id, name="デモ内科クリニック 記録システム (Demo Clinic records)",
            auth_method="private_key_jwt", redirect_uris=[], scope="decisions",
            jwks=public_jwks(keys[CLINIC_SYSTEM]), client_id=CLINIC_SYSTEM)}
    for client_id, spec in wanted.items():
        row = session.get(Client, client_id)
        current = row is not None and list(row.redirect_uris) == list(spec.redirect_uris) \
            and row.jwks == json.loads(str(spec.jwks))
        session.rollback()
        if current:
            continue
        if row is not None:
            registry.delete_client(session, client_id, actor="system:demo")
        registry.add_client(session, spec, actor="system:demo")
    return ClinicClients(clinic.id, keys[CLINIC_APP], keys[CLINIC_SYSTEM])
