"""``portal relationships``: which partners serve which customers."""

from __future__ import annotations

import click

from portal.cli.base import emit, fail, in_app
from portal.core import db
from portal.core.errors import PortalError
from portal.core.models import Customer, Partner, iso
from portal.domain import relationship_requests, relationships
from portal.domain.invitations import LinkSettings


@click.group("relationships")
def relationships_group() -> None:
    """Partners' relationships with customers."""


@relationships_group.command("list")
@click.option("--customer", "customer_id", help="Only this customer's partners.")
@click.option("--partner", "partner_id", help="Only this partner's customers (a provider's too).")
@click.option("--json", "as_json", is_flag=True)
def relationships_list(customer_id: str | None, partner_id: str | None, as_json: bool) -> None:
    """List relationships, oldest first, removed ones included (see their state)."""
    with in_app():
        found = relationships.listed(db.session(), customer_id=customer_id, partner_id=partner_id)
        rows = [
            {
                "customerId": r.customer_id,
                "partnerId": r.partner_id,
                "partnerName": r.partner.name,
                "kind": r.kind.value,
                "providerId": r.provider_id,
                "state": r.state.value,
                "origin": r.origin.value,
                "beganAt": iso(r.began_at),
                "acceptedBy": r.accepted_by or None,
                "removedAt": iso(r.removed_at),
            }
            for r in found
        ]
        text = "\n".join(
            f"{r.customer_id}  {r.partner_id}  {r.state.value:<7} {r.kind.value:<17} "
            f"{iso(r.began_at)}  {r.partner.name}"
            for r in found
        )
        emit(as_json, {"items": rows}, text or "no relationships")


@relationships_group.command("request")
@click.argument("partner_id")
def relationships_request(partner_id: str) -> None:
    """Print a partner's reseller relationship request link (a reseller's names its provider)."""
    with in_app() as app:
        session = db.session()
        partner = session.get(Partner, partner_id)
        if partner is None:
            raise click.ClickException(f"no partner {partner_id}")
        try:
            url = relationship_requests.url(LinkSettings.from_config(app.config), partner)
        except PortalError as exc:
            raise fail(exc) from exc
        click.echo(url)


@relationships_group.command("remove")
@click.argument("customer_id")
@click.argument("partner_id")
def relationships_remove(customer_id: str, partner_id: str) -> None:
    """End a partner's relationship with a customer, as the customer can on its account page:
    the partner loses access at once and its admin agents are told by email."""
    with in_app() as app:
        session = db.session()
        customer = session.get(Customer, customer_id)
        if customer is None:
            raise click.ClickException(f"no customer {customer_id}")
        try:
            relationships.remove(
                session, customer, partner_id, by="cli", base_url=app.config["BASE_URL"]
            )
        except PortalError as exc:
            raise fail(exc) from exc
        session.commit()
        click.echo(f"removed: {partner_id} no longer serves {customer.company_name}")
