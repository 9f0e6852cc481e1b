"""Which locale to speak: the ones we have translations for, and quiet fallbacks."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from functools import lru_cache
from pathlib import Path
from typing import Any

from babel import Locale, UnknownLocaleError
from flask import Flask, current_app, g, has_request_context, request, session, url_for
from flask_babel import format_date as babel_format_date
from flask_babel import format_datetime, get_locale, get_timezone
from markupsafe import Markup

from portal.i18n import wording

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
                p.name
                for p in base.iterdir()
                # A checkout has the .po files; an installed wheel, the compiled .mo only.
                if any((p / "LC_MESSAGES" / f"messages.{kind}").exists() for kind in ("po", "mo"))
            )
    return sorted(found)


def parse(tag: str | None) -> Locale | None:
    """A Babel locale for a tag such as ``de-DE`` or ``pt_BR``; None for anything else.

    The same object for the same tag (do not change it): every page parses the customer's
    culture and the browser's languages, and parsing costs more than the rest of the choice.
    """
    if not tag or len(tag) > 35 or not _TAG.match(tag):
        return None
    return _parsed(tag)


@lru_cache(maxsize=512)
def _parsed(tag: str) -> Locale | None:
    try:
        return Locale.parse(tag.replace("-", "_"))
    except (UnknownLocaleError, ValueError):
        return None


@lru_cache(maxsize=512)
def _match_keys(tag: str) -> tuple[str, ...]:
    """What a tag may match among our locales, best first: exact, language and script,
    language."""
    locale = parse(tag)
    if locale is None:
        return ()
    keys = [str(locale), f"{locale.language}_{locale.script}" if locale.script else ""]
    return tuple(key for key in [*keys, locale.language] if key)


@lru_cache(maxsize=16)
def _by_key(available: tuple[str, ...]) -> Mapping[str, str]:
    return {str(Locale.parse(a)): a for a in available}


def best_locale(candidates: Iterable[str | None], available: Iterable[str]) -> str:
    """The first candidate we can speak, matched exactly or by language; else English."""
    have = _by_key(tuple(available))
    for candidate in candidates:
        if not candidate:
            continue
        for key in _match_keys(candidate):
            if key in have:
                return have[key]
    return DEFAULT_LOCALE


def country_locale(country: str | None, available: Iterable[str]) -> str:
    """The language most spoken in ``country`` (CLDR's likely subtags: DE is de, BR is pt_BR,
    CN is zh_Hans) if the portal speaks it; else English. For people who have no language of
    their own on record, such as a partner's users."""
    from babel.core import get_global

    if not country:
        return DEFAULT_LOCALE
    likely = get_global("likely_subtags").get(f"und_{country.upper()}")
    if not likely:
        return DEFAULT_LOCALE
    parsed = Locale.parse(likely)
    candidates = [
        f"{parsed.language}_{parsed.script}_{parsed.territory}" if parsed.script else None,
        f"{parsed.language}_{parsed.territory}",
        f"{parsed.language}_{parsed.script}" if parsed.script else None,
        parsed.language,
    ]
    return best_locale(candidates, available)


def select_locale() -> Locale | str:
    """Flask-Babel's locale selector: the customer's own pick (remembered), else the culture on
    the customer record, else the browser's Accept-Language, else English.

    Answers with the (cached) Babel locale where it can: Flask-Babel would parse the code again
    on every request."""
    code = _select_locale_code()
    return parse(code) or code


def _select_locale_code() -> str:
    available = available_locales()
    if not has_request_context():
        return DEFAULT_LOCALE
    picked = session.get("lang")
    if isinstance(picked, str) and picked in available:
        return picked
    customer = _page_customer()
    record = (customer.culture, customer.language) if customer is not None else ()
    header = request.headers.get("Accept-Language", "")[:1000]
    return _best_for(record, header, tuple(available))


@lru_cache(maxsize=1024)
def _best_for(record: tuple[str | None, ...], header: str, available: tuple[str, ...]) -> str:
    """The choice for a customer record's culture and language and a browser's Accept-Language
    header: worked out once for each such pair (a few kinds of browser and customer make up
    nearly every page view)."""
    candidates = [*record, *(value for value, _quality in _accept_language(header))]
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
    """(code, name in its own language) for the language switcher; worked out once per app,
    like ``available_locales`` (every page shows the switcher)."""
    choices: list[tuple[str, str]] | None = current_app.extensions.get("portal.locale_choices")
    if choices is None:
        choices = current_app.extensions["portal.locale_choices"] = [
            (code, _own_name(code)) for code in available_locales()
        ]
    return choices


def language_options(selected: str) -> Markup:
    """The language switcher's ``<option>`` list with ``selected`` chosen: the same on every page
    in that language, so made once per app and language."""
    made: dict[str, Markup] = current_app.extensions.setdefault("portal.language_options", {})
    options = made.get(selected)
    if options is None:
        option = Markup('<option value="{}" lang="{}"{}>{}</option>\n')
        options = Markup("").join(
            option.format(code, code.replace("_", "-"), _SELECTED if code == selected else "", name)
            for code, name in locale_choices()
        )
        if len(made) <= len(locale_choices()):
            made[selected] = options
    return options


_SELECTED = Markup(" selected")


@dataclass(frozen=True)
class PageFrame:
    """What every page's header and ``<html>`` element show for a language: worked out once
    per language and mount point (each value cost a page a function call or a URL build)."""

    lang: str
    dir: str
    stylesheet: str
    signout: str
    language_action: str
    home: str
    #: The switcher's ``<option>`` list; empty when there is only one language to pick.
    language_options: Markup


def page_frame() -> PageFrame:
    """This page's frame, made on first use for its language and mount point."""
    locale = current_locale()
    key = (locale, request.script_root)
    made: dict[tuple[str, str], PageFrame] = current_app.extensions.setdefault(
        "portal.page_frames", {}
    )
    frame = made.get(key)
    if frame is None:
        frame = PageFrame(
            lang=locale.replace("_", "-"),
            dir=text_direction(locale),
            stylesheet=url_for("static", filename="portal.css"),
            signout=url_for("pages.signout"),
            language_action=url_for("pages.language"),
            home=url_for("pages.home"),
            language_options=language_options(locale) if len(locale_choices()) > 1 else Markup(),
        )
        if len(made) < 4 * len(locale_choices()):  # a few mount points at most
            made[key] = frame
    return frame


def _own_name(code: str) -> str:
    parsed = parse(code)
    name = (parsed.get_display_name(parsed) if parsed is not None else code) or code
    return name[:1].upper() + name[1:]


def format_date(value: date | datetime, format: str = "medium") -> str:  # noqa: A002 - Babel's
    """Flask-Babel's ``format_date``, for a date or a moment (the day it is in the reader's time
    zone). Flask-Babel's own moves a datetime with pytz's ``normalize``, which the ``zoneinfo``
    zones of customer pages do not have (called some fifty times per dashboard page)."""
    if isinstance(value, datetime):
        value = value.astimezone(get_timezone()).date()
    return str(babel_format_date(value, format))


def init_app(app: Flask) -> None:
    app.jinja_env.globals.update(
        page_frame=page_frame,
        text_direction=text_direction,
        locale_choices=locale_choices,
        language_options=language_options,
        format_datetime=format_datetime,
        format_date=format_date,
    )
