"""The translators' and developers' commands behind ``portal i18n``: bring every language in
step with the template, add a language, count what is translated."""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from babel.messages.catalog import Message
from babel.messages.pofile import read_po

from portal.i18n.catalogs import compile_catalog
from portal.i18n.files import (
    SOURCE_LOCALE,
    TranslationsError,
    parse_locale,
    po_files,
    po_path,
    read,
    read_template,
    render,
    shown,
    template_path,
    texts,
    write_atomically,
)

_PO_HEADER = """\
# {language} translations for the portal.
# Edit the msgstr lines (see locales/README.md); `portal i18n check` checks them."""
#: Header lines left out of written catalogs: they change without the strings changing.


def update(locales: Path) -> list[Path]:
    """Bring every ``.po`` in step with ``messages.pot``: new strings empty, changed ones fuzzy,
    removed ones kept as obsolete (``#~``) so no translator's work is lost."""
    template = read_template(locales)
    written = []
    for locale, po in po_files(locales).items():
        catalog = read(po, locale)
        catalog.update(template, update_creation_date=False)
        data = render(catalog)
        if po.read_bytes() != data:
            write_atomically(po, data)
            written.append(po)
    return written


def init_locale(locales: Path, tag: str) -> Path:
    """Start the catalog of a new language from ``messages.pot``; it shows in the language
    switcher from the next start of the portal."""
    locale = parse_locale(tag)
    name = str(locale)
    if name == SOURCE_LOCALE:
        raise TranslationsError("en is the source language: its texts are the ones in the code")
    po = po_path(locales, name)
    if po.exists():
        raise TranslationsError(f"{shown(po)} exists already: edit it, or run `portal i18n update`")
    template = read_template(locales)
    buffer = io.BytesIO(render(template))
    catalog = read_po(buffer, locale=name)
    catalog.fuzzy = False
    catalog.header_comment = _PO_HEADER.format(language=locale.english_name)
    write_atomically(po, render(catalog))
    compile_catalog(po, po.with_suffix(".mo"), name)
    return po


# --- counting ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stats:
    locale: str
    translated: int
    fuzzy: int
    total: int
    error: str | None = None

    @property
    def percent(self) -> float:
        return 100.0 * self.translated / self.total if self.total else 100.0


def _is_translated(message: Message) -> bool:
    strings = texts(message.string)
    return bool(strings) and all(strings) and not message.fuzzy


def stats(locales: Path) -> list[Stats]:
    """Per locale, how many of the template's strings are translated (fuzzy ones are not)."""
    template_file = template_path(locales)
    template = read(template_file) if template_file.is_file() else None
    found = []
    for locale, po in po_files(locales).items():
        try:
            catalog = read(po, locale)
        except TranslationsError as exc:
            found.append(Stats(locale, 0, 0, 0, str(exc)))
            continue
        reference: Iterable[Message] = template if template is not None else catalog
        keys = [(m.id, m.context) for m in reference if m.id]
        translated = fuzzy = 0
        for key, context in keys:
            message = catalog.get(key, context)
            if message is None:
                continue
            if _is_translated(message):
                translated += 1
            elif message.fuzzy:
                fuzzy += 1
        found.append(Stats(locale, translated, fuzzy, len(keys)))
    return found
