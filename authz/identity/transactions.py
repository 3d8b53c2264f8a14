"""Card transactions (DESIGN section 3, reference b5/b6): create, show to the card, verify.

A transaction is created by a browser session and consumed only by it; the card app reaches it
through a self-contained link carrying the id and a short code. Each step (login with the
authentication key, then for an unknown card proofing with the signature key) takes exactly one
response. A response is handled in three short database steps so that no lock is held while
certificates are checked and the status source is asked:

A. lock the transaction, check code, state and expiry, mark it ``verifying`` (commit);
B. verify the response and resolve the person link (no transaction open);
C. lock again and record the outcome: account, proofing record, audit event (commit).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from authz import audit
from authz.database import dialect_name
from authz.database import utcnow
from authz.database import write
from authz.errors import AuthzError
from authz.errors import InvalidInput
from authz.errors import NotFound
from authz.identity import status as revocation
from authz.identity.attributes import Attributes
from authz.identity.crypto import IdentityKeys
from authz.identity.crypto import b64url
from authz.identity.errors import CardRejected
from authz.identity.errors import StatusUnavailable
from authz.identity.link import LinkSource
from authz.identity.models import LOGIN_ONLY
from authz.identity.models import REPROOFING
from authz.identity.models import VERIFIED
from authz.identity.models import Account
from authz.identity.models import AccountCertificate
from authz.identity.models import CardTransaction
from authz.identity.models import Verification
from authz.identity.status import StatusSource
from authz.identity.trust import AUTH
from authz.identity.trust import SIGN
from authz.identity.trust import TrustConfig
from authz.identity.verify import VerifiedCard
from authz.identity.verify import verify_response

LIFETIME = timedelta(minutes=5)
MAX_BAD_CODES = 5
MAX_FIELD = 8192
PURPOSES = ("login", "proofing")
TOKENS = {"JPKIAPICCTOKEN": "card", "JPKIAPGPSETOKEN": "phone"}
ACR = {"card": "urn:mdx:acr:jpki-auth", "phone": "urn:mdx:acr:jpki-auth-phone"}
AMR = {("card", "pin"): ["hwk", "sc", "pin", "mfa"], ("phone", "pin"): ["hwk", "pin", "mfa"],
       ("phone", "face"): ["hwk", "face", "mfa"], ("phone", "fpt"): ["hwk", "fpt", "mfa"]}
DECLINE = "no_signature_certificate"


class TransactionGone(AuthzError):
    code, description, status = "transaction_gone", "This card transaction is no longer open.", 410


@dataclass(frozen=True)
class Verifier:
    """Everything needed to check a response; built once per app from configuration."""

    trust: TrustConfig
    status: StatusSource
    links: LinkSource
    keys: IdentityKeys
    audience: str
    service_name: str
    trust_framework: str


@dataclass(frozen=True)
class Outcome:
    status: str  # "accepted" or "proofing_required"
    tbs: str | None = None

    def to_dict(self) -> dict[str, str]:
        body = {"status": self.status}
        if self.tbs is not None:
            body.update(step="proofing", tbs=self.tbs)
        return body


def browser_hash(browser: str) -> str:
    return hashlib.sha256(browser.encode()).hexdigest()


def to_be_signed(txn: CardTransaction, audience: str) -> str:
    """b5: canonical JSON binding audience, purpose (the step), nonce and transaction id."""
    return json.dumps({"aud": audience, "iat": txn.issued_at, "nonce": txn.nonce,
                       "purpose": txn.step, "txn": txn.id, "v": 1},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def card_link(txn: CardTransaction, audience: str) -> str:
    return f"{audience}/jpki/transactions/{txn.id}/card?code={txn.short_code}"


def public_state(txn: CardTransaction, now: datetime) -> str:
    """The contract's status: pending, accepted, rejected or expired."""
    if txn.state in ("accepted", "completed"):
        return "accepted"
    if txn.state == "rejected":
        return "rejected"
    return "expired" if now >= txn.expires_at else "pending"


def _new_step(txn: CardTransaction, step: str, now: datetime) -> None:
    txn.step, txn.state = step, "pending"
    txn.nonce = b64url(secrets.token_bytes(32))
    txn.issued_at = int(now.timestamp())


def _event(txn: CardTransaction, kind: str, outcome: str, *, request_id: str | None,
           reason: str | None = None, patient: str | None = None,
           **detail: Any) -> audit.Event:
    return audit.Event(type=f"identity.{kind}", actor="card", outcome=outcome, reason=reason,
                       patient=patient, request_id=request_id,
                       detail={"transaction": txn.id, "purpose": txn.purpose, "step": txn.step,
                               **{k: v for k, v in detail.items() if v is not None}})


