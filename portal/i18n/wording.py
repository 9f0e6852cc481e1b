"""Words and formats that depend on the reader: agreement names, people's names, time zones.

Pages and emails both use these, so an agreement or a person is called the same everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, tzinfo
from functools import cache, lru_cache
from typing import Any

from babel.core import get_global
from babel.dates import get_timezone
from flask import current_app, has_app_context
from flask_babel import LazyString, get_locale, gettext, lazy_gettext

from portal.core.catalog import CLOUD_AGREEMENT, CUSTOMER_AGREEMENT, SECRECY_AMENDMENT

#: What each agreement is called, in the reader's language.
AGREEMENT_NAMES = {
    CUSTOMER_AGREEMENT: lazy_gettext("Microsoft Customer Agreement"),
    CLOUD_AGREEMENT: lazy_gettext("Microsoft Cloud Agreement"),
    SECRECY_AMENDMENT: lazy_gettext("Professional Secrecy Amendment"),
}
#: A one-line summary of each agreement the customer may be asked to accept.
AGREEMENT_SUMMARIES = {
    CUSTOMER_AGREEMENT: lazy_gettext(
        "The terms under which your company buys and uses Microsoft cloud services through "
        "your partner. It does not expire and covers future purchases too."
    ),
    SECRECY_AMENDMENT: lazy_gettext(
        # Translators: German law, section 203 of the Criminal Code (StGB).
        "For professions bound by secrecy under section 203 of the German Criminal Code, such "
        "as doctors and lawyers: Microsoft keeps your data confidential as the law requires."
    ),
}


def agreement_name(agreement_type: str, fallback: str = "") -> str:
    """The agreement's name in the current locale; ``fallback`` (the catalog's) if unknown."""
    name = _translated(AGREEMENT_NAMES, agreement_type)
    return name if name is not None else fallback


def agreement_summary(agreement_type: str) -> str:
    return _translated(AGREEMENT_SUMMARIES, agreement_type) or ""


def _translated(texts: Mapping[str, LazyString], key: str) -> str | None:
    """``texts[key]`` in the current locale, looked up once per app and locale (the agreement
    page shows each name and summary on every view)."""
    text = texts.get(key)
    if text is None:
        return None
    if not has_app_context():
        return str(text)
    made: dict[tuple[Any, int, str], str] = current_app.extensions.setdefault("portal.wording", {})
    lookup = (get_locale(), id(texts), key)
    found = made.get(lookup)
    if found is None:
        found = made[lookup] = str(text)
    return found


def person_name(first: str, last: str) -> str:
    """A person's full name in the order the current locale writes it."""
    if not first or not last:
        return (first or last).strip()
    name: str = gettext(
        # Translators: the order of a person's given name (first) and family name (last), with
        # the separator your language uses. Japanese and Chinese: "%(last)s %(first)s".
        "%(first)s %(last)s",
        first=first,
        last=last,
    )
    return name.strip()


def customer_zone(country: str | None, at: datetime | None = None) -> tzinfo:
    """The time zone to show a customer's times in: their country's, where it has one.

    A country counts as having one time zone when all of its zones keep the same UTC offset at
    ``at`` (Germany: yes; the USA, Spain with the Canaries: no). Otherwise times are in UTC, and
    the formats name the zone either way.
    """
    moment = at or datetime.now(UTC)
    return _zone_in_quarter((country or "").upper(), int(moment.timestamp()) // _QUARTER_HOUR)


#: Offsets are whole quarter hours and clocks change at whole quarter hours, so the answer
#: holds for a quarter hour of UTC: worked out once per country and quarter (a country such as
#: the USA has dozens of zones to compare, for every email).
_QUARTER_HOUR = 15 * 60


@lru_cache(maxsize=1024)
def _zone_in_quarter(country: str, quarter: int) -> tzinfo:
    name = _zone_names().get(country)
    if name is None:
        return UTC
    moment = datetime.fromtimestamp(quarter * _QUARTER_HOUR, UTC)
    zones = [get_timezone(z) for z in name]
    offsets = {moment.astimezone(z).utcoffset() for z in zones}
    return zones[0] if len(offsets) == 1 else UTC


@cache
def _zone_names() -> dict[str, tuple[str, ...]]:
    zones = get_global("territory_zones")
    return {country: tuple(names) for country, names in zones.items() if names}
