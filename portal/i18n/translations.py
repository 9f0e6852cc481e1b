"""Gettext catalogs: extract the strings, keep the ``.po`` files in step, compile, check, count.

Plain functions on paths, called by ``portal i18n`` and, for compiling, by the app at start.
Babel's Python API does the work. The template (``locales/messages.pot``) is written the same way
every time: sorted, without locations, creation date or Babel version, so it changes only when
the strings change and "is it stale?" is a comparison of bytes.

A translation that could break a page (placeholders or HTML tags other than its source's, a
script, a bad format string) is reported by ``check`` and left out when compiling: the page shows
the English text for it instead.
"""

from __future__ import annotations

import contextlib
import gettext
import io
import locale as system_locale
import os
import re
import tempfile
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

from babel import Locale, UnknownLocaleError
from babel.messages.catalog import Catalog, Message
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.extract import extract_python as babel_extract_python
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import write_mo
from babel.messages.plurals import get_plural
from babel.messages.pofile import PoFileError, read_po, unescape, write_po
from flask import Flask
from jinja2 import TemplateSyntaxError

DOMAIN = "messages"
TEMPLATE = f"{DOMAIN}.pot"
SOURCE_LOCALE = "en"
#: Comments starting with this, just above a string (or inside the call, above the string),
#: go to translators as extracted comments (``#.`` lines).
COMMENT_TAGS = ("Translators:",)
#: Babel's keywords and Flask-Babel's lazy ones.
KEYWORDS: dict[str, Any] = {
    **DEFAULT_KEYWORDS,
    "lazy_gettext": None,
    "lazy_ngettext": (1, 2),
    "lazy_pgettext": ((1, "c"), 2),
    "lazy_npgettext": ((1, "c"), 2, 3),
}
WIDTH = 76
_TEMPLATE_HEADER = """\
# Translations template for the portal.
# Written by `portal i18n extract` from the code: do not edit.
# Translators edit <locale>/LC_MESSAGES/messages.po: see locales/README.md."""
_PO_HEADER = """\
# {language} translations for the portal.
# Edit the msgstr lines (see locales/README.md); `portal i18n check` checks them."""
#: Header lines left out of written catalogs: they change without the strings changing.
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


# --- extracting -------------------------------------------------------------------------------


def extract(root: Path) -> Catalog:
    """The strings of the code and templates under ``root``, as ``babel.cfg`` there maps them.

    The catalog keeps each string's locations (for naming them in problems); ``render`` leaves
    them out of the written template.
    """
    root = root.resolve()
    mapping = root / "babel.cfg"
    with mapping.open(encoding="utf-8") as f:
        method_map, options_map = parse_mapping_cfg(f, str(mapping))  # type: ignore[no-untyped-call]
    tops = {pattern.split("/", 1)[0] for pattern, _method in method_map}

    def wanted(directory: str) -> bool:
        parts = Path(directory).relative_to(root).parts
        return bool(parts) and parts[0] in tops and not any(p[:1] in "._" for p in parts)

    catalog = Catalog(project="portal", header_comment=_TEMPLATE_HEADER, charset="utf-8")
    current: list[str] = []
    found = extract_from_dir(
        root,
        method_map,
        options_map,
        keywords=KEYWORDS,
        comment_tags=COMMENT_TAGS,
        callback=lambda filename, _method, _options: current.append(filename),
        directory_filter=wanted,
    )
    try:
        for filename, lineno, message, comments, context in found:
            catalog.add(
                message,
                None,
                [(filename, lineno)],
                auto_comments=_tagged(comments),
                context=context,
            )
    except (TemplateSyntaxError, SyntaxError) as exc:
        where = f"{current[-1]}:{exc.lineno}" if current else str(root)
        raise TranslationsError(f"{where}: cannot extract the strings: {exc}") from exc
    return catalog


def _tagged(comments: list[str]) -> list[str]:
    """Comments as translators see them, all starting ``Translators:`` (Jinja strips the tag)."""
    if comments and not comments[0].startswith(COMMENT_TAGS):
        return [f"{COMMENT_TAGS[0]} {comments[0]}", *comments[1:]]
    return comments