def create(session: Session, *, purpose: str, browser: str, audience: str,
           request_id: str | None = None, now: datetime | None = None) -> CardTransaction:
    """Start a transaction for this browser session (DESIGN 8: POST /jpki/transactions)."""
    if purpose not in PURPOSES:
        raise InvalidInput('purpose must be "login" or "proofing"')
    moment = now or utcnow()
    txn = CardTransaction(id=secrets.token_urlsafe(16), browser=browser_hash(browser),
                          purpose=purpose, short_code=f"{secrets.randbelow(10**6):06d}",
                          expires_at=moment + LIFETIME, responses=0, bad_codes=0)
    _new_step(txn, "login", moment)
    with write(session):
        session.add(txn)
        session.flush()
        audit.record(session, _event(txn, "transaction_started", "success",
                                     request_id=request_id), now=moment)
    return txn


def _locked(session: Session, txn_id: str) -> CardTransaction | None:
    query = select(CardTransaction).where(CardTransaction.id == txn_id)
    if dialect_name(session) == "postgresql":
        query = query.with_for_update()
    return session.execute(query).scalar_one_or_none()


def _code_matches(session: Session, txn: CardTransaction, code: str,
                  request_id: str | None, now: datetime) -> bool:
    """Constant-time short-code check; too many wrong codes end the transaction."""
    if hmac.compare_digest(txn.short_code.encode(), code.encode()):
        return True
    txn.bad_codes += 1
    if txn.bad_codes >= MAX_BAD_CODES and txn.state in ("pending", "verifying"):
        txn.state, txn.reason = "rejected", "too_many_bad_codes"
    session.flush()
    audit.record(session, _event(txn, "card_response", "failure", reason="bad_short_code",
                                 request_id=request_id), now=now)
    return False


