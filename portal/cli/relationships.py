"""``portal relationships``: which partners serve which customers."""

from __future__ import annotations

import click

from portal.cli.base import emit, in_app
from portal.core import db
from portal.core.models import iso
from portal.domain import relationships


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
