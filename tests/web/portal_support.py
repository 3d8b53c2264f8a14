"""Helpers of the portal tests: form tokens, stored consents, audit entries."""

from __future__ import annotations

import re

from sqlalchemy import select

from authz.audit.events import parse
from authz.audit.models import AuditEvent
from authz.consent.models import Consent
from authz.extensions import db as flask_db

ISSUER = "http://127.0.0.1:8000"


def csrf(page) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page.get_data(as_text=True)).group(1)


def proposal(page) -> str:
    return re.search(r'name="proposal" value="([^"]+)"', page.get_data(as_text=True)).group(1)


def consents(app):
    with app.app_context():
        rows = flask_db.session.execute(select(Consent).order_by(Consent.created_at)).scalars()
        found = [(c.id, c.status, list(c.categories), c.version, c.end) for c in rows]
        flask_db.session.remove()
        return found


def audit_events(app, kind):
    with app.app_context():
        rows = flask_db.session.execute(select(AuditEvent.record).where(
            AuditEvent.type == kind).order_by(AuditEvent.seq)).scalars().all()
        flask_db.session.remove()
        return [parse(bytes(r)) for r in rows]
