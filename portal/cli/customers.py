"""``portal customers``: data-protection requests about a customer."""

from __future__ import annotations

import click

from portal.cli.base import in_app
from portal.core import db
from portal.core.models import Customer
from portal.domain import audit


@click.group("customers")
def customers_group() -> None:
    """Customers: data-protection requests."""


@customers_group.command("erase")
@click.argument("customer_id")
@click.option("--yes", is_flag=True, help="Do not ask before erasing.")
def customers_erase(customer_id: str, yes: bool) -> None:
    """Erase a customer's personal data on a data-protection request: credentials, sessions,
    password-reset requests, contact data, and the recipients and bodies of its invitations,
    relationship requests and emails. Kept, as the evidence of its acceptance: the acceptances
    and attestations (with who accepted: name, email, phone, and for its own acceptance the IP
    address and browser) and the event log, so `portal audit verify` still passes."""
    with in_app() as app:
        with db.reading_session(app) as reading:  # no write lock while the question is asked
            found = reading.get(Customer, customer_id)
            name = found.company_name if found is not None else ""
        if found is None:
            raise click.ClickException(f"no customer {customer_id}")
        if not yes:
            click.confirm(
                f"Erase the contact data and credentials of {name} ({customer_id})? Its "
                "acceptances, attestations and events are kept.",
                abort=True,
            )
        session = db.session()
        customer = session.get_one(Customer, customer_id)
        erased = audit.erase(session, customer, actor="cli")
        session.commit()
    click.echo(
        f"erased: {name} ({customer_id}): contact data, {erased.credentials} credentials, "
        f"{erased.sessions} sessions, {erased.reset_requests} password-reset requests, "
        f"{erased.messages} emails, {erased.invitations} invitations, "
        f"{erased.relationship_requests} relationship requests, {erased.api_answers} stored API "
        "answers; the acceptances, attestations and events are kept"
    )
