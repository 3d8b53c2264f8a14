"""Trust configuration: anchors, policy OIDs and the status method, per certificate kind.

Everything a real deployment changes (J-LIS anchors, production policy OIDs, a platform
operator's OCSP responder) is data here, never code.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field
from datetime import timedelta

from cryptography import x509

SIGN = "sign"  # 署名用電子証明書: proofing
AUTH = "auth"  # 利用者証明用電子証明書: login
KINDS = (SIGN, AUTH)
DEFAULT_POLICIES = {
    SIGN: frozenset({"1.2.392.200149.8.5.1.1.20"}),
    AUTH: frozenset({"1.2.392.200149.8.5.1.3.30"}),
}


@dataclass(frozen=True)
class Anchor:
    kind: str
    generation: int
    certificate: x509.Certificate
    key_id: bytes


@dataclass(frozen=True)
class TrustConfig:
    anchors: tuple[Anchor, ...]
    policies: dict[str, frozenset[str]] = field(default_factory=lambda: dict(DEFAULT_POLICIES))
    status_method: str = "ocsp"  # "ocsp" or "crl"; no fallback between them (fail closed)
    clock_skew: timedelta = timedelta(seconds=60)
    max_cert_bytes: int = 4096

    def anchors_for(self, kind: str) -> list[Anchor]:
        return [a for a in self.anchors if a.kind == kind]


def load_anchors(kind: str, pems: Iterable[bytes]) -> list[Anchor]:
    """Parse CA certificates; each must carry a subject key identifier (b6 step 4 matches on it)."""
    anchors = []
    for generation, pem in enumerate(pems, start=1):
        for cert in x509.load_pem_x509_certificates(pem):
            ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            anchors.append(Anchor(kind, generation, cert, ski.digest))
    return anchors
