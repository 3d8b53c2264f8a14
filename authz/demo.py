"""Demo mode (``AUTHZ_DEMO=1``): fictitious institutions and demo cards, created once.

Every name, address and code here is made up; nothing models a real person or institution.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from authz.registry import service as registry
from authz.registry.models import Institution

# Codes are made up in the 10-digit shape of Japan's institution codes; no real institution.
DEMO_INSTITUTIONS = (
    registry.InstitutionSpec("デモ総合病院 (Demo General Hospital)", "hospital", "1399999901",
                             emergency=True),
    registry.InstitutionSpec("デモ内科クリニック (Demo Clinic)", "clinic", "1399999902"),
    registry.InstitutionSpec("デモ薬局 (Demo Pharmacy)", "pharmacy", "1349999903"),
    registry.InstitutionSpec("デモ診療記録サーバ (Demo Record Server)", "resource_server",
                             "DEMO-RS-1"),
)
DEMO_PIN = "1234"
DEMO_PASSWORD = "DEMO2026"  # noqa: S105 - the published password of a demo card


@dataclass(frozen=True)
class DemoCard:
    file: str
    name: str
    birthdate: str
    gender: str
    address: str
    note: str
    password: str | None = DEMO_PASSWORD
    moved_to: str | None = None


DEMO_CARDS = (
    DemoCard("hanako.json", "見本\u3000花子", "1985-03-15", "female",
             "東京都千代田区見本町一丁目1番1号", "adult: login and identity proofing"),
    DemoCard("taro.json", "見本\u3000太郎", "2016-08-01", "male",
             "東京都千代田区見本町一丁目1番1号",
             "under 15: authentication certificate only, login-only account", password=None),
    DemoCard("jiro.json", "見本\u3000次郎", "1970-11-03", "male",
             "東京都千代田区見本町二丁目2番2号",
             "moved: first signature certificate revoked (affiliationChanged), new one issued",
             moved_to="大阪府大阪市北区見本町三丁目3番3号"),
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
    return added


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
