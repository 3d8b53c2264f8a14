"""Languages of the pages: Flask-Babel catalogs (``authz/translations``), Japanese by default.

The page language is, in order: the switch the visitor used (kept in the session: an explicit
choice on this site), what the request asks for (OIDC ``ui_locales`` on the authorization
request, ``lang`` on the login page), ``Accept-Language``, and Japanese. Dates are shown in
Japan time, in Japanese style (``2026年11月28日 14:05``) when the page is Japanese.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint
from flask import Flask
from flask import Response
from flask import g
from flask import has_request_context
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask_babel import Babel
from flask_babel import force_locale
from flask_babel import format_datetime
from flask_babel import get_locale
from flask_babel import gettext
from flask_babel import refresh
from markupsafe import Markup
from markupsafe import escape
from werkzeug.exceptions import HTTPException

from authz.errors import AuthzError
from authz.web import require_csrf
from authz.web import secure_page

LANGUAGES = ("ja", "en")  # the first is the default
TIMEZONE = "Asia/Tokyo"
babel = Babel()
bp = Blueprint("i18n", __name__)
bp.after_request(secure_page)


def pick(tags: str | None) -> str | None:
    """The first ja or en among BCP 47 tags in order of preference (``ui_locales``), if any."""
    for tag in (tags or "").split()[:10]:
        primary = tag.split("-", 1)[0].lower()
        if primary in LANGUAGES:
            return primary
    return None


def request_language(lang: str | None) -> None:
    """This request asked for a language itself (``ui_locales``): used unless the visitor
    chose one with the switch."""
    if lang in LANGUAGES:
        g.authz_lang = lang
        refresh()  # a locale looked up earlier in this request is not kept


def select_locale() -> str:
    if not has_request_context():
        return LANGUAGES[0]
    chosen = session.get("lang")
    if chosen in LANGUAGES:
        return str(chosen)
    asked = g.get("authz_lang")
    if asked in LANGUAGES:
        return str(asked)
    return request.accept_languages.best_match(LANGUAGES) or LANGUAGES[0]


def current() -> str:
    """The language of this page: ``ja`` or ``en``."""
    locale = get_locale()
    return locale.language if locale is not None and locale.language in LANGUAGES \
        else LANGUAGES[0]


def both(message: str, form: str = "span", **variables: Any) -> Markup:
    """A catalog message in both languages, this page's first: for the login, consent and
    error pages, which apps open without knowing the patient's language.

    ``form`` is ``span`` (inline, each part tagged with its ``lang``), ``text`` (plain, for a
    title or a button) or ``p`` (one paragraph per language).
    """
    first = current()
    parts = []
    for lang in (first, *(other for other in LANGUAGES if other != first)):
        with force_locale(lang):
            template = escape(gettext(message))
        # Markup's % escapes plain values and keeps markup (``<strong>`` around a name)
        parts.append((lang, template % variables if variables else template))
    if form == "text":
        return Markup(" / ").join(text for _lang, text in parts)
    if form == "p":
        return Markup("\n").join(Markup('<p lang="{}">{}</p>').format(lang, text)
                                 for lang, text in parts)
    return Markup(" / ").join(Markup('<span lang="{}">{}</span>').format(lang, text)
                              for lang, text in parts)


def label(pair: Sequence[str]) -> str:
    """A (Japanese, English) label of the vocabulary in the page's language."""
    return pair[1] if current() == "en" else pair[0]


def when(moment: datetime | None, *, date_only: bool = False) -> str:
    """A time in Japan time: ``2026年11月28日 14:05`` in Japanese, ``28 Nov 2026, 14:05``."""
    if moment is None:
        return ""
    if current() == "ja":
        pattern = "y年M月d日" if date_only else "y年M月d日 HH:mm"
    else:
        pattern = "d MMM y" if date_only else "d MMM y, HH:mm"
    return str(format_datetime(moment, pattern))


def until(moment: datetime | None) -> str:
    """The end of a period: a Japan-time midnight is shown as the last whole day it covers."""
    if moment is None:
        return ""
    local = moment.astimezone(ZoneInfo(TIMEZONE))
    if (local.hour, local.minute, local.second) == (0, 0, 0):
        return when(local - timedelta(days=1), date_only=True)
    return when(moment)


@bp.post("/lang")
def switch() -> Response:
    """The language switch: a plain form, so it works without JavaScript."""
    from authz.web.pages import safe_next

    target = safe_next(request.form.get("next"))
    if not _csrf_ok():
        return render_template(  # type: ignore[return-value]
            "message.html", title=gettext("Nothing was changed"), back=target,
            message=gettext("This form has expired or was not sent from this page; nothing "
                            "was changed. Reload the page and try again.")), 400
    chosen = request.form.get("lang", "")
    if chosen in LANGUAGES:
        session["lang"] = chosen
    return redirect(target, 303)  # type: ignore[return-value]


def _csrf_ok() -> bool:
    try:
        require_csrf()
    except (AuthzError, HTTPException):
        return False
    return True


def init_i18n(app: Flask) -> None:
    babel.init_app(app, default_locale=LANGUAGES[0], default_timezone=TIMEZONE,
                   locale_selector=select_locale)
    app.register_blueprint(bp)
    app.jinja_env.globals.update(current_lang=current, label=label, both=both,
                                 LANGUAGES=LANGUAGES)
    app.jinja_env.filters["when"] = when
    app.jinja_env.filters["until"] = until