def extract_python(
    fileobj: IO[bytes],
    keywords: Mapping[str, Any],
    comment_tags: Collection[str],
    options: dict[str, Any],
) -> Iterator[tuple[int, str, Any, list[str]]]:
    """Babel's Python extractor, which also takes a translator comment put inside the call.

    Babel only sees comments above the call; ours are often just above the string instead::

        subject=lambda: gettext(
            # Translators: the subject of the invitation email.
            "%(partner)s asks %(company)s to accept ...",
    """
    source = fileobj.read()
    lines = source.decode(options.get("encoding", "utf-8")).splitlines()
    # Babel annotates the result as its own post-processed tuple; it yields the extractor's.
    found: Iterable[Any] = babel_extract_python(
        io.BytesIO(source), keywords, comment_tags, cast(Any, options)
    )
    for lineno, funcname, messages, comments in found:
        yield lineno, funcname, messages, comments or _comments_in_call(lines, lineno, comment_tags)


def _comments_in_call(lines: list[str], lineno: int, tags: Collection[str]) -> list[str]:
    def is_comment(index: int) -> bool:
        return lines[index].lstrip().startswith("#")

    # Babel reports the string's line, or the comment's when a comment opens the call.
    index = lineno - 1 if is_comment(lineno - 1) else lineno - 2
    while index >= 0 and is_comment(index):
        index -= 1
    if index < 0 or not lines[index].rstrip().endswith("("):
        return []
    block: list[str] = []
    for line in lines[index + 1 :]:
        if not line.lstrip().startswith("#"):
            break
        block.append(line.strip()[1:].strip())
    for start, text in enumerate(block):
        if text.startswith(tuple(tags)):
            return block[start:]
    return []


def render(catalog: Catalog) -> bytes:
    """A catalog as written to disk: sorted, no locations, no dates that change on their own."""
    buffer = io.BytesIO()
    write_po(buffer, catalog, width=WIDTH, no_location=True, sort_output=True)
    lines = buffer.getvalue().splitlines(keepends=True)
    return b"".join(line for line in lines if not line.startswith(_UNSTABLE_HEADERS))


def write_template(root: Path, locales: Path) -> tuple[Path, bool, int]:
    """Extract and write ``messages.pot``: its path, whether it changed, how many messages."""
    catalog = extract(root)
    path = template_path(locales)
    data = render(catalog)
    changed = not path.is_file() or path.read_bytes() != data
    if changed:
        write_atomically(path, data)
    return path, changed, len(catalog)


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


# --- reading, updating, adding a language -----------------------------------------------------


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


def _template(locales: Path) -> Catalog:
    path = template_path(locales)
    if not path.is_file():
        raise TranslationsError(f"{shown(path)} is missing: run `portal i18n extract` first")
    return read(path)


def update(locales: Path) -> list[Path]:
    """Bring every ``.po`` in step with ``messages.pot``: new strings empty, changed ones fuzzy,
    removed ones kept as obsolete (``#~``) so no translator's work is lost."""
    template = _template(locales)
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
    template = _template(locales)
    buffer = io.BytesIO(render(template))
    catalog = read_po(buffer, locale=name)
    catalog.fuzzy = False
    catalog.header_comment = _PO_HEADER.format(language=locale.english_name)
    write_atomically(po, render(catalog))
    compile_catalog(po, po.with_suffix(".mo"), name)
    return po


# --- checking ---------------------------------------------------------------------------------


_PLACEHOLDER = re.compile(
    r"%(?:\((?P<name>[^)]*)\))?[#0 +-]*(?:\*|\d+)?(?:\.(?:\*|\d+))?(?P<type>[diouxXeEfFgGcrsa%])"
)
_TAG = re.compile(r"<\s*(/?)\s*([A-Za-z][A-Za-z0-9-]*)[^>]*>")
_EVENT_ATTRIBUTE = re.compile(r"\son[a-z]+\s*=", re.IGNORECASE)
_SCRIPT = re.compile(r"<\s*script", re.IGNORECASE)
_JAVASCRIPT_URL = re.compile(r"javascript\s*:", re.IGNORECASE)


