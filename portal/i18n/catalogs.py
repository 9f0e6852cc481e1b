"""The catalogs at start-up: each ``.po`` whose ``.mo`` is missing or older is compiled (into the
instance folder when ``locales/`` is read-only), leaving out the translations that fail the
checks, and Flask-Babel is told to load them afresh."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask

from portal.i18n.checks import load, mo_bytes
from portal.i18n.files import Problem, po_files, po_path, write_atomically

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
    data = mo_bytes(loaded)
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
