"""Reseller relationship requests: a partner's reusable link, and the customer's answer.

A partner hands out one link (``url``) that names only the partner; a provider asks for one on
behalf of its indirect reseller. The customer's admin opens it, signs in with the account they
already have, and accepts (with the customer agreement, if not accepted yet) or declines.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from portal.core import regions, tokens
from portal.core.errors import PortalError
from portal.core.models import (
    AgreementAcceptance,
    Customer,
    CustomerRelationship,
    EventKind,
    Partner,
    PartnerKind,
)
from portal.domain import acceptance, events, relationships
from portal.domain.acceptance import Contact, Shown
from portal.domain.invitations import LinkSettings


class PartnerCountryMissing(PortalError):
    status = 409
    code = 10412
    error_name = "PartnerCountryMissing"
    description = (
        "Relationships form only within the partner's country or region, and this partner has "
        "no country yet: the portal's operator sets it with `portal partners country`."
    )


class NotYourPartner(PortalError):
    status = 403
    code = 10403
    error_name = "NotYourPartner"
    description = (
        "indirectResellerId must name one of your indirect resellers, and "
        "indirectCloudSolutionProviderId your indirect provider."
    )


class OutsideRegion(PortalError):
    status = 409
    code = 10414
    error_name = "OutsideRegion"
    description = "The partner may serve customers in its own country or region only."


def requester(session: Session, partner: Partner, reseller_id: str | None) -> Partner:
    """Whose link a partner asks for: its own, or a provider's for one of its resellers."""
    if not reseller_id:
        return partner
    reseller = session.get(Partner, reseller_id.lower()[:64])
    if (
        partner.kind is not PartnerKind.INDIRECT_PROVIDER
        or reseller is None
        or reseller.provider_id != partner.id
    ):
        raise NotYourPartner(indirectResellerId=reseller_id[:64])
    return reseller


def url(links: LinkSettings, partner: Partner) -> str:
    """The partner's reusable request link: the same every time it is asked for."""
    if not partner.country:
        raise PartnerCountryMissing(partnerId=partner.id)
    token = tokens.relationship_request_token(
        links.secret_key, links.fallbacks, partner.id, int(partner.created_at.timestamp())
    )
    return f"{links.base_url}/relationship/{token}"


@dataclass(frozen=True)
class Request:
    """A request link as its page shows it."""

    partner: Partner
    #: An indirect reseller's provider.
    provider: Partner | None


def opened(session: Session, links: LinkSettings, token: str) -> Request | None:
    """The request a link carries, or None for a link we did not sign (or whose partner is
    gone or has no country)."""
    partner_id = tokens.check_relationship_request_token(links.secret_key, links.fallbacks, token)
    partner = session.get(Partner, partner_id) if partner_id else None
    if partner is None or not partner.country:
        return None
    return Request(partner, partner.provider)


def may_serve(partner: Partner, customer_country: str) -> bool:
    """The region rule (``portal.core.regions``, data)."""
    return regions.load().may_serve(partner.country, customer_country)


def accept(
    session: Session,
    customer: Customer,
    partner: Partner,
    *,
    user_name: str,
    shown: list[Shown],
    contact: Contact | None,
    ip_address: str,
    user_agent: str,
) -> tuple[CustomerRelationship, list[AgreementAcceptance], bool]:
    """The customer accepts the partner's request, and with it the agreement (``shown``, when
    not accepted yet; ``contact`` says who accepts). Idempotent: an active relationship stays as
    it is. Returns the relationship, the acceptances recorded and whether they are new.

    Race-safe: two submissions at once both write the same acceptance and relationship; the
    database's keys keep one, and the loser's ``IntegrityError`` is for the caller to answer
    as a repeat (roll back, find the relationship active)."""
    if not may_serve(partner, customer.country):
        raise OutsideRegion(partnerCountry=partner.country, customerCountry=customer.country)
    recorded: list[AgreementAcceptance] = []
    new = False
    if shown:
        assert contact is not None  # noqa: S101 - the page asks for it with the agreement
        recorded, new = acceptance.accept_directly(
            session,
            customer,
            shown,
            contact=contact,
            user_name=user_name,
            ip_address=ip_address,
            user_agent=user_agent,
            through=partner.id,
        )
    existing = relationships.active(session, customer.id, partner.id)
    if existing is not None:
        return existing, recorded, new
    relationship = relationships.begin(
        session, customer, partner, accepted_by=user_name, accepted=True
    )
    events.record(
        session,
        EventKind.RELATIONSHIP_BEGAN,
        actor=f"customer:{user_name}",
        partner_id=partner.id,
        customer_id=customer.id,
        data={"kind": relationship.kind.value, "provider_id": relationship.provider_id},
    )
    return relationship, recorded, new


def decline(session: Session, customer: Customer, partner: Partner, *, user_name: str) -> None:
    """The customer says no: an event records it (the partner sees no customer either way)."""
    events.record(
        session,
        EventKind.RELATIONSHIP_DECLINED,
        actor=f"customer:{user_name}",
        partner_id=partner.id,
        customer_id=customer.id,
    )


#: What a lost race looks like (see ``accept``).
RaceLost = IntegrityError