def placeholders(text: str) -> tuple[set[str], list[str]]:
    """The named placeholders of a string (``%(name)s``) and any unnamed ones (``%s``)."""
    named: set[str] = set()
    unnamed: list[str] = []
    for match in _PLACEHOLDER.finditer(text):
        if match["type"] == "%":
            continue
        if match["name"] is None:
            unnamed.append(match[0])
        else:
            named.add(f"%({match['name']}){match['type']}")
    return named, unnamed


def tags(text: str) -> Counter[str]:
    """HTML tags by name: ``<a href="...">`` counts as ``<a>``, ``<br/>`` as ``<br>``."""
    return Counter(f"<{slash}{name.lower()}>" for slash, name in _TAG.findall(text))


class _AnyValue(dict[str, Any]):
    def __missing__(self, key: str) -> int:
        return 0


def _formats(text: str) -> bool:
    """Whether ``text % values`` works, as templates and gettext apply it."""
    try:
        text % _AnyValue()  # noqa: B018 - only whether it raises
    except (ValueError, TypeError, KeyError):
        return False
    return True


def texts(value: str | tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    """A message's id or string as a tuple: one item, or one per plural form."""
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def _short(text: str) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= 60 else text[:59] + "…")


def message_problems(message: Message, path: Path) -> list[Problem]:
    """What is wrong with one translation; nothing for untranslated or fuzzy ones."""
    sources = texts(message.id)
    strings = texts(message.string)
    if message.fuzzy or not any(strings):
        return []
    expected: set[str] = set()
    for source in sources:
        expected |= placeholders(source)[0]
    expected_tags = tags(sources[0])
    source_formats = all(_formats(s) for s in sources)
    line = message.lineno or 1
    what = _short(sources[0])
    problems = []
    for index, string in enumerate(strings):
        if not string:
            continue
        form = f"msgstr[{index}] of " if len(strings) > 1 else ""
        named, unnamed = placeholders(string)
        said = []
        if missing := sorted(expected - named):
            said.append("missing " + ", ".join(missing))
        if extra := sorted(named - expected):
            said.append("not in the source: " + ", ".join(extra))
        if unnamed:
            said.append("unnamed " + ", ".join(unnamed))
        if said:
            problems.append(
                Problem(path, line, f"placeholders differ in {form}{what}: " + "; ".join(said))
            )
        found_tags = tags(string)
        if found_tags != expected_tags:
            missing_tags = sorted((expected_tags - found_tags).elements())
            extra_tags = sorted((found_tags - expected_tags).elements())
            said = (["missing " + ", ".join(missing_tags)] if missing_tags else []) + (
                ["not in the source: " + ", ".join(extra_tags)] if extra_tags else []
            )
            problems.append(
                Problem(path, line, f"HTML tags differ in {form}{what}: " + "; ".join(said))
            )
        danger = [
            label
            for label, found in (
                ("<script", _SCRIPT.search(string)),
                (
                    "an on…= event attribute",
                    any(_EVENT_ATTRIBUTE.search(t) for t in _tag_texts(string)),
                ),
                ("javascript:", _JAVASCRIPT_URL.search(string)),
            )
            if found
        ]
        if danger:
            problems.append(Problem(path, line, f"{form}{what} contains {' and '.join(danger)}"))
        if source_formats and not _formats(string):
            problems.append(
                Problem(
                    path, line, f"{form}{what} is not a valid format string (write a lone % as %%)"
                )
            )
    return problems


def _tag_texts(text: str) -> list[str]:
    return [m[0] for m in _TAG.finditer(text)]


@dataclass
class _Entry:
    """One message as written in the file, before Babel reads it."""

    line: int
    context: str | None = None
    ids: list[str] = field(default_factory=list)
    forms: dict[int, str] = field(default_factory=dict)
    plain_string: bool = False


_KEYWORD = re.compile(r"^(msgctxt|msgid_plural|msgid|msgstr\[(\d+)\]|msgstr)\s*(.*)$")
_QUOTED = re.compile(r'^"(?:[^"\\]|\\.)*"$')


