"""Partners' relationships with customers: who serves a customer, since when, how.

A customer exists once; each partner that serves it holds a ``CustomerRelationship``. Creating a
customer begins the creating partner's (``customers.create_customer``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask_babel import gettext
from sqlalchemy import ColumnElement, and_, exists, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased, joinedload

from portal.core import fastsql
from portal.core.errors import NotFound
from portal.core.models import (
    Customer,
    CustomerRelationship,
    EventKind,
    Partner,
    PartnerKind,
    PartnerUser,
    Progress,
    RelationshipKind,
    RelationshipOrigin,
    RelationshipState,
    UserRole,
    utcnow,
)
from portal.domain import events
from portal.i18n import languages
from portal.mail import emails, outbox

#: Outbox kind of the email telling a partner that a customer removed it.
REMOVAL_NOTICE = "relationship-removal-notice"


class RelationshipNotFound(NotFound):
    error_name = "RelationshipNotFound"
    description = "This customer has no active relationship with this partner."


def visible_to(partner_id: Any) -> ColumnElement[bool]:
    """Customers a partner may see: those it has an active relationship with, and for a
    provider, those its resellers have. ``partner_id`` is a value or a bound parameter."""
    return exists().where(
        CustomerRelationship.customer_id == Customer.id,
        CustomerRelationship.state == RelationshipState.ACTIVE,
        or_(
            CustomerRelationship.partner_id == partner_id,
            CustomerRelationship.provider_id == partner_id,
        ),
    )


def partner_ids(session: Session, partner_id: str) -> list[str]:
    """The partner itself and, for an indirect provider, its resellers: the partners whose
    relationships it sees."""
    resellers = session.scalars(select(Partner.id).where(Partner.provider_id == partner_id))
    return [partner_id, *resellers]


def shown_to(partner_id: str, ids: Sequence[str]) -> ColumnElement[bool]:
    """The active relationships a partner's lists show, one per customer: its own, and for a
    provider (``ids``: see ``partner_ids``), its resellers' with customers it does not serve
    itself (and when two of its resellers serve one customer, both)."""
    r = CustomerRelationship
    if len(ids) == 1:
        return and_(r.partner_id == ids[0], r.state == RelationshipState.ACTIVE)
    own = aliased(CustomerRelationship)
    serves_itself = exists().where(
        own.customer_id == r.customer_id,
        own.partner_id == partner_id,
        own.state == RelationshipState.ACTIVE,
    )
    return and_(
        r.partner_id.in_(ids),
        r.state == RelationshipState.ACTIVE,
        or_(r.partner_id == partner_id, ~serves_itself),
    )


def new(
    customer: Customer,
    partner: Partner,
    origin: RelationshipOrigin,
    *,
    began_at: datetime | None = None,
    accepted_by: str = "",
    progress: Progress = Progress.NOT_INVITED,
) -> CustomerRelationship:
    """A partner's relationship with a customer, not yet stored: reseller, or for an indirect
    reseller, indirect reseller with its provider."""
    indirect = partner.kind is PartnerKind.INDIRECT_RESELLER
    began_at = began_at or utcnow()
    return CustomerRelationship(
        customer=customer,
        partner=partner,
        kind=RelationshipKind.INDIRECT_RESELLER if indirect else RelationshipKind.RESELLER,
        provider_id=partner.provider_id if indirect else None,
        state=RelationshipState.ACTIVE,
        origin=origin,
        began_at=began_at,
        accepted_by=accepted_by,
        removed_by="",
        progress=progress,
        progress_at=began_at,
    )


def seen(session: Session, partner_id: str, customer_id: str) -> CustomerRelationship | None:
    """The active relationship through which the partner sees the customer: its own, else (for
    a provider) its reseller's; None when it sees the customer no more."""
    found = session.scalars(
        select(CustomerRelationship).where(
            CustomerRelationship.customer_id == customer_id,
            CustomerRelationship.state == RelationshipState.ACTIVE,
            or_(
                CustomerRelationship.partner_id == partner_id,
                CustomerRelationship.provider_id == partner_id,
            ),
        )
    )
    return min(found, key=lambda r: (r.partner_id != partner_id, r.began_at), default=None)


def active(session: Session, customer_id: str, partner_id: str) -> CustomerRelationship | None:
    """The partner's own active relationship with the customer (not its resellers')."""
    found = session.get(CustomerRelationship, (customer_id, partner_id))
    return found if found is not None and found.state is RelationshipState.ACTIVE else None


