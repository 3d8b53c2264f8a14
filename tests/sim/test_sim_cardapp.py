"""The card app against a stub of the service's card link (docs/jpki-contract.md)."""

from __future__ import annotations

import json

import pytest
from sim_support import PASSWORD
from sim_support import PIN
from stub_service import SERVICE_NAME
from stub_service import SHORT_CODE
from stub_service import unb64url

from authz.sim.card import AUTH_CERT
from authz.sim.card import AUTH_PIN
from authz.sim.card import SIGN_CERT
from authz.sim.card import SIGN_PIN
from authz.sim.card import VirtualCard
from authz.sim.cardapp import CardAppError
from authz.sim.cardapp import respond


def run(card, service, **kwargs):
    shown: list[str] = []
    kwargs.setdefault("pin", PIN)
    outcome = respond(card, kwargs.pop("link", service.link), show=shown.append, **kwargs)
    return outcome, shown


def tries(card: VirtualCard, pin_ef: str) -> int:
    return VirtualCard.load(card.path).describe()["pins"][pin_ef]["tries_left"]


def test_unknown_person_proofs_then_logs_in(issue, service):
    card = issue()
    outcome, shown = run(card, service, password=PASSWORD)
    assert outcome == "accepted"
    assert shown[0] == f"Service: {SERVICE_NAME}"
    assert SHORT_CODE in shown[1]
    login, proofing = service.posts()
    assert unb64url(login["cert"]) == card.certificate_der(AUTH_CERT)
    assert unb64url(proofing["cert"]) == card.certificate_der(SIGN_CERT)
    assert json.loads(proofing["tbs"])["purpose"] == "proofing"
    assert login["token"] == "JPKIAPICCTOKEN" and login["uv"] == "pin"
    # Known now: the next login is accepted at once, with the PIN only.
    service.step, service.tbs = "login", ""
    outcome, _ = run(card, service)
    assert outcome == "accepted" and len(service.posts()) == 3


def test_proofing_without_password_exits_1_asking_for_it(issue, service):
    card = issue()
    with pytest.raises(CardAppError, match="--password") as caught:
        run(card, service)
    assert caught.value.exit_code == 1
    assert len(service.posts()) == 1  # the login answer went; no sign attempt


def test_proofing_step_from_the_start(issue, service):
    service.step = "proofing"
    card = issue()
    outcome, _ = run(card, service, pin=None, password=PASSWORD.lower())
    assert outcome == "accepted"
    [only] = service.posts()
    assert unb64url(only["cert"]) == card.certificate_der(SIGN_CERT)


def test_under_15_declines_proofing_and_gets_login_only(issue, service):
    child = issue(birthdate="2015-01-01")
    outcome, _ = run(child, service, password=PASSWORD)
    assert outcome == "accepted"
    assert service.posts()[-1]["decline"] == "no_signature_certificate"


def test_rejection_is_one_clear_line(issue, service):
    service.mode = "reject"
    with pytest.raises(CardAppError, match=r"refused the response: The card response was not "
                                           r"accepted\. \(HTTP 400\)") as caught:
        run(issue(), service)
    assert caught.value.exit_code == 1


@pytest.mark.parametrize(("mode", "message"), [
    ("gone", "unknown, expired or already used"),
    ("redirect", "redirected"),
    ("garbage", "not a card challenge"),
])
def test_bad_service_answers_stop_before_signing(issue, service, mode, message):
    service.mode = mode
    card = issue()
    with pytest.raises(CardAppError, match=message):
        run(card, service, pin="0000")  # a wrong PIN: proves the card was never asked
    assert service.posts() == []
    assert tries(card, AUTH_PIN) == 3


def test_a_link_on_another_origin_is_refused(issue, service):
    card = issue()
    relay = service.link.replace("127.0.0.1", "localhost")
    with pytest.raises(CardAppError, match="not on the service's own address"):
        run(card, service, link=relay)
    assert service.posts() == []


def test_tbs_for_another_audience_is_refused(issue, service):
    service.new_tbs("login", audience="https://elsewhere.example")
    with pytest.raises(CardAppError, match="does not match"):
        run(issue(), service)
    assert service.posts() == []


def test_wrong_pin_exits_1_and_nothing_is_sent(issue, service):
    card = issue()
    with pytest.raises(CardAppError, match="wrong PIN: 2 tries left") as caught:
        run(card, service, pin="0000")
    assert caught.value.exit_code == 1
    assert service.posts() == []


def test_locked_password(issue, service):
    card = issue()
    for _ in range(5):
        with pytest.raises(Exception):  # noqa: B017, PT011 - any refusal; counted below
            card.verify(SIGN_PIN, "WRONG999")
    with pytest.raises(CardAppError, match="signature password is locked"):
        run(card, service, password=PASSWORD)


def test_no_cookies_are_sent(issue, service):
    service.mode = "cookie"
    run(issue(), service, password=PASSWORD)
    gets = [body for kind, body in service.events if kind == "GET"]
    assert gets and all(get["cookie"] is None for get in gets)
    assert all(post["_cookie"] is None for post in service.posts())


def test_unreachable_service(issue, service):
    link = service.link
    service.stop()
    with pytest.raises(CardAppError, match="cannot reach the service") as caught:
        run(issue(), service, link=link, timeout=2)
    assert caught.value.exit_code == 1


def test_timeout(issue, service):
    service.mode = "slow"
    with pytest.raises(CardAppError, match="cannot reach the service"):
        run(issue(), service, timeout=0.2)


@pytest.mark.parametrize(("link", "message"), [("jpki/transactions/x/card", "absolute"),
                                               ("file:///etc/passwd", "absolute"),
                                               ("ftp://127.0.0.1/x", "absolute")])
def test_bad_links(issue, link, message):
    with pytest.raises(CardAppError, match=message) as caught:
        respond(issue(), link, pin=PIN, show=lambda _: None)
    assert caught.value.exit_code == 2


def test_phone_with_biometric(issue, issue_phone, service):
    card = issue()
    run(card, service, password=PASSWORD)  # register the person
    service.step, service.tbs = "login", ""
    phone = issue_phone(card)
    outcome, _ = run(phone, service, pin=None, uv="face")
    assert outcome == "accepted"
    last = service.posts()[-1]
    assert last["token"] == "JPKIAPGPSETOKEN" and last["uv"] == "face"
    assert tries(phone, AUTH_PIN) == 3
