"""Which locale to speak: the ones we have translations for, and quiet fallbacks."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import tzinfo
from pathlib import Path
from typing import Any

from babel import Locale, UnknownLocaleError
from flask import Flask, current_app, g, has_request_context, request, session
from flask_babel import get_locale

from portal import wording

DEFAULT_LOCALE = "en"
_TAG = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8}){0,3}$")


def available_locales() -> list[str]:
    """Locales with translations in ``locales/``, plus English (the source language).

    Read once per app: a language added with ``portal i18n init`` appears on the next start.
    """
    known: list[str] | None = current_app.extensions.get("portal.locales")
    if known is None:
        known = current_app.extensions["portal.locales"] = _scan_locales()
    return known


def _scan_locales() -> list[str]:
    babel = current_app.extensions["babel"]
    found = {DEFAULT_LOCALE}
    for directory in babel.instance.domain_instance.translation_directories:
        base = Path(directory)
        if base.is_dir():
            found.update(
                p.name for p in base.iterdir() if (p / "LC_MESSAGES" / "messages.po").exists()
            )
    return sorted(found)


def parse(tag: str | None) -> Locale | None:
    """A Babel locale for a tag such as ``de-DE`` or ``pt_BR``; None for anything else."""
    if not tag or len(tag) > 35 or not _TAG.match(tag):
        return None
    try:
        return Locale.parse(tag.replace("-", "_"))
    except (UnknownLocaleError, ValueError):
        return None


def best_locale(candidates: Iterable[str | None], available: Iterable[str]) -> str:
    """The first candidate we can speak, matched exactly or by language; else English."""
    have = {str(Locale.parse(a)): a for a in available}
    for candidate in candidates:
        locale = parse(candidate)
        if locale is None:
            continue
        for key in (
            str(locale),
            f"{locale.language}_{locale.script}" if locale.script else None,
            locale.language,
        ):
            if key and key in have:
                return have[key]
    return DEFAULT_LOCALE


def select_locale() -> str:
    """Flask-Babel's locale selector: the customer's own pick (remembered), else the culture on
    the customer record, else the browser's Accept-Language, else English."""
    available = available_locales()
    if not has_request_context():
        return DEFAULT_LOCALE
    picked = session.get("lang")
    if isinstance(picked, str) and picked in available:
        return picked
    customer = _page_customer()
    candidates: list[str | None] = []
    if customer is not None:
        candidates += [customer.culture, customer.language]
    header = request.headers.get("Accept-Language", "")[:1000]
    candidates += [value for value, _quality in _accept_language(header)]
    return best_locale(candidates, available)


def _page_customer() -> Any:
    """The customer the page is for: signed in, or named by the invitation link being opened."""
    return g.get("customer") or g.get("link_customer")


def select_timezone() -> tzinfo | None:
    """Flask-Babel's time zone selector: the customer's country's zone where it has one."""
    if not has_request_context():
        return None
    customer = _page_customer()
    return wording.customer_zone(customer.country) if customer is not None else None


def _accept_language(header: str) -> list[tuple[str, float]]:
    """Accept-Language parsed quietly: malformed parts are skipped, at most 20 taken."""
    found: list[tuple[str, float]] = []
    for part in header.split(",")[:20]:
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        if tag and _TAG.match(tag):
            found.append((tag, quality))
    return sorted(found, key=lambda item: -item[1])


def current_locale() -> str:
    locale = get_locale()
    return str(locale) if locale else DEFAULT_LOCALE


def text_direction(locale: str) -> str:
    parsed = parse(locale)
    return parsed.text_direction if parsed is not None else "ltr"


def locale_choices() -> list[tuple[str, str]]:
    """(code, name in its own language) for the language switcher."""
    choices = []
    for code in available_locales():
        parsed = parse(code)
        name = parsed.get_display_name(parsed) if parsed is not None else code
        choices.append((code, (name or code)[:1].upper() + (name or code)[1:]))
    return choices


def init_app(app: Flask) -> None:
    from flask_babel import format_date, format_datetime

    app.jinja_env.globals.update(
        current_locale=current_locale,
        text_direction=text_direction,
        locale_choices=locale_choices,
        format_datetime=format_datetime,
        format_date=format_date,
    )