def _scan(path: Path, text: str) -> tuple[list[_Entry], list[Problem]]:
    """The entries of a ``.po`` file, and what in it a compiler would refuse.

    Babel reads some broken files quietly (an unclosed quote, a missing or extra plural form):
    this reads them as ``msgfmt`` does, to say where.
    """
    entries: list[_Entry] = []
    problems: list[Problem] = []
    entry: _Entry | None = None
    field_name = ""
    seen: dict[tuple[str | None, str], int] = {}

    def broken(line: int, why: str) -> None:
        problems.append(Problem(path, line, f"cannot be compiled: {why}"))

    def append(value: str) -> None:
        assert entry is not None  # noqa: S101 - set before any field
        if field_name == "msgctxt":
            entry.context = (entry.context or "") + value
        elif field_name in {"msgid", "msgid_plural"}:
            entry.ids[-1] += value
        else:
            index = int(field_name[7:-1]) if field_name.startswith("msgstr[") else 0
            entry.forms[index] = entry.forms.get(index, "") + value

    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):  # comments, and obsolete entries (#~)
            continue
        if line.startswith('"'):
            if entry is None or not field_name:
                broken(number, "a string outside any msgid or msgstr")
            elif not _QUOTED.match(line):
                broken(number, f"not a properly quoted string: {line[:60]}")
            else:
                append(unescape(line))
            continue
        match = _KEYWORD.match(line)
        if match is None or not _QUOTED.match(match[3]):
            broken(number, f"not a PO keyword followed by a quoted string: {line[:60]}")
            field_name = ""
            continue
        keyword, value = match[1], unescape(match[3])
        starts = keyword == "msgctxt" or (keyword == "msgid" and field_name != "msgctxt")
        if starts:
            if entry is not None and not entry.forms:
                broken(entry.line, "a msgid without msgstr")
            entry = _Entry(line=number)
            entries.append(entry)
        elif entry is None:
            broken(number, f"{keyword} before any msgid")
            field_name = ""
            continue
        if keyword == "msgid":
            entry.line = number
            entry.ids = [value]
        elif keyword == "msgid_plural":
            entry.ids.append("")
            if len(entry.ids) != 2:
                broken(number, "msgid_plural without a msgid before it")
        field_name = keyword
        if keyword == "msgctxt":
            entry.context = value
        elif keyword.startswith("msgstr"):
            index = int(match[2]) if match[2] is not None else 0
            entry.plain_string = entry.plain_string or match[2] is None
            if index in entry.forms:
                broken(number, f"{keyword} given twice")
            entry.forms[index] = ""
            append(value)
        elif keyword == "msgid_plural":
            append(value)
    if entry is not None and not entry.forms:
        broken(entry.line, "a msgid without msgstr")
    for item in entries:
        if not item.ids:
            broken(item.line, "a msgctxt without msgid")
            continue
        key = (item.context, item.ids[0])
        if key in seen and item.ids[0]:
            broken(item.line, f"the same msgid as line {seen[key]}: {_short(item.ids[0])}")
        seen.setdefault(key, item.line)
        if len(item.ids) > 1 and item.plain_string:
            broken(
                item.line, f"a plural message needs msgstr[0], msgstr[1]…: {_short(item.ids[0])}"
            )
        if len(item.ids) == 1 and not item.plain_string and item.forms:
            broken(item.line, f"msgstr[n] without msgid_plural: {_short(item.ids[0])}")
    return entries, problems


def _header(entries: list[_Entry]) -> dict[str, str]:
    for entry in entries:
        if entry.ids == [""] and entry.context is None:
            text = entry.forms.get(0, "")
            pairs = (line.partition(":") for line in text.splitlines())
            return {key.strip().lower(): value.strip() for key, _, value in pairs if key}
    return {}


_PLURAL_FORMS = re.compile(r"\s*nplurals\s*=\s*(\d+)\s*;\s*plural\s*=\s*(.+?)\s*;?\s*")


