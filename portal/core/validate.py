"""Checks on single values that reach people: names, addresses, domains, locales.

Each returns a ``Problem`` (its code, and the words the API says it in), or None when the value
is fine. A single-line value
holds no control character of any kind: CR and LF would inject mail headers, and Python's
``splitlines``, mail clients and browsers also break lines at NEL (U+0085), VT, FF, the file,
group and record separators and the Unicode line and paragraph separators; the bidirectional
overrides and isolates make text read differently from what it is.
"""

from __future__ import annotations

import re
import unicodedata

from babel import Locale, UnknownLocaleError

from portal.core.errors import Problem, ProblemCode

#: Unicode categories never allowed in a single line: controls (C0 and C1: NUL, CR, LF, NEL...),
#: line and paragraph separators, surrogates (not text).
_CONTROL_CATEGORIES = frozenset({"Cc", "Zl", "Zp", "Cs"})
#: Format characters that reorder what is shown (Trojan Source): embeddings, overrides, isolates.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
CONTROL_PROBLEM = Problem(ProblemCode.CONTROL, "contains control characters such as line breaks")
REQUIRED = Problem(ProblemCode.REQUIRED, "is required")


def too_long(max_length: int) -> Problem:
    return Problem(ProblemCode.TOO_LONG, f"is longer than {max_length} characters")


def has_control(value: str) -> bool:
    """Whether ``value`` holds a character a single line of text may not."""
    return any(c in _BIDI_CONTROLS or unicodedata.category(c) in _CONTROL_CATEGORIES for c in value)


# A pragmatic address check: one @, a dotted domain, no spaces or control characters, and ASCII
# only: a mail header cannot carry any other address without SMTPUTF8, which the portal does not
# ask its SMTP server for (the address would be taken, and then no email could ever be built).
_EMAIL = re.compile(
    r"^[!#-'*+\-./0-9=?A-Z^-~]{1,64}"  # printable ASCII but for spaces and "(),:;<>@[\]
    r"@(?=.{1,253}\Z)[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+\Z"
)
_DOMAIN_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)\Z")
_PHONE = re.compile(r"^(?=.{3,40}\Z)\+?[0-9 ()./-]+\Z")
_CULTURE = re.compile(r"^[a-z]{2,3}(-[A-Z][a-z]{3})?-[A-Z]{2}\Z")
_LANGUAGE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*\Z")


def text(value: str, max_length: int, required: bool = True) -> Problem | None:
    if not value.strip():
        return REQUIRED if required else None
    if len(value) > max_length:
        return too_long(max_length)
    if has_control(value):
        return CONTROL_PROBLEM
    return None


def email(value: str) -> Problem | None:
    if not value:
        return REQUIRED
    if has_control(value):
        return CONTROL_PROBLEM
    if len(value) > 254 or not _EMAIL.match(value):
        return Problem(ProblemCode.NOT_EMAIL, "is not an email address")
    return None


def domain(value: str) -> Problem | None:
    if not value:
        return REQUIRED
    labels = value.split(".")
    if len(value) > 253 or len(labels) < 2 or not all(_DOMAIN_LABEL.match(x) for x in labels):
        return Problem(
            ProblemCode.NOT_DOMAIN,
            "is not a domain name such as contoso.example (lower-case letters, digits, hyphens)",
        )
    return None


def phone(value: str) -> Problem | None:
    if value and not _PHONE.match(value):
        return Problem(ProblemCode.NOT_PHONE, "is not a phone number")
    return None


def language_tag(value: str) -> str:
    """A language tag in its usual case, as BCP 47 writes it: ``EN-US`` is ``en-US``, ``En`` is
    ``en``, ``zh-hans-cn`` is ``zh-Hans-CN`` (Microsoft's own samples send the odd ones). Only
    the case changes; what is not a tag stays as it was, for the checks to name."""
    parts = value.replace("_", "-").split("-")
    if not all(part.isascii() and part.isalnum() for part in parts):
        return value
    cased = [parts[0].lower()]
    for part in parts[1:]:
        if len(part) == 4 and part.isalpha():
            cased.append(part.title())
        elif (len(part) == 2 and part.isalpha()) or (len(part) == 3 and part.isdigit()):
            cased.append(part.upper())
        else:
            cased.append(part.lower())
    return "-".join(cased)


def culture(value: str) -> Problem | None:
    """A culture such as ``de-DE`` that Babel knows."""
    if not _CULTURE.match(value):
        return Problem(ProblemCode.NOT_CULTURE, "is not a culture such as en-US or de-DE")
    try:
        Locale.parse(value, sep="-")
    except (UnknownLocaleError, ValueError):
        return Problem(ProblemCode.NOT_CULTURE, f"is an unknown culture {value!r}")
    return None


def language(value: str) -> Problem | None:
    if not _LANGUAGE.match(value) or len(value) > 35:
        return Problem(ProblemCode.NOT_LANGUAGE, "is not a language such as en or de")
    try:
        Locale.parse(value, sep="-")
    except (UnknownLocaleError, ValueError):
        return Problem(ProblemCode.NOT_LANGUAGE, f"is an unknown language {value!r}")
    return None
