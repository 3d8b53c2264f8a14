"""``authz demo``: the demo story in the terminal, step by step, against a fresh instance.

The same story as the clickable one (``/`` in demo mode): the patient logs in with a demo card,
grants the Demo Clinic a consent for medication on the consent page, the clinic's app reads
through the decision API (permit), the patient revokes in the portal, the next read is denied,
the access history shows both reads, and the audit log verifies. Everything runs in this
process through the service's own pages and endpoints (WSGI, no socket); the card answers like
``authz card respond``. Exit 0 when every step did what it should, 1 naming the step otherwise.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import click
from flask import Flask
from flask.testing import FlaskClient

ISSUER = "http://127.0.0.1:8000"  # the demo's issuer; nothing listens there, all is in-process
CARD = "hanako.json"
ENGLISH = {"Accept-Language": "en"}  # the terminal story quotes the pages in English


class StepFailed(Exception):
    """A step did not do what it should; the message says what happened instead."""


def _path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + ("?" + parts.query if parts.query else "")


def _field(body: str, pattern: str, what: str) -> str:
    found = re.search(pattern, body)
    if found is None:
        raise StepFailed(f"the page has no {what}")
    return found.group(1).replace("&amp;", "&")


def _csrf(body: str) -> str:
    return _field(body, r'name="csrf" value="([^"]+)"', "form token")


@contextmanager
def _instance(folder: Path | None) -> Iterator[Flask]:
    """A demo-mode app on a fresh SQLite database in ``folder`` (or a temporary folder)."""
    from authz import create_app

    with tempfile.TemporaryDirectory(prefix="authz-demo-") as scratch:
        instance = (folder or Path(scratch) / "instance").resolve()
        if folder is not None and (instance / "authz.db").exists():
            raise click.UsageError(f"{instance} already holds a database; give a new folder")
        instance.mkdir(parents=True, exist_ok=True)
        old = os.environ.get("AUTHZ_INSTANCE_PATH")
        os.environ["AUTHZ_INSTANCE_PATH"] = str(instance)
        try:
            app = create_app({"AUTHZ_DATABASE_URL": f"sqlite:///{instance / 'authz.db'}",
                              "AUTHZ_DEMO": True, "AUTHZ_ISSUER": ISSUER,
                              "AUTHZ_LOG_LEVEL": "WARNING", "AUTHZ_SECRET_KEY": None,
                              "AUTHZ_KEY_ENCRYPTION_KEY": None})
        finally:
            if old is None:
                os.environ.pop("AUTHZ_INSTANCE_PATH", None)
            else:
                os.environ["AUTHZ_INSTANCE_PATH"] = old
        try:
            yield app
        finally:
            from authz.extensions import db

            with app.app_context():
                db.session.remove()
                db.engine.dispose()


def _prepare(app: Flask) -> None:
    """What ``authz serve`` does at start in demo mode, without the console listing."""
    from flask_migrate import upgrade

    from authz import demo
    from authz.extensions import db
    from authz.keys import service as keys
    from authz.policy import store as policy_store

    with app.app_context():
        upgrade(directory=app.extensions["migrate"].directory)
        keys.ensure_keys(db.session(), app.config["AUTHZ_KEK_BYTES"])
        policy_store.ensure_bundled(db.session())
        demo.seed(db.session())
        demo.register_auditor(db.session(), demo.issue_cards(Path(app.instance_path)))
        db.session.remove()


class _CardLink:
    """The card app's transport to the link: the service's WSGI app, no cookies."""

    def __init__(self, app: Flask, link: str) -> None:
        self.client = app.test_client(use_cookies=False)
        self.path = _path(link)

    def _json(self, response: Any) -> dict[str, Any]:
        from authz.sim.cardapp import CardAppError

        body = response.get_json(silent=True)
        if response.status_code != 200 or not isinstance(body, dict):
            title = body.get("title") if isinstance(body, dict) else None
            raise CardAppError(f"the service refused: {title or response.status_code}")
        return body

    def get(self) -> dict[str, Any]:
        return self._json(self.client.get(self.path))

    def post(self, body: dict[str, str]) -> dict[str, Any]:
        return self._json(self.client.post(self.path, json=body))


class Story:
    """The steps, sharing one patient browser and the clinic app."""

    def __init__(self, app: Flask, echo: Callable[[str], None]) -> None:
        from authz.demo import ensure_clinic_app
        from authz.demo_clinic import ClinicApp
        from authz.demo_clinic import Pending
        from authz.demo_clinic import wsgi_call
        from authz.extensions import db

        self.app, self.echo = app, echo
        self.browser: FlaskClient = app.test_client()
        with app.app_context():
            clients = ensure_clinic_app(db.session(), ISSUER, Path(app.instance_path))
            db.session.remove()
        if clients is None:
            raise StepFailed("the demo clinic is not registered")
        self.clinic = ClinicApp(clients, ISSUER, wsgi_call(app, ISSUER))
        self.pending = Pending.new()
        self.callback = ""
        self.sub = ""
        self.consent_id = ""
        self.account_id = ""

    def _post(self, path: str, data: dict[str, str]) -> Any:
        return self.browser.post(path, data=data, headers={"Origin": ISSUER})

    def login(self) -> None:
        """The clinic app sends the patient to log in; the demo card answers."""
        authorize = _path(self.clinic.authorization_url(self.pending))
        self.echo("  clinic app -> authorization request: code + PKCE S256, "
                  "health_record_access(treatment_visit: medication)")
        to_login = self.browser.get(authorize)
        if to_login.status_code != 302 or "/login" not in to_login.headers.get("Location", ""):
            raise StepFailed(f"the authorization endpoint did not ask for a login "
                             f"(HTTP {to_login.status_code})")
        self.login_path = _path(to_login.headers["Location"])
        self._card_login(self.browser, self.login_path, CARD)
        self.echo("  card app: accepted (login, then identity proofing with the signature key)")

    def _card_login(self, browser: FlaskClient, login_path: str, card_file: str) -> None:
        """The login page's card link, answered by the demo card ``card_file``."""
        from authz import demo
        from authz.sim.card import VirtualCard
        from authz.sim.cardapp import CardAppError
        from authz.sim.cardapp import respond

        page = browser.get(login_path).get_data(as_text=True)
        link = _field(page, r'data-card-link="([^"]+)"', "card link")
        self.echo(f"  login page shows code {_field(page, r'id=.short-code.>([0-9]{6})<', 'code')}")
        card = VirtualCard.load(Path(self.app.instance_path) / "demo-cards" / card_file)
        try:
            respond(card, link, pin=demo.DEMO_PIN, password=demo.DEMO_PASSWORD,
                    show=lambda line: self.echo(f"  card app ({card_file}): {line}"),
                    transport=_CardLink(self.app, link))
        except CardAppError as error:
            raise StepFailed(f"the card answer was refused: {error}") from None

    def consent(self) -> None:
        """The consent page: approve what it pre-selects (medication for the clinic)."""
        from sqlalchemy import select

        from authz import demo
        from authz.consent.models import Consent
        from authz.extensions import db

        back = self.browser.get(self.login_path)
        if back.status_code != 302:
            raise StepFailed(f"the login page did not log in (HTTP {back.status_code})")
        authorize = _path(back.headers["Location"])
        page = self.browser.get(authorize)
        if page.status_code != 200:
            raise StepFailed(f"no consent page (HTTP {page.status_code})")
        answer = self._post(authorize, {"csrf": _csrf(page.get_data(as_text=True)),
                                        "decision": "approve"})
        self.callback = answer.headers.get("Location", "")
        if answer.status_code != 302 or "code=" not in self.callback:
            raise StepFailed(f"approving did not return a code (HTTP {answer.status_code})")
        with self.app.app_context():
            rows = db.session.execute(select(Consent).where(
                Consent.patient_id != demo.DEMO_PATIENT, Consent.status == "active")).scalars()
            found = [(c.id, c.patient_id, c.purpose, list(c.categories)) for c in rows]
            db.session.remove()
        if len(found) != 1 or found[0][3] != ["medication"]:
            raise StepFailed(f"expected one active consent for medication, found {found}")
        self.consent_id, self.account_id = found[0][0], found[0][1]
        self.echo(f"  consent {self.consent_id}: Demo Clinic, {found[0][2]}, medication")

    def _read(self, expected: str) -> None:
        from authz.demo_clinic import ClinicError

        try:
            reading = self.clinic.read(self.sub)
        except ClinicError as error:
            raise StepFailed(str(error)) from None
        for result in reading.results:
            obligations = ", ".join(f"{k}={v}" for k, v in
                                    (result.get("obligations") or {}).items()) or "-"
            self.echo(f"  decision {reading.decision_id}: {result.get('category')} "
                      f"{result.get('decision')} ({result.get('reason')}), "
                      f"rule {result.get('rule')}, obligations {obligations}")
        got = "permit" if reading.permitted else "deny"
        if got != expected:
            raise StepFailed(f"expected {expected}, got {got}")

    def first_read(self) -> None:
        """The clinic redeems the code (ID token -> pairwise sub) and reads: permit."""
        from authz.demo_clinic import ClinicError

        query = {k: v[0] for k, v in parse_qs(urlsplit(self.callback).query).items()}
        try:
            self.sub = self.clinic.finish(self.pending, query)
        except ClinicError as error:
            raise StepFailed(str(error)) from None
        self.echo(f"  ID token verified; the clinic knows the patient as {self.sub[:16]}…")
        self.echo("  records system: client credentials token, scope decisions")
        self._read("permit")

    def revoke(self) -> None:
        """The patient revokes the clinic's consent in the portal."""
        path = f"/portal/consents/{self.consent_id}/revoke"
        page = self.browser.get(path)
        if page.status_code != 200:
            raise StepFailed(f"the portal's confirmation page answered {page.status_code}")
        body = page.get_data(as_text=True)
        done = self._post("/portal/apply", {
            "csrf": _csrf(body), "confirm": "revoke",
            "proposal": _field(body, r'name="proposal" value="([^"]+)"', "proposal")})
        if done.status_code != 303:
            raise StepFailed(f"the portal refused the revocation (HTTP {done.status_code})")
        self.echo(f"  consent {self.consent_id} revoked (portal, confirmed)")

    def second_read(self) -> None:
        """The clinic reads again: deny."""
        self._read("deny")

    def history(self) -> None:
        """The patient's access history lists both reads by the clinic."""
        from authz.audit import history
        from authz.extensions import db

        with self.app.app_context():
            entries, _cursor = history.history(db.session(), self.account_id,
                                               history.parse_query({"kind": "access"}))
            db.session.remove()
        reads = [e for e in entries if e["institution"] and
                 e["institution"]["id"] == self.clinic.clients.institution]
        for entry in reversed(reads):
            self.echo(f"  {entry['time']}  {entry['institution']['name']}: {entry['outcome']}"
                      f" ({entry.get('purpose')})")
        outcomes = [e["outcome"] for e in reversed(reads)]
        if outcomes != ["permit", "deny"]:
            raise StepFailed(f"expected a permitted then a denied read, found {outcomes}")

    def audit(self) -> None:
        """The demo auditor logs in to the auditor console with their own card and verifies
        the log there (a checkpoint is sealed first, as the service's job does every 5 s)."""
        from authz import demo
        from authz.audit import checkpoints
        from authz.extensions import db

        with self.app.app_context():
            sealed = checkpoints.seal(db.session(), self.app.config["AUTHZ_KEK_BYTES"],
                                      checkpoint_file=self.app.config[
                                          "AUTHZ_AUDIT_CHECKPOINT_FILE"])
            db.session.remove()
        if sealed is not None:
            self.echo(f"  signed checkpoint over {sealed.tree_size} entries")
        auditor = self.app.test_client()
        to_login = auditor.get("/auditor")
        if to_login.status_code != 302:
            raise StepFailed(f"the auditor console did not ask for a login "
                             f"(HTTP {to_login.status_code})")
        login_path = _path(to_login.headers["Location"])
        self._card_login(auditor, login_path, demo.AUDITOR_CARD)
        console = auditor.get(_path(auditor.get(login_path).headers.get("Location", "/")))
        if console.status_code != 200:
            raise StepFailed(f"the auditor console refused the demo auditor "
                             f"(HTTP {console.status_code})")
        verified = auditor.post("/auditor/verify", headers={"Origin": ISSUER, **ENGLISH},
                                data={"csrf": _csrf(console.get_data(as_text=True))})
        body = verified.get_data(as_text=True)
        verdict = re.search(r'id="audit-verdict" data-ok="(true|false)">(.*?)</div>', body,
                            re.S)
        if verified.status_code != 200 or verdict is None:
            raise StepFailed(f"the console's verification answered HTTP "
                             f"{verified.status_code}")
        said = " ".join(re.sub(r"<[^>]+>", " ", verdict.group(2)).split())
        self.echo(f"  auditor console ({demo.AUDITOR_CARD}): {said}")
        if verdict.group(1) != "true":
            raise StepFailed(said)


