"""Partners' relationships with customers: who serves a customer, since when, how.

A customer exists once; each partner that serves it holds a ``CustomerRelationship``. Creating a
customer begins the creating partner's (``customers.create_customer``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, aliased, joinedload

from portal.core.models import CustomerRelationship, Partner, RelationshipKind, RelationshipState


@dataclass(frozen=True)
class CustomersPartner:
    """One of a customer's partners, as the customer's own pages show it."""

    name: str
    kind: RelationshipKind
    #: The provider an indirect reseller buys through; None for a reseller.
    provider_name: str | None
    since: datetime


def partners_of(session: Session, customer_id: str) -> list[CustomersPartner]:
    """The customer's active relationships, oldest first."""
    provider = aliased(Partner)
    rows = session.execute(
        select(
            Partner.name,
            CustomerRelationship.kind,
            provider.name,
            CustomerRelationship.began_at,
        )
        .join(Partner, Partner.id == CustomerRelationship.partner_id)
        .outerjoin(provider, provider.id == CustomerRelationship.provider_id)
        .where(
            CustomerRelationship.customer_id == customer_id,
            CustomerRelationship.state == RelationshipState.ACTIVE,
        )
        .order_by(CustomerRelationship.began_at, Partner.name)
    )
    return [
        CustomersPartner(name, kind, provider_name, since)
        for name, kind, provider_name, since in rows
    ]


def listed(
    session: Session, *, customer_id: str | None = None, partner_id: str | None = None
) -> list[CustomerRelationship]:
    """Relationships of a customer, or of a partner (its own, and as the provider of indirect
    resellers), in any state, oldest first; each with its partner loaded."""
    query = select(CustomerRelationship).options(joinedload(CustomerRelationship.partner))
    if customer_id is not None:
        query = query.where(CustomerRelationship.customer_id == customer_id)
    if partner_id is not None:
        query = query.where(
            or_(
                CustomerRelationship.partner_id == partner_id,
                CustomerRelationship.provider_id == partner_id,
            )
        )
    order = (CustomerRelationship.began_at, CustomerRelationship.customer_id)
    return list(session.scalars(query.order_by(*order)))
