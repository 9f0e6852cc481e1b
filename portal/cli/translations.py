"""``portal i18n``: the translations, for translators and developers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from portal import LOCALES, ROOT
from portal.i18n import catalogs, checks, extraction, files, tooling

# --- translations -----------------------------------------------------------------------------
# Babel's catalogs in locales/ (see locales/README.md); portal/i18n/ does the work.


@click.group("i18n")
@click.option(
    "--locales",
    "locales_dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="PORTAL_LOCALES_DIR",
    default=LOCALES,
    show_default="the project's locales/",
    help="The translations folder (also PORTAL_LOCALES_DIR).",
)
@click.pass_context
def i18n_group(ctx: click.Context, locales_dir: Path) -> None:
    """Translations: extract the strings, update, compile, check, count, add a language."""
    ctx.obj = locales_dir


@contextmanager
def _reported() -> Iterator[None]:
    """A catalog that cannot be made or read ends the command with its message."""
    try:
        yield
    except files.TranslationsError as exc:
        raise click.ClickException(str(exc)) from exc


@i18n_group.command("extract")
@click.pass_obj
def i18n_extract(locales_dir: Path) -> None:
    """Write messages.pot from the strings in portal/ and templates/ (run it after changing any)."""
    with _reported():
        path, changed, count = extraction.write_template(ROOT, locales_dir)
    state = "written" if changed else "already up to date"
    click.echo(f"{files.shown(path)}: {count} strings, {state}")


@i18n_group.command("update")
@click.pass_obj
def i18n_update(locales_dir: Path) -> None:
    """Bring every language's .po in step with messages.pot (new strings arrive empty)."""
    with _reported():
        written = tooling.update(locales_dir)
    for path in written:
        click.echo(f"updated {files.shown(path)}")
    if not written:
        click.echo("every catalog is already in step with messages.pot")


@i18n_group.command("compile")
@click.pass_obj
def i18n_compile(locales_dir: Path) -> None:
    """Compile every .po to .mo (the portal also does it at start when a .po is newer)."""
    results = catalogs.compile_all(locales_dir)
    for result in results:
        for problem in result.problems:
            click.echo(f"{problem} (left out)")
        if result.mo is None:
            click.echo(f"{result.locale}: not compiled (any previous .mo stays)")
        else:
            click.echo(f"{result.locale}: {result.translated} translations compiled")
    if any(result.problems for result in results):
        raise click.ClickException("some translations were left out: see `portal i18n check`")


@i18n_group.command("check")
@click.pass_obj
def i18n_check(locales_dir: Path) -> None:
    """Fail on a stale messages.pot and on translations that would break a page or an email."""
    with _reported():
        problems = checks.check(ROOT, locales_dir)
    for problem in problems:
        click.echo(str(problem))
    if problems:
        count = len(problems)
        raise click.ClickException(
            f"{count} problem{'' if count == 1 else 's'}: see locales/README.md for what they mean"
        )
    count = len(files.po_files(locales_dir))
    click.echo(f"messages.pot is up to date; {count} catalogs checked, no problems")


@i18n_group.command("stats")
@click.pass_obj
def i18n_stats(locales_dir: Path) -> None:
    """How much of each language is translated (fuzzy strings count as not translated)."""
    with _reported():
        found = tooling.stats(locales_dir)
    for item in found:
        if item.error:
            click.echo(f"{item.locale:<8} cannot be read: {item.error}")
            continue
        fuzzy = f"  ({item.fuzzy} fuzzy)" if item.fuzzy else ""
        click.echo(
            f"{item.locale:<8} {item.translated:>4}/{item.total:<4} {item.percent:5.1f}%{fuzzy}"
        )
    if not found:
        click.echo("no languages yet: add one with `portal i18n init LOCALE`")


@i18n_group.command("init")
@click.argument("locale")
@click.pass_obj
def i18n_init(locales_dir: Path, locale: str) -> None:
    """Add a language: LOCALE/LC_MESSAGES/messages.po, from messages.pot."""
    with _reported():
        path = tooling.init_locale(locales_dir, locale)
    click.echo(
        f"created {files.shown(path)}: translate it, then `portal i18n check`; the "
        "language appears in the language switcher when the portal next starts"
    )
