"""Why a card response was refused: a precise reason for the audit log, one message for people."""

from __future__ import annotations

from authz.errors import AuthzError

PUBLIC_MESSAGE = "The card response could not be accepted. Start again with a new login."


class CardRejected(AuthzError):
    """A card response failed verification; ``reason`` goes to the audit log only."""

    code, description, status = "card_rejected", PUBLIC_MESSAGE, 400

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


class StatusUnavailable(Exception):
    """The status source did not answer usably (timeout, tryLater, transport); fail closed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