def begin(
    session: Session, customer: Customer, partner: Partner, *, accepted_by: str, accepted: bool
) -> tuple[CustomerRelationship, bool]:
    """The relationship a customer begins by accepting a partner's request (written at once);
    one that was removed begins again. ``accepted``: the customer has accepted the agreement.
    Returns it and whether this call began it: of two answers at once, the relationship's key
    lets one begin it, and the other finds it active."""
    progress = Progress.ACCEPTED if accepted else Progress.NOT_INVITED
    key = (customer.id, partner.id)
    former = session.get(CustomerRelationship, key)
    if former is not None and former.state is RelationshipState.ACTIVE:
        return former, False
    relationship = new(
        customer, partner, RelationshipOrigin.REQUEST, accepted_by=accepted_by, progress=progress
    )
    if former is None:
        try:
            with session.begin_nested():
                fastsql.insert_now(session, relationship)
        except IntegrityError:  # the other answer's, committed meanwhile
            if relationship in session:
                session.expunge(relationship)
            return session.get_one(CustomerRelationship, key, populate_existing=True), False
        return relationship, True
    # Removed before: the same row begins again.
    for name in (
        "kind",
        "provider_id",
        "state",
        "origin",
        "began_at",
        "accepted_by",
        "removed_by",
        "progress",
        "progress_at",
    ):
        setattr(former, name, getattr(relationship, name))
    former.removed_at = None
    former.invitation_expires_at = None
    return former, True


def remove(
    session: Session, customer: Customer, partner_id: str, *, by: str, base_url: str
) -> CustomerRelationship:
    """End the partner's relationship with the customer: it loses access at once (every partner
    question asks for an active relationship), an event records it, and the partner's admin
    agents (and for an indirect reseller, its provider's) are told by email after commit.
    ``by``: who ended it, ``customer:<user>`` or ``cli``."""
    relationship = active(session, customer.id, partner_id)
    if relationship is None:
        raise RelationshipNotFound(customerId=customer.id, partnerId=partner_id)
    relationship.state = RelationshipState.REMOVED
    relationship.removed_at = utcnow()
    relationship.removed_by = by
    events.record(
        session,
        EventKind.RELATIONSHIP_REMOVED,
        actor=by,
        partner_id=partner_id,
        customer_id=customer.id,
        data={"kind": relationship.kind.value, "provider_id": relationship.provider_id},
    )
    _notify_removal(session, relationship, customer, base_url=base_url)
    return relationship


def _notify_removal(
    session: Session, relationship: CustomerRelationship, customer: Customer, *, base_url: str
) -> None:
    """One email per admin agent of the removed partner and of its provider. Partners' users
    have no language of their own yet: the notice is in the language of the partner's country
    (English where the portal does not speak it)."""
    partner_ids = [relationship.partner_id, relationship.provider_id]
    admins = session.scalars(
        select(PartnerUser)
        .where(
            PartnerUser.partner_id.in_([p for p in partner_ids if p]),
            PartnerUser.role == UserRole.ADMIN_AGENT,
            PartnerUser.disabled_at.is_(None),
        )
        .order_by(PartnerUser.email)
    )
    locale = languages.country_locale(relationship.partner.country, languages.available_locales())
    for admin in admins:
        email = removal_notice(relationship, customer, locale)
        outbox.queue(
            session,
            REMOVAL_NOTICE,
            admin.email,
            email,
            base_url=base_url,
            customer_id=customer.id,
            partner_id=admin.partner_id,
        )


def removal_notice(
    relationship: CustomerRelationship, customer: Customer, locale: str
) -> emails.Email:
    """The email telling a partner that the customer removed it, in ``locale``."""
    partner_name = relationship.partner.name
    return emails.render(
        "relationship_removed",
        locale,
        subject=lambda: gettext(
            # Translators: subject of the email telling a partner that a customer ended the
            # partner's relationship with it.
            "%(company)s removed %(partner)s as its partner",
            company=customer.company_name,
            partner=partner_name,
        ),
        partner_name=partner_name,
        company_name=customer.company_name,
        domain=customer.domain,
        customer_id=customer.id,
        removed_at=emails.day(relationship.removed_at or utcnow(), locale),
    )


@dataclass(frozen=True)
class CustomersPartner:
    """One of a customer's partners, as the customer's own pages show it."""

    partner_id: str
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
            Partner.id,
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
    return [CustomersPartner(*row) for row in rows]


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