@dataclass(frozen=True)
class PluralForms:
    """What the Plural-Forms header says, and what is wrong with it."""

    count: int
    problems: list[Problem]
    #: gettext cannot load the catalog at all (it would fail every page in that language).
    fatal: bool = False


def plural_forms(path: Path, text: str, entries: list[_Entry], locale: str) -> PluralForms:
    """The Plural-Forms header checked: valid, giving forms in range, and the language's."""
    expected = get_plural(locale)
    value = _header(entries).get("plural-forms")
    if value is None:
        return PluralForms(expected.num_plurals, [])
    line = next(
        (n for n, each in enumerate(text.splitlines(), 1) if each.startswith('"Plural-Forms:')), 1
    )
    match = _PLURAL_FORMS.fullmatch(value)
    rule = None
    if match is not None and int(match[1]) >= 1:
        with contextlib.suppress(ValueError):
            rule = gettext.c2py(match[2])
    if match is None or rule is None:
        said = f"invalid Plural-Forms header {value!r}: {locale} uses {expected.plural_forms!r}"
        return PluralForms(expected.num_plurals, [Problem(path, line, said)], fatal=True)
    count = int(match[1])
    problems = []
    for n in range(1000):
        try:
            form = rule(n)
        except ArithmeticError:
            form = -1
        if not 0 <= form < count:
            said = f"Plural-Forms gives no valid form for n={n} with nplurals={count}"
            problems.append(Problem(path, line, said))
            break
    if count != expected.num_plurals:
        said = (
            f"Plural-Forms says nplurals={count}, but {locale} has {expected.num_plurals} "
            f"plural forms: {expected.plural_forms!r}"
        )
        problems.append(Problem(path, line, said))
    return PluralForms(count, problems)


def _plural_entry_problems(
    path: Path, entries: list[_Entry], count: int, locale: str
) -> dict[tuple[str | None, str], list[Problem]]:
    """Plural messages without exactly one msgstr[n] for each of the language's forms."""
    found = {}
    for entry in entries:
        if len(entry.ids) > 1 and sorted(entry.forms) != list(range(count)):
            have = ", ".join(f"msgstr[{i}]" for i in sorted(entry.forms)) or "none"
            said = (
                f"broken plural form in {_short(entry.ids[0])}: {locale} needs {count} forms, "
                f"msgstr[0] to msgstr[{count - 1}]; the file has {have}"
            )
            found[(entry.context, entry.ids[0])] = [Problem(path, entry.line, said)]
    return found


def _key(message: Message) -> tuple[str | None, str]:
    return message.context, texts(message.id)[0]


@dataclass
class Loaded:
    """A ``.po`` file read and checked: its catalog (None when it cannot be compiled at all), the
    problems of the whole file, and those of each message (left out when compiling)."""

    path: Path
    locale: str
    catalog: Catalog | None
    file_problems: list[Problem]
    message_problems: dict[tuple[str | None, str], list[Problem]] = field(default_factory=dict)

    @property
    def problems(self) -> list[Problem]:
        found = [*self.file_problems]
        for each in self.message_problems.values():
            found.extend(each)
        return sorted(found)


