"""Where the gettext catalogs are, and how they are read and written: the template
(``locales/messages.pot``) and one ``<locale>/LC_MESSAGES/messages.po`` per language, always
written the same way (sorted, no locations, no creation date or Babel version) so that "is it
stale?" is a comparison of bytes."""

from __future__ import annotations

import contextlib
import io
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from babel import Locale, UnknownLocaleError
from babel.messages.catalog import Catalog
from babel.messages.pofile import PoFileError, read_po, write_po

DOMAIN = "messages"
TEMPLATE = f"{DOMAIN}.pot"
SOURCE_LOCALE = "en"
#: Comments starting with this, just above a string (or inside the call, above the string),
#: go to translators as extracted comments (``#.`` lines).
WIDTH = 76
_UNSTABLE_HEADERS = (b'"POT-Creation-Date:', b'"Generated-By:')


class TranslationsError(Exception):
    """A catalog cannot be made or read; the message says which and why."""


@dataclass(frozen=True, order=True)
class Problem:
    """Something wrong in a catalog or a source file, at a line."""

    path: Path
    line: int
    message: str

    def __str__(self) -> str:
        return f"{shown(self.path)}:{self.line}: {self.message}"


def shown(path: Path) -> str:
    """A path as people type it: relative to the working directory when it is inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


# --- where things are -------------------------------------------------------------------------


def template_path(locales: Path) -> Path:
    return locales / TEMPLATE


def po_path(locales: Path, locale: str) -> Path:
    return locales / locale / "LC_MESSAGES" / f"{DOMAIN}.po"


def po_files(locales: Path) -> dict[str, Path]:
    """Each locale with a catalog in ``locales``, and its ``.po`` file."""
    if not locales.is_dir():
        return {}
    found = {p.name: po_path(locales, p.name) for p in sorted(locales.iterdir()) if p.is_dir()}
    return {locale: po for locale, po in found.items() if po.is_file()}


def parse_locale(tag: str) -> Locale:
    """A locale for a tag such as ``de``, ``pt-BR`` or ``pt_BR``."""
    try:
        return Locale.parse(tag.strip().replace("-", "_"))
    except (UnknownLocaleError, ValueError) as exc:
        raise TranslationsError(
            f"{tag!r} is not a language Babel knows (e.g. de, fr, pt_BR)"
        ) from exc


def read(path: Path, locale: str | None = None) -> Catalog:
    """A ``.po`` or ``.pot`` file; TranslationsError names the line when it cannot be read."""
    try:
        with path.open("rb") as f:
            return read_po(f, locale=locale, abort_invalid=True)
    except PoFileError as exc:
        said = re.sub(r" on \d+$", "", str(exc))  # Babel appends a line counted from 0
        raise TranslationsError(f"{shown(path)}:{exc.lineno + 1}: {said}") from exc
    except (ValueError, UnicodeError, UnknownLocaleError) as exc:
        raise TranslationsError(f"{shown(path)}:1: cannot be read: {exc}") from exc


def read_template(locales: Path) -> Catalog:
    path = template_path(locales)
    if not path.is_file():
        raise TranslationsError(f"{shown(path)} is missing: run `portal i18n extract` first")
    return read(path)


def render(catalog: Catalog) -> bytes:
    """A catalog as written to disk: sorted, no locations, no dates that change on their own."""
    buffer = io.BytesIO()
    write_po(buffer, catalog, width=WIDTH, no_location=True, sort_output=True)
    lines = buffer.getvalue().splitlines(keepends=True)
    return b"".join(line for line in lines if not line.startswith(_UNSTABLE_HEADERS))


def write_atomically(path: Path, data: bytes) -> None:
    """Write beside the file, then rename: readers see the old file or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def texts(value: str | tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    """A message's id or string as a tuple: one item, or one per plural form."""
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)
