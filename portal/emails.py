"""Emails rendered from one template pair (text and HTML) in the recipient's locale."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

from babel import Locale, dates
from flask import render_template
from flask_babel import force_locale

from portal.i18n import DEFAULT_LOCALE


@dataclass(frozen=True)
class Email:
    subject: str
    text: str
    html: str
    #: The locale it was written in, e.g. ``de`` or ``pt_BR``.
    locale: str


def render(name: str, locale: str, subject: Callable[[], str], **context: Any) -> Email:
    """Render ``templates/email/<name>.txt`` and ``.html`` in ``locale``.

    ``subject``, and any context value given as a function without arguments, run in the locale
    too (names and agreement names are worded per language).
    """
    with force_locale(locale):
        title = _shorten(subject(), MAX_SUBJECT)
        context = {key: value() if callable(value) else value for key, value in context.items()}
        context.update(
            subject=title,
            html_lang=locale.replace("_", "-"),
            text_direction=(Locale.parse(locale).text_direction or "ltr")
            if locale != DEFAULT_LOCALE
            else "ltr",
        )
        text = render_template(f"email/{name}.txt", **context)
        html = render_template(f"email/{name}.html", **context)
    return Email(subject=title, text=_tidy(text), html=html, locale=locale)


#: Longest subject line kept (long partner and company names are shortened with an ellipsis).
MAX_SUBJECT = 300


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def when(moment: datetime, locale: str, zone: tzinfo = UTC) -> str:
    """A date and time as the locale writes it, in ``zone`` and naming it."""
    return str(dates.format_datetime(moment, "long", tzinfo=zone, locale=locale))


def day(moment: datetime, locale: str, zone: tzinfo = UTC) -> str:
    """A date as the locale writes it (the day it was in ``zone``)."""
    return str(dates.format_date(moment.astimezone(zone), "long", locale=locale))


def _tidy(text: str) -> str:
    """Collapse the blank lines template tags leave behind; end with one newline."""
    lines = [line.rstrip() for line in text.strip().splitlines()]
    tidy: list[str] = []
    for line in lines:
        if line or (tidy and tidy[-1]):
            tidy.append(line)
    return "\n".join(tidy) + "\n"
