"""Checks on single values that reach people: names, addresses, domains, locales.

Each returns a short problem description, or None when the value is fine. Anything that can reach
a mail header must be free of control characters (CR/LF would inject headers).
"""

from __future__ import annotations

import re

from babel import Locale, UnknownLocaleError

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\ud800-\udfff]")
# A pragmatic address check: one @, a dotted domain, no spaces or control characters.
_EMAIL = re.compile(r"^[^\s@<>()\[\],;:\"\\]{1,64}@(?=.{1,253}\Z)[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+\Z")
_DOMAIN_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)\Z")
_PHONE = re.compile(r"^(?=.{3,40}\Z)\+?[0-9 ()./-]+\Z")
_CULTURE = re.compile(r"^[a-z]{2,3}(-[A-Z][a-z]{3})?-[A-Z]{2}\Z")
_LANGUAGE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*\Z")


def text(value: str, max_length: int, required: bool = True) -> str | None:
    if not value.strip():
        return "is required" if required else None
    if len(value) > max_length:
        return f"is longer than {max_length} characters"
    if _CONTROL.search(value):
        return "contains control characters such as line breaks"
    return None


def email(value: str) -> str | None:
    if not value:
        return "is required"
    if _CONTROL.search(value):
        return "contains control characters such as line breaks"
    if len(value) > 254 or not _EMAIL.match(value):
        return "is not an email address"
    return None


def domain(value: str) -> str | None:
    if not value:
        return "is required"
    labels = value.split(".")
    if len(value) > 253 or len(labels) < 2 or not all(_DOMAIN_LABEL.match(x) for x in labels):
        return "is not a domain name such as contoso.example (lower-case letters, digits, hyphens)"
    return None


def phone(value: str) -> str | None:
    if value and not _PHONE.match(value):
        return "is not a phone number"
    return None


def culture(value: str) -> str | None:
    """A culture such as ``de-DE`` that Babel knows."""
    if not _CULTURE.match(value):
        return "is not a culture such as en-US or de-DE"
    try:
        Locale.parse(value, sep="-")
    except (UnknownLocaleError, ValueError):
        return f"is an unknown culture {value!r}"
    return None


def language(value: str) -> str | None:
    if not _LANGUAGE.match(value) or len(value) > 35:
        return "is not a language such as en or de"
    try:
        Locale.parse(value, sep="-")
    except (UnknownLocaleError, ValueError):
        return f"is an unknown language {value!r}"
    return None
