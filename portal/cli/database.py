"""``portal db``: the schema."""

from __future__ import annotations

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
