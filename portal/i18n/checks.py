"""The checks translators cannot break a page through: every translation keeps the placeholders
and HTML tags of its source, holds no script and formats; the plural forms fit the language; the
template is current. ``portal i18n check`` reports them; compiling leaves such translations out.
"""

from __future__ import annotations

import contextlib
import gettext
import io
import locale as system_locale
import re
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from babel import UnknownLocaleError
from babel.messages.catalog import Catalog, Message
from babel.messages.mofile import write_mo
from babel.messages.plurals import get_plural
from babel.messages.pofile import read_po, unescape

from portal.i18n.extraction import extract
from portal.i18n.files import (
    TEMPLATE,
    Problem,
    TranslationsError,
    po_files,
    read,
    render,
    template_path,
    texts,
)

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
        gettext.GNUTranslations(io.BytesIO(mo_bytes(loaded)))
    except (ValueError, TypeError, KeyError, UnicodeError, OSError) as exc:
        loaded.catalog = None
        loaded.file_problems.append(Problem(path, 1, f"cannot be compiled: {exc}"))
    return loaded


def mo_bytes(loaded: Loaded) -> bytes:
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
