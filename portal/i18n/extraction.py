"""Extracting the strings to translate from ``portal/`` and ``templates/`` into the template
(``locales/messages.pot``), with the comments left for translators."""

from __future__ import annotations

import io
from collections.abc import Collection, Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, cast

from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.extract import extract_python as babel_extract_python
from babel.messages.frontend import parse_mapping_cfg
from jinja2 import TemplateSyntaxError

from portal.i18n.files import TranslationsError, render, template_path, write_atomically

COMMENT_TAGS = ("Translators:",)
#: Babel's keywords and Flask-Babel's lazy ones.
KEYWORDS: dict[str, Any] = {
    **DEFAULT_KEYWORDS,
    "lazy_gettext": None,
    "lazy_ngettext": (1, 2),
    "lazy_pgettext": ((1, "c"), 2),
    "lazy_npgettext": ((1, "c"), 2, 3),
}
_TEMPLATE_HEADER = """\
# Translations template for the portal.
# Written by `portal i18n extract` from the code: do not edit.
# Translators edit <locale>/LC_MESSAGES/messages.po: see locales/README.md."""


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


def write_template(root: Path, locales: Path) -> tuple[Path, bool, int]:
    """Extract and write ``messages.pot``: its path, whether it changed, how many messages."""
    catalog = extract(root)
    path = template_path(locales)
    data = render(catalog)
    changed = not path.is_file() or path.read_bytes() != data
    if changed:
        write_atomically(path, data)
    return path, changed, len(catalog)