STEPS: tuple[tuple[str, str], ...] = (
    ("login", "the patient logs in with the demo card (the clinic app asked)"),
    ("consent", "the patient grants the Demo Clinic a consent for medication"),
    ("first_read", "the clinic gets a decisions token and reads: permit"),
    ("revoke", "the patient revokes the consent in the portal"),
    ("second_read", "the clinic reads again: deny"),
    ("history", "the access history shows both reads"),
    ("audit", "the auditor logs in to the auditor console and verifies the audit log"),
)


@click.command("demo")
@click.option("--instance", "folder", type=click.Path(file_okay=False, path_type=Path),
              help="Keep the demo instance in this new folder (default: a temporary one).")
def demo_command(folder: Path | None) -> None:
    """Run the demo story in the terminal, step by step, against a fresh demo instance."""
    total = len(STEPS) + 1
    click.echo(f"[1/{total}] a fresh demo instance (SQLite, demo institutions and cards)")
    with _instance(folder) as app:
        try:
            _prepare(app)
            click.echo(f"  instance {app.instance_path}; issuer {ISSUER} (in-process)")
            story = Story(app, click.echo)
        except StepFailed as failed:
            raise _failure(1, "instance", str(failed)) from None
        for number, (name, title) in enumerate(STEPS, start=2):
            click.echo(f"[{number}/{total}] {title}")
            try:
                getattr(story, name)()
            except StepFailed as failed:
                raise _failure(number, name, str(failed)) from None
    click.echo("demo story complete: every step did what it should")


def _failure(number: int, name: str, reason: str) -> click.ClickException:
    from authz.cli import CommandError

    return CommandError(f"step {number} ({name}) failed: {reason}", 1)
