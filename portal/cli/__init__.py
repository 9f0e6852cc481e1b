"""The ``portal`` command: serve, migrate, manage partners, keys and users, send mail, invite,
translate. Each group lives in a module of its own."""

from __future__ import annotations

import click

from portal.cli import (
    audit,
    customers,
    database,
    demo,
    invite,
    mail,
    partners,
    preview,
    relationships,
    serving,
    translations,
)


@click.group()
@click.version_option(package_name="portal")
def main() -> None:
    """Invitation and self-acceptance portal for the customer agreement."""


for command in (
    serving.serve,
    demo.demo,
    database.db_group,
    database.backup,
    database.restore,
    partners.partners_group,
    mail.mail_group,
    invite.invite,
    relationships.relationships_group,
    translations.i18n_group,
    audit.audit_group,
    customers.customers_group,
):
    main.add_command(command)
translations.i18n_group.add_command(preview.i18n_preview)
