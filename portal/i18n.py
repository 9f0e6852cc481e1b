"""Which locale to speak: the ones we have translations for, and quiet fallbacks."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from babel import Locale, UnknownLocaleError
from flask import current_app

DEFAULT_LOCALE = "en"
_TAG = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8}){0,3}$")


def available_locales() -> list[str]:
    """Locales with translations in ``locales/``, plus English (the source language)."""
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
