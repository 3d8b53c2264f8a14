"""The message catalogs: every page string translated into Japanese, compiled files current."""

from __future__ import annotations

from pathlib import Path

from babel.messages.extract import DEFAULT_KEYWORDS
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parents[2]
CATALOGS = ROOT / "authz" / "translations"
METHODS = [("authz/web/**.py", "python"), ("authz/templates/**.html", "jinja2")]


def _source_ids() -> set[str]:
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
            str(ROOT), METHODS, keywords={**DEFAULT_KEYWORDS, "both": None}):
        if isinstance(message, str) and (_file.startswith("authz/")):
            found.add(message)
    return found


def _catalog(lang: str):
    with (CATALOGS / lang / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        return read_po(handle)


def test_every_page_string_has_a_japanese_translation():
    ja = {m.id: m.string for m in _catalog("ja") if m.id}
    missing = sorted(i for i in _source_ids() if not ja.get(i))
    assert not missing, "run `make catalogs` and translate: " + "; ".join(missing[:5])


def test_the_compiled_catalogs_match_their_sources():
    for lang in ("ja", "en"):
        source = {m.id: m.string for m in _catalog(lang) if m.id and m.string
                  and "fuzzy" not in m.flags}
        with (CATALOGS / lang / "LC_MESSAGES" / "messages.mo").open("rb") as handle:
            compiled = {m.id: m.string for m in read_mo(handle) if m.id}
        assert compiled == source, f"{lang}: run `make catalogs` (pybabel compile)"


def test_no_catalog_entry_is_fuzzy_or_obsolete():
    for lang in ("ja", "en"):
        catalog = _catalog(lang)
        assert not [m.id for m in catalog if m.id and "fuzzy" in m.flags]
        assert not catalog.obsolete


def test_both_languages_keep_markup_and_escape_values(app):
    from markupsafe import Markup

    from authz.web.i18n import both

    with app.test_request_context("/", headers={"Accept-Language": "en"}):
        out = both("%(institution)s, for %(purpose)s:",
                   institution=Markup("<strong>A&amp;B</strong>"), purpose="<script>")
        assert "<strong>A&amp;B</strong>" in out and "&lt;script&gt;" in out
        assert out.index('lang="en"') < out.index('lang="ja"')  # the chosen language first
        assert "（目的：&lt;script&gt;）" in out
