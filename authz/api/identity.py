"""Wiring of the card verifier: trust, status and link sources chosen by configuration.

In demo mode, with nothing configured, the mounted simulator is used in-process (a server
never calls itself over HTTP: a one-worker server would wait on itself). Without demo mode
and without anchors, card login is unavailable and says so (fail closed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask
from flask import current_app

from authz.errors import Unavailable
from authz.identity.crypto import IdentityKeys
from authz.identity.link import HttpLinkSource
from authz.identity.link import Link
from authz.identity.link import LinkSource
from authz.identity.link import link_from
from authz.identity.status import HttpOcspSource
from authz.identity.status import StatusSource
from authz.identity.transactions import Verifier
from authz.identity.trust import AUTH
from authz.identity.trust import SIGN
from authz.identity.trust import Anchor
from authz.identity.trust import TrustConfig
from authz.identity.trust import load_anchors

EXTENSION = "authz.identity"


class SimSources:
    """The in-process simulator as status and link source (bytes only, verified by identity)."""

    def __init__(self, sim: Any) -> None:
        self.sim = sim

    def ocsp(self, request_der: bytes) -> bytes:
        return bytes(self.sim.ocsp_respond(request_der))

    def crl(self, anchor: Anchor) -> bytes:
        return bytes(self.sim.crl(anchor.kind, anchor.generation))

    def resolve(self, cert_der: bytes, rp_id: str) -> Link:
        return link_from(self.sim.link_resolve(cert_der, rp_id))


def simulator(app: Flask) -> Any:
    """The simulator mounted on this app in demo mode (opened once per process)."""
    from authz.sim.http import authority_of

    return authority_of(app)


def verifier() -> Verifier:
    """The configured verifier, built on first use and cached for the process."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    state = app.extensions.setdefault(EXTENSION, {})
    if "verifier" not in state:
        state["verifier"] = _build(app)
    built: Verifier = state["verifier"]
    return built


def _build(app: Flask) -> Verifier:
    config = app.config
    demo = config["AUTHZ_DEMO"]
    sim_sources = SimSources(simulator(app)) if demo else None
    anchors: list[Anchor] = []
    for kind, setting in ((SIGN, "AUTHZ_JPKI_SIGN_ANCHORS"), (AUTH, "AUTHZ_JPKI_AUTH_ANCHORS")):
        paths = config[setting]
        if paths:
            pems = [Path(p).read_bytes() for p in paths]
        elif sim_sources is not None:
            pems = list(sim_sources.sim.anchor_pems(kind))
        else:
            raise Unavailable("card login is not configured on this service")
        anchors.extend(load_anchors(kind, pems))
    status: StatusSource
    links: LinkSource
    if config["AUTHZ_JPKI_STATUS_URL"]:
        status = HttpOcspSource(config["AUTHZ_JPKI_STATUS_URL"])
    elif sim_sources is not None:
        status = sim_sources
    else:
        raise Unavailable("card login is not configured on this service")
    if config["AUTHZ_JPKI_LINK_URL"]:
        links = HttpLinkSource(config["AUTHZ_JPKI_LINK_URL"])
    elif sim_sources is not None:
        links = sim_sources
    else:
        raise Unavailable("card login is not configured on this service")
    issuer = config["AUTHZ_ISSUER"]
    trust = TrustConfig(anchors=tuple(anchors),
                        policies={SIGN: config["AUTHZ_JPKI_SIGN_POLICIES"],
                                  AUTH: config["AUTHZ_JPKI_AUTH_POLICIES"]},
                        status_method=config["AUTHZ_JPKI_STATUS_METHOD"])
    return Verifier(trust=trust, status=status, links=links,
                    keys=IdentityKeys.from_kek(config["AUTHZ_KEK_BYTES"]), audience=issuer,
                    service_name=config["AUTHZ_SERVICE_NAME"],
                    trust_framework=config["AUTHZ_JPKI_TRUST_FRAMEWORK"]
                    or f"{issuer}/trust-frameworks/jpki-sim")