def load(path: Path, locale: str) -> Loaded:
    """Read a ``.po`` file and check it: what ``check`` reports and ``compile`` leaves out."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        problem = Problem(path, line, "cannot be compiled: not UTF-8; save the file as UTF-8")
        return Loaded(path, locale, None, [problem])
    entries, problems = _scan(path, text)
    if problems:
        return Loaded(path, locale, None, problems)
    plurals = plural_forms(path, text, entries, locale)
    if plurals.fatal:
        return Loaded(path, locale, None, plurals.problems)
    try:
        # The file's syntax is checked above; what Babel would still complain about (a plural
        # message with a form too many) is a message problem, so read it leniently and quietly.
        with contextlib.redirect_stdout(io.StringIO()):
            catalog = read_po(io.BytesIO(data), locale=locale)
    except (ValueError, UnicodeError, UnknownLocaleError) as exc:
        return Loaded(path, locale, None, [Problem(path, 1, f"cannot be compiled: {exc}")])
    by_message = _plural_entry_problems(path, entries, plurals.count, locale)
    for message in catalog:
        if message.id:
            found = message_problems(message, path)
            if found:
                by_message.setdefault(_key(message), []).extend(found)
    loaded = Loaded(path, locale, catalog, list(plurals.problems), by_message)
    try:
        gettext.GNUTranslations(io.BytesIO(_mo_bytes(loaded)))
    except (ValueError, TypeError, KeyError, UnicodeError, OSError) as exc:
        loaded.catalog = None
        loaded.file_problems.append(Problem(path, 1, f"cannot be compiled: {exc}"))
    return loaded


def _mo_bytes(loaded: Loaded) -> bytes:
    """The compiled catalog, without the translations that have problems (marked fuzzy, so
    gettext falls back to the source text for them)."""
    assert loaded.catalog is not None  # noqa: S101 - callers check
    for message in loaded.catalog:
        if message.id and _key(message) in loaded.message_problems:
            message.flags.add("fuzzy")
    buffer = io.BytesIO()
    write_mo(buffer, loaded.catalog)
    return buffer.getvalue()


def check_template(root: Path, locales: Path) -> tuple[Catalog, list[Problem]]:
    """Compare ``messages.pot`` with the strings in the code now, and look at those strings."""
    extracted = extract(root)
    problems = []
    for message in extracted:
        if not message.id:
            continue
        sources = texts(message.id)
        unnamed = [p for s in sources for p in placeholders(s)[1]]
        if unnamed:
            filename, lineno = message.locations[0]
            problems.append(
                Problem(
                    root / filename,
                    lineno or 1,
                    f"unnamed placeholder {', '.join(unnamed)} in {_short(sources[0])}: "
                    "use named ones, %(name)s, so translators can move them",
                )
            )
    path = template_path(locales)
    if not path.is_file():
        problems.append(Problem(path, 1, "missing: run `portal i18n extract`"))
        return extracted, problems
    if path.read_bytes() == render(extracted):
        return extracted, problems
    try:
        written = read(path)
    except TranslationsError as exc:
        problems.append(
            Problem(path, 1, f"stale and unreadable ({exc}): run `portal i18n extract`")
        )
        return extracted, problems
    added = [m for m in extracted if m.id and written.get(m.id, m.context) is None]
    removed = [m for m in written if m.id and extracted.get(m.id, m.context) is None]
    problems.append(
        Problem(
            path,
            1,
            f"stale: the strings in the code changed ({len(added)} new, {len(removed)} gone, "
            "or their comments): run `portal i18n extract`, then `portal i18n update`",
        )
    )
    for message in added:
        filename, lineno = message.locations[0]
        source = texts(message.id)[0]
        problems.append(
            Problem(
                root / filename, lineno or 1, f"new string, not in {TEMPLATE} yet: {_short(source)}"
            )
        )
    for message in removed:
        source = texts(message.id)[0]
        problems.append(
            Problem(path, message.lineno or 1, f"no longer in the code: {_short(source)}")
        )
    return extracted, problems


def check(root: Path, locales: Path) -> list[Problem]:
    """Everything that would break a page or leave translators behind, by file and line: a stale
    template, unnamed placeholders, and every catalog's placeholders, tags, plural forms and
    whether it compiles. Untranslated and fuzzy messages are not problems."""
    _extracted, problems = check_template(root, locales)
    catalogs = po_files(locales)
    for locale, po in catalogs.items():
        problems.extend(load(po, locale).problems)
    for locale, po in catalogs.items():
        shadowed = _shadowed_by(locale, catalogs)
        if shadowed:
            problems.append(
                Problem(
                    po,
                    1,
                    f"gettext reads {locale}/ for pages in {shadowed} too, before {shadowed}/: "
                    f"keep one of them (move its translations to {shadowed}/)",
                )
            )
    return problems


def _shadowed_by(locale: str, catalogs: Collection[str]) -> str | None:
    """The language whose pages would read ``locale``'s catalog first (gettext looks for de_DE
    before de, pt_PT before pt: the territory ``locale.normalize`` gives the language)."""
    for other in catalogs:
        if other != locale:
            normalized = system_locale.normalize(other).split(".")[0].split("@")[0]
            if normalized == locale:
                return other
    return None


# --- compiling --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Compiled:
    locale: str
    po: Path
    #: Where the compiled catalog went; None when the file cannot be compiled at all.
    mo: Path | None
    #: Translations written (untranslated, fuzzy and refused ones are not).
    translated: int
    problems: list[Problem]


def compile_catalog(po: Path, mo: Path, locale: str) -> Compiled:
    """Compile one ``.po`` (atomically), leaving out translations with problems. OSError when
    ``mo`` cannot be written."""
    loaded = load(po, locale)
    if loaded.catalog is None:
        return Compiled(locale, po, None, 0, loaded.problems)
    data = _mo_bytes(loaded)
    write_atomically(mo, data)
    translated = sum(1 for m in loaded.catalog if m.id and m.string and not m.fuzzy)
    return Compiled(locale, po, mo, translated, loaded.problems)


def compile_all(
    locales: Path, *, stale_only: bool = False, into: Path | None = None
) -> list[Compiled]:
    """Compile the catalogs in ``locales`` (those whose ``.mo`` is missing or older than the
    ``.po`` with ``stale_only``), next to their ``.po`` or into a copy of the tree at ``into``."""
    results = []
    for locale, po in po_files(locales).items():
        mo = po_path(into, locale).with_suffix(".mo") if into else po.with_suffix(".mo")
        if stale_only and not is_stale(po, mo):
            continue
        results.append(compile_catalog(po, mo, locale))
    return results


def is_stale(po: Path, mo: Path) -> bool:
    try:
        return mo.stat().st_mtime_ns < po.stat().st_mtime_ns
    except FileNotFoundError:
        return True


def prepare(app: Flask) -> None:
    """At start: warn when a translations folder Babel is given does not exist, and compile every
    catalog whose ``.mo`` is missing or older than its ``.po``.

    When the folder is read-only, all its catalogs are compiled into the instance folder instead
    (``instance/locales``), which is added after it to Babel's folders so its catalogs win.
    Translations with problems are logged and left out (the English text shows for them).
    """
    configured = str(app.config.get("BABEL_TRANSLATION_DIRECTORIES") or "")
    directories = [Path(d) for d in configured.split(";") if d]
    added: list[str] = []
    for index, directory in enumerate(directories):
        if not directory.is_absolute():
            directory = Path(app.root_path) / directory  # as Flask-Babel resolves it
        if not directory.is_dir():
            app.logger.warning(
                "Translations folder %s does not exist: pages and emails will be in English "
                "only. Set PORTAL_LOCALES_DIR to the project's locales/ folder.",
                directory,
            )
            continue
        try:
            results = compile_all(directory, stale_only=True)
        except OSError as exc:
            copy = Path(app.instance_path) / ("locales" if index == 0 else f"locales-{index}")
            app.logger.warning(
                "Cannot write compiled catalogs beside %s (%s): compiling them into %s",
                directory,
                exc,
                copy,
            )
            try:
                results = compile_all(directory, into=copy)
            except OSError as again:
                app.logger.error(
                    "Cannot compile the catalogs of %s into %s either (%s): translations may "
                    "be out of date; run `portal i18n compile` where it can write",
                    directory,
                    copy,
                    again,
                )
                continue
            added.append(str(copy))
        for result in results:
            outcome = (
                "left out: the English text shows instead"
                if result.mo is not None
                else "the catalog is not compiled: its previous .mo, if any, stays in use"
            )
            for problem in result.problems:
                app.logger.error("%s (%s)", problem, outcome)
    if added:
        app.config["BABEL_TRANSLATION_DIRECTORIES"] = ";".join([configured, *added])


def forget_loaded(babel: Any) -> None:
    """Drop the catalogs Flask-Babel has loaded: it keeps them per process, not per app, so a
    new app (a test's, or after compiling) would otherwise see the previous ones."""
    domain = vars(babel).get("domain_instance")
    if domain is not None:
        domain.cache.clear()


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