def card_view(session: Session, txn_id: str, code: str, *, service_name: str, audience: str,
              request_id: str | None = None, now: datetime | None = None) -> dict[str, Any]:
    """What the card app shows and signs (contract step 1)."""
    moment = now or utcnow()
    with write(session):
        txn = _locked(session, txn_id)
        if txn is None:
            raise NotFound("no such card transaction")
        matches = _code_matches(session, txn, code, request_id, moment)
        view = {"service": service_name, "audience": audience, "transaction": txn.id,
                "short_code": txn.short_code, "step": txn.step,
                "tbs": to_be_signed(txn, audience),
                "expires_at": txn.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")}
        open_ = txn.state == "pending" and moment < txn.expires_at
    if not matches:
        raise NotFound("no such card transaction")
    if not open_:
        raise TransactionGone()
    return view


def poll(session: Session, txn_id: str, browser: str,
         now: datetime | None = None) -> dict[str, Any]:
    """The creating browser's view (DESIGN 8: GET /jpki/transactions/<id>)."""
    txn = session.get(CardTransaction, txn_id)
    if txn is None or not hmac.compare_digest(txn.browser, browser_hash(browser)):
        raise NotFound("no such card transaction")  # another session learns nothing
    moment = now or utcnow()
    body = {"id": txn.id, "status": public_state(txn, moment), "step": txn.step,
            "expires_at": txn.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")}
    session.rollback()
    return body


@dataclass(frozen=True)
class Response:
    cert: bytes
    signature: bytes
    tbs: str
    token: str
    uv: str


def _b64(value: Any) -> bytes:
    if not isinstance(value, str) or not value or len(value) > MAX_FIELD:
        raise CardRejected("response_malformed")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise CardRejected("response_malformed") from None


def parse_response(body: Mapping[str, Any]) -> Response | None:
    """The card app's POST body; None for an explicit decline of the proofing step."""
    if set(body) == {"decline"}:
        if body["decline"] != DECLINE:
            raise CardRejected("response_malformed")
        return None
    if set(body) - {"cert", "signature", "tbs", "token", "uv"}:
        raise CardRejected("response_malformed")
    tbs = body.get("tbs")
    token = body.get("token")
    uv = body.get("uv", "pin")
    if not isinstance(tbs, str) or len(tbs) > MAX_FIELD or token not in TOKENS \
            or not isinstance(uv, str):
        raise CardRejected("response_malformed")
    return Response(_b64(body.get("cert")), _b64(body.get("signature")), tbs, token, uv)


@dataclass
class _Checked:
    """The result of phase B, carried into phase C."""

    card: VerifiedCard | None = None
    person: str | None = None
    account_id: str | None = None
    sign_revoked: str | None = None


def respond(session: Session, verifier: Verifier, txn_id: str, code: str,
            body: Mapping[str, Any], *, request_id: str | None = None,
            now: datetime | None = None) -> Outcome:
    """Check one card response (contract step 3); raise CardRejected with a reason if refused."""
    moment = now or utcnow()
    # A: claim the step, so a second response for it can never be verified.
    with write(session):
        txn = _locked(session, txn_id)
        if txn is None:
            raise NotFound("no such card transaction")
        if not _code_matches(session, txn, code, request_id, moment):
            claimed = None
        elif txn.state != "pending" or moment >= txn.expires_at:
            claimed = "closed"
            audit.record(session, _event(txn, "card_response", "failure",
                                         reason=f"transaction_{public_state(txn, moment)}",
                                         request_id=request_id), now=moment)
        else:
            claimed = "ok"
            txn.state, txn.responses = "verifying", txn.responses + 1
            expected, step, purpose = to_be_signed(txn, verifier.audience), txn.step, txn.purpose
            person = txn.person_link_id
    if claimed is None:
        raise NotFound("no such card transaction")
    if claimed == "closed":
        raise TransactionGone()
    # B: verify, with no database transaction open.
    try:
        response = parse_response(body)
        checked = _verify(session, verifier, response, expected, step, purpose, person, moment)
    except CardRejected as rejected:
        _reject(session, txn_id, rejected.reason, request_id, moment)
        raise
    # C: record the outcome.
    return _record(session, verifier, txn_id, response, checked, request_id, moment)


def _verify(session: Session, verifier: Verifier, response: Response | None, expected: str,
            step: str, purpose: str, person: str | None, now: datetime) -> _Checked:
    if response is None:
        if step != "proofing":
            raise CardRejected("decline_outside_proofing")
        return _Checked(person=person)
    if not hmac.compare_digest(response.tbs.encode(), expected.encode()):
        raise CardRejected("tbs_mismatch")  # wrong audience, purpose, nonce or transaction
    token = TOKENS[response.token]
    if (token, response.uv) not in AMR:
        raise CardRejected("user_verification_not_allowed")
    kind = AUTH if step == "login" else SIGN
    card = verify_response(kind=kind, tbs=response.tbs.encode(), cert_der=response.cert,
                           signature=response.signature, trust=verifier.trust,
                           source=verifier.status, now=now)
    try:
        link = verifier.links.resolve(response.cert, verifier.audience)
    except StatusUnavailable as unavailable:
        raise CardRejected(f"link_unavailable:{unavailable.reason}") from None
    if step == "proofing" and link.person_link_id != person:
        raise CardRejected("person_mismatch")  # both certificates must be the same person's
    account = session.execute(
        select(Account).where(Account.person_link_id == link.person_link_id)
    ).scalar_one_or_none()
    checked = _Checked(card=card, person=link.person_link_id,
                       account_id=account.id if account else None)
    if step == "login" and account is not None and account.assurance == VERIFIED \
            and purpose == "login":
        checked.sign_revoked = _proofing_certificate_revoked(session, verifier, account, now)
    session.rollback()
    return checked


def _proofing_certificate_revoked(session: Session, verifier: Verifier, account: Account,
                                  now: datetime) -> str | None:
    """Re-check the certificate the account was proofed with (現況確認); its revocation reason."""
    row = session.execute(
        select(AccountCertificate).join(
            Verification, Verification.certificate == AccountCertificate.fingerprint)
        .where(Verification.account_id == account.id, Verification.current.is_(True))
    ).scalar_one_or_none()
    if row is None:
        return "missing"
    reference = json.loads(verifier.keys.open(row.reference, f"cert:{row.fingerprint}"))
    anchor = next((a for a in verifier.trust.anchors_for(SIGN)
                   if a.key_id.hex() == reference["anchor"]), None)
    if anchor is None:
        return "anchor_removed"
    if row.not_after < now:
        return "expired"
    result = revocation.check(int(reference["serial"]), anchor, verifier.status,
                              verifier.trust.status_method, now, verifier.trust.clock_skew)
    return None if result.good else (result.reason or "unspecified")


def _reject(session: Session, txn_id: str, reason: str, request_id: str | None,
            now: datetime) -> None:
    with write(session):
        txn = _locked(session, txn_id)
        if txn is None:
            return
        txn.state, txn.reason = "rejected", reason[:64]
        session.flush()
        audit.record(session, _event(txn, "card_response", "failure", reason=reason[:64],
                                     request_id=request_id), now=now)


def _record(session: Session, verifier: Verifier, txn_id: str, response: Response | None,
            checked: _Checked, request_id: str | None, now: datetime) -> Outcome:
    with write(session):
        txn = _locked(session, txn_id)
        if txn is None or txn.state != "verifying":
            raise TransactionGone()
        account = session.get(Account, checked.account_id) if checked.account_id else None
        if txn.step == "login":
            if response is None:
                raise CardRejected("decline_outside_proofing")
            medium = TOKENS[response.token]
            txn.medium, txn.acr, txn.amr = medium, ACR[medium], AMR[(medium, response.uv)]
            txn.auth_time, txn.person_link_id = now, checked.person
            if account is None or txn.purpose == "proofing":
                _new_step(txn, "proofing", now)
                session.flush()
                audit.record(session, _event(txn, "card_response", "success",
                                             reason="proofing_required", request_id=request_id,
                                             patient=account.id if account else None), now=now)
                return Outcome("proofing_required", to_be_signed(txn, verifier.audience))
            if checked.sign_revoked and account.assurance == VERIFIED:
                account.assurance, account.updated_at = REPROOFING, now
                audit.record(session, audit.Event(
                    type="identity.reproofing_required", actor="system:identity",
                    outcome="success", patient=account.id, reason=checked.sign_revoked[:64],
                    request_id=request_id), now=now)
        elif response is None:
            account = account or _new_account(session, checked.person, LOGIN_ONLY, now)
        elif checked.card is not None:
            account = account or _new_account(session, checked.person, VERIFIED, now)
            changed = _proof(session, verifier, account, checked.card, now)
            audit.record(session, audit.Event(
                type="identity.proofed", actor="card", outcome="success", patient=account.id,
                request_id=request_id, detail={"transaction": txn.id,
                                               "attributes_changed": int(changed)}), now=now)
        else:
            raise CardRejected("proofing_without_certificate")
        txn.state, txn.account_id = "accepted", account.id
        session.flush()
        audit.record(session, _event(txn, "card_response", "success", request_id=request_id,
                                     patient=account.id, acr=txn.acr,
                                     assurance=account.assurance), now=now)
    return Outcome("accepted")


def _new_account(session: Session, person: str | None, assurance: str,
                 now: datetime) -> Account:
    if person is None:
        raise CardRejected("no_person_link")
    account = Account(id=f"pat_{secrets.token_hex(8)}", person_link_id=person,
                      assurance=assurance, created_at=now, updated_at=now)
    session.add(account)
    session.flush()
    return account


def _proof(session: Session, verifier: Verifier, account: Account, card: VerifiedCard,
           now: datetime) -> bool:
    """Store a new proofing record (history kept); True if the attributes changed."""
    if card.attributes is None:
        raise CardRejected("attributes_missing")
    keys = verifier.keys
    fingerprint = keys.cert_fingerprint(card.anchor.key_id, card.certificate.serial_number)
    if session.get(AccountCertificate, fingerprint) is None:
        reference = json.dumps({"anchor": card.anchor.key_id.hex(),
                                "serial": str(card.certificate.serial_number)}).encode()
        session.add(AccountCertificate(
            fingerprint=fingerprint, account_id=account.id, kind=SIGN, medium="card",
            policy=card.policy, not_after=card.certificate.not_valid_after_utc,
            reference=keys.seal(reference, f"cert:{fingerprint}"), first_seen_at=now,
            last_seen_at=now))
        session.flush()
    previous = session.execute(
        select(Verification).where(Verification.account_id == account.id,
                                   Verification.current.is_(True))).scalar_one_or_none()
    changed = previous is not None and current_attributes(keys, previous) != card.attributes
    session.execute(update(Verification).where(Verification.account_id == account.id)
                    .values(current=False))
    verification = Verification(
        id=str(uuid.uuid4()), account_id=account.id, verified_at=now,
        trust_framework=verifier.trust_framework, evidence_ref=f"ev-{secrets.token_hex(8)}",
        certificate=fingerprint, current=True, attributes=b"")
    verification.attributes = keys.seal(
        json.dumps(card.attributes.to_record(), ensure_ascii=False).encode(),
        f"verification:{verification.id}")
    session.add(verification)
    account.assurance, account.updated_at = VERIFIED, now
    session.flush()
    return changed


def current_attributes(keys: IdentityKeys, verification: Verification) -> Attributes:
    """Open a proofing record's sealed attributes."""
    record = json.loads(keys.open(verification.attributes, f"verification:{verification.id}"))
    return Attributes(**record)


def complete(session: Session, txn_id: str, browser: str,
             now: datetime | None = None) -> CardTransaction:
    """The browser takes its accepted transaction, once; the caller starts a login session."""
    moment = now or utcnow()
    with write(session):
        txn = _locked(session, txn_id)
        if txn is None or not hmac.compare_digest(txn.browser, browser_hash(browser)):
            raise NotFound("no such card transaction")
        if txn.state != "accepted" or moment >= txn.expires_at + LIFETIME:
            raise TransactionGone()
        txn.state = "completed"
        session.flush()
    return txn
