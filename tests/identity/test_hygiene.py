"""After a full card flow the database holds no PIN, password, raw certificate, serial or
attribute in clear (DESIGN 3: never collected or stored)."""

from __future__ import annotations

import re

import sqlalchemy as sa
from card_support import ADULT
from card_support import answer
from card_support import login
from card_support import start
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from authz.extensions import db as flask_db
from authz.sim import lifecycle
from authz.sim.card import AUTH_CERT
from authz.sim.card import SIGN_CERT
from authz.sim.card import VirtualCard

PIN, PASSWORD = "5827", "ZQXW7319"


def everything(session: sa.orm.Session) -> list[bytes]:
    """Every value of every column of every table, as bytes."""
    values = []
    for table in flask_db.metadata.sorted_tables:
        for row in session.execute(sa.select(table)).all():
            for value in row:
                if value is None:
                    continue
                values.append(bytes(value) if isinstance(value, bytes | memoryview)
                              else str(value).encode())
    return values


def test_database_holds_no_secrets_or_clear_attributes(demo_app, browser, issue, sim):
    card = issue(pin=PIN, password=PASSWORD)
    certs = [x509.load_der_x509_certificate(card.certificate_der(ef))
             for ef in (AUTH_CERT, SIGN_CERT)]
    login(browser, card, pin=PIN, password=PASSWORD)
    lifecycle.move(sim, card, address="大阪府大阪市北区見本町一丁目", password=PASSWORD)
    card = VirtualCard.load(card.path)
    certs.append(x509.load_der_x509_certificate(card.certificate_der(SIGN_CERT)))
    txn = start(demo_app.test_client(), "proofing")
    answer(demo_app.test_client(), txn["link"], card, pin=PIN, password=PASSWORD)

    forbidden = [PASSWORD.encode(), ADULT["address"].encode(), "大阪府大阪市北区".encode(),
                 ADULT["name"].encode(), ADULT["name"].replace("\u3000", " ").encode(),
                 b"1985-03-15", b"419850315"]
    for cert in certs:
        der = cert.public_bytes(serialization.Encoding.DER)
        modulus = cert.public_key().public_numbers().n.to_bytes(256, "big")
        serial = cert.serial_number
        forbidden += [der, der[-64:], modulus[:32], str(serial).encode(),
                      f"{serial:x}".encode(), serial.to_bytes(8, "big")]
    with demo_app.app_context():
        values = everything(flask_db.session())
    assert len(values) > 50
    for value in values:
        for secret in forbidden:
            assert secret not in value, (secret[:20], value[:80])
        assert not re.search(rb"(?<![0-9A-Za-z])" + PIN.encode() + rb"(?![0-9A-Za-z])", value)
