"""What every ``portal`` command shares: the app, inside its context, and how it reports."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from flask import Flask

from portal import create_app
from portal.core import db
from portal.core.catalog import CatalogError
from portal.core.config import ConfigError
from portal.core.errors import PortalError
from portal.core.models import Customer, PartnerKind
from portal.domain import invitations
from portal.i18n import languages

KINDS = [k.value for k in PartnerKind]


def load_app(overrides: dict[str, Any] | None = None) -> Flask:
    try:
        return create_app(overrides)
    except (ConfigError, CatalogError) as exc:
        raise click.ClickException(str(exc)) from exc


@contextmanager
def in_app(overrides: dict[str, Any] | None = None) -> Iterator[Flask]:
    """The app, inside its app context; its database connections are closed afterwards."""
    app = load_app(overrides)
    try:
        with app.app_context():
            yield app
    finally:
        app.extensions["portal.engine"].dispose()


def fail(error: PortalError) -> click.ClickException:
    return click.ClickException(error.message)


def emit(as_json: bool, data: dict[str, Any], text: str) -> None:
    click.echo(json.dumps(data) if as_json else text)


def invite_one(app: Flask, customer: Customer, options: invitations.Options) -> Any:
    """A new invitation for ``customer``, made by the command line."""
    return invitations.create(
        db.session(),
        customer,
        options,
        links=invitations.LinkSettings.from_config(app.config),
        pepper=app.extensions["portal.peppers"][0],
        locales=languages.available_locales(),
        actor="cli",
        partner_id=None,
    )
