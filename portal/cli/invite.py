"""``portal invite``: one invitation, or customers and invitations in bulk from CSV."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import click
from flask import Flask

from portal.cli.base import fail, in_app, invite_one
from portal.core import db
from portal.core.errors import PortalError
from portal.core.models import Customer, Partner
from portal.domain import bulk, invitations

# --- invitations ------------------------------------------------------------------------------


def _invite_csv(
    app: Flask, path: str, partner_id: str, options: invitations.Options, results_path: str | None
) -> None:
    """The command line's bulk import: a progress bar, then a per-row result file."""
    partner = db.session().get(Partner, partner_id)
    if partner is None:
        raise click.ClickException(f"No partner {partner_id}.")
    try:
        rows = bulk.read(path)
    except bulk.BadFile as exc:
        raise click.ClickException(str(exc)) from exc
    target = Path(results_path or f"{path}.results.csv")
    created = failed = 0
    with open(target, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=bulk.RESULT_COLUMNS)
        writer.writeheader()
        with click.progressbar(
            length=len(rows), label="Creating customers", show_pos=True, file=sys.stderr
        ) as bar:
            for result in bulk.import_rows(app, partner, rows, options, actor="cli"):
                writer.writerow(result.as_row())
                handle.flush()
                if result.ok:
                    created += 1
                else:
                    failed += 1
                    click.echo(f"line {result.line}: {result.error}", err=True)
                bar.update(1)
    click.echo(
        f"{created} created, {failed} with errors; results in {target} "
        "(it holds temporary passwords: hand them over, then delete it)"
    )


@click.command()
@click.argument("customer_id", required=False)
@click.option("--send", is_flag=True, help="Queue the email for delivery to the customer.")
@click.option("--to", help="Send to this address instead of the primary contact.")
@click.option("--language", help="Write the email in this language (default: the customer's).")
@click.option("--no-credentials", is_flag=True, help="Leave the password out of the email.")
@click.option(
    "--csv",
    "csv_file",
    type=click.Path(exists=True, dir_okay=False),
    help="Create customers and invitations in bulk from this CSV file.",
)
@click.option("--partner", "partner_id", help="With --csv: the partner the customers belong to.")
@click.option(
    "--results",
    type=click.Path(dir_okay=False),
    help="With --csv: where to write the per-row results (default: FILE.results.csv).",
)
def invite(
    customer_id: str | None,
    send: bool,
    to: str | None,
    language: str | None,
    no_credentials: bool,
    csv_file: str | None,
    partner_id: str | None,
    results: str | None,
) -> None:
    """Create an invitation for CUSTOMER_ID and print it, or many with --csv."""
    options = invitations.Options(
        send=send, to=to, language=language, include_credentials=not no_credentials
    )
    if csv_file:
        if customer_id or not partner_id:
            raise click.UsageError("--csv takes --partner PARTNER_ID and no CUSTOMER_ID.")
        with in_app() as app:
            _invite_csv(app, csv_file, partner_id, options, results)
        return
    if not customer_id:
        raise click.UsageError("Give a CUSTOMER_ID, or --csv FILE --partner PARTNER_ID.")
    with in_app() as app:
        session = db.session()
        customer = session.get(Customer, customer_id)
        if customer is None:
            raise click.ClickException(f"No customer {customer_id}.")
        try:
            issued = invite_one(app, customer, options)
        except PortalError as exc:
            raise fail(exc) from exc
        session.commit()
        invitation = issued.invitation
        click.echo(
            f"Invitation {invitation.id} ({invitations.status(invitation)}), "
            f"expires {invitation.expires_at:%Y-%m-%d %H:%M} UTC"
        )
        click.echo(f"Link:      {issued.url}")
        click.echo(f"User name: {issued.user_name}")
        click.echo(f"Password:  {issued.password}  (temporary; shown this once)")
        click.echo(f"\nTo: {invitation.recipient}\nSubject: {invitation.subject}\n")
        click.echo(invitation.text_body)
