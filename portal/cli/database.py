"""``portal db``: the schema."""

from __future__ import annotations

from pathlib import Path

import click

from portal.cli.base import in_app
from portal.core import db

# --- database ---------------------------------------------------------------------------------


@click.group("db")
def db_group() -> None:
    """Database migrations."""


@db_group.command()
def upgrade() -> None:
    """Apply pending migrations (the schema is made by migrations only)."""
    with in_app():
        db.upgrade(db.engine())
    click.echo("database is up to date")


@click.command()
@click.argument("target", type=click.Path(dir_okay=False, writable=True, path_type=Path))
def backup(target: Path) -> None:
    """Copy the embedded SQLite database to TARGET, consistently, while the portal runs."""
    with in_app():
        try:
            size = db.backup(db.engine(), target)
        except db.BackupError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(f"backed up to {target} ({size:,} bytes)")


@click.command()
@click.argument("source", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def restore(source: Path, yes: bool) -> None:
    """Replace the embedded SQLite database's contents with the backup SOURCE (checked first),
    then apply the migrations it lacks. What was written since the backup is lost."""
    if not yes:
        click.confirm(
            f"Replace everything in the portal's database with {source}? What was written since "
            "that backup is lost",
            abort=True,
        )
    with in_app():
        try:
            revision = db.restore(db.engine(), source)
        except db.BackupError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(f"restored {source} (schema {revision}), and migrated to the current schema")
