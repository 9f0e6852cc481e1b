"""Emails rendered from one template pair (text and HTML) in the recipient's locale."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

from babel import Locale, dates
from flask import render_template, render_template_string
from flask_babel import force_locale
from markupsafe import Markup, escape

from portal.i18n.languages import DEFAULT_LOCALE


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
        context.update(subject=title, **_language(locale))
        text = render_template(f"email/{name}.txt", **context)
        html = render_template(f"email/{name}.html", **context)
    return Email(subject=title, text=_tidy(text), html=html, locale=locale)


def _language(locale: str) -> dict[str, str]:
    """What the frame of an HTML email (``email/_layout.html``) needs to know of its language."""
    direction = Locale.parse(locale).text_direction if locale != DEFAULT_LOCALE else None
    return {"html_lang": locale.replace("_", "-"), "text_direction": direction or "ltr"}


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


# --- emails a person wrote ----------------------------------------------------------------------

#: The HTML part of an email a person wrote: their text in the frame of every HTML email.
_WRITTEN = "{% extends 'email/_layout.html' %}{% block body %}{{ body }}{% endblock %}"


def written(subject: str, text: str, locale: str) -> Email:
    """An email whose text a person wrote (an invitation the partner edited). Its HTML part says
    what the text says and no more: escaped, in paragraphs, its web addresses made links, in the
    frame of the generated emails (``lang`` and ``dir`` of ``locale``, no external resources)."""
    html = render_template_string(
        _WRITTEN, subject=subject, body=text_html(text), **_language(locale)
    )
    return Email(subject=subject, text=text, html=html, locale=locale)


def text_html(text: str) -> Markup:
    """Plain text as HTML: a paragraph per block of lines between blank ones, ``<br>`` at each
    other line end, http(s) addresses as links; everything else escaped."""
    blocks: list[list[str]] = [[]]
    for line in text.split("\n"):
        if line.strip():
            blocks[-1].append(line)
        elif blocks[-1]:
            blocks.append([])
    return Markup("\n").join(
        Markup("<p>{}</p>").format(Markup("<br>\n").join(_linked(line) for line in block))
        for block in blocks
        if block
    )


_WEB_ADDRESS = re.compile(r"https?://[^\s<>\"]+", re.IGNORECASE)
#: What ends a sentence rather than an address ("see https://example.test/a.").
_AFTER_ADDRESS = ".,;:!?'\u2019\u201d\u00bb\u2026"


def web_addresses(text: str) -> list[str]:
    """The http(s) addresses in ``text``, as ``text_html`` links them."""
    return [text[start:end] for start, end in _address_spans(text)]


def _address_spans(text: str) -> Iterator[tuple[int, int]]:
    for match in _WEB_ADDRESS.finditer(text):
        start, end = match.span()
        while end > start and (
            text[end - 1] in _AFTER_ADDRESS
            or (text[end - 1] == ")" and text.count("(", start, end) < text.count(")", start, end))
        ):
            end -= 1
        if not text[start:end].endswith("://"):
            yield start, end


def _linked(line: str) -> Markup:
    parts: list[Markup] = []
    done = 0
    for start, end in _address_spans(line):
        parts.append(escape(line[done:start]))
        parts.append(_ANCHOR.format(line[start:end]))
        done = end
    parts.append(escape(line[done:]))
    return Markup("").join(parts)


_ANCHOR = Markup('<a href="{0}" style="color:#0b5cad;word-break:break-all;">{0}</a>')
