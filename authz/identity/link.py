"""The link service (証明書紐付け): one stable pseudonym per person for this service."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from typing import Protocol

from authz.identity.errors import StatusUnavailable


@dataclass(frozen=True)
class Link:
    person_link_id: str
    kind: str
    status: str
    superseded_by: int | None = None


class LinkSource(Protocol):
    def resolve(self, cert_der: bytes, rp_id: str) -> Link: ...


def link_from(answer: dict[str, Any]) -> Link:
    """Validate a link-service answer; anything unexpected is unavailable, never guessed."""
    person = answer.get("person_link_id")
    if not isinstance(person, str) or not 8 <= len(person) <= 64 or not person.isalnum():
        raise StatusUnavailable("link_malformed")
    superseded = answer.get("superseded_by")
    return Link(person, str(answer.get("kind", "")), str(answer.get("status", "")),
                superseded if isinstance(superseded, int) else None)


class HttpLinkSource:
    """The link service of a platform operator, or `authz sim serve`, over HTTP."""

    def __init__(self, url: str, timeout: float = 3.0) -> None:
        self.url = url
        self.timeout = timeout

    def resolve(self, cert_der: bytes, rp_id: str) -> Link:
        import base64

        body = json.dumps({"cert": base64.urlsafe_b64encode(cert_der).decode().rstrip("="),
                           "rp_id": rp_id}).encode()
        request = urllib.request.Request(  # noqa: S310 - configured http(s) URL
            self.url, data=body, method="POST", headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                answer = json.loads(response.read(65536))
        except (urllib.error.URLError, TimeoutError, OSError, ValueError) as exc:
            raise StatusUnavailable(f"link_unreachable:{type(exc).__name__}") from None
        if not isinstance(answer, dict):
            raise StatusUnavailable("link_malformed")
        return link_from(answer)
