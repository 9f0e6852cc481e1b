"""Reseller relationship requests: a partner's reusable link, personal requests, and the
customer's answer.

A partner hands out one link (``url``) that names only the partner; a provider asks for one on
behalf of its indirect reseller. A personal request (``create_personal``) is addressed to one
company by its domain, as an email in its language with a link of its own that expires, and is
tracked (``state``). The customer's admin opens a link, signs in with the account they already
have, and accepts (with the customer agreement, if not accepted yet: ``accept``) or declines.
Relationships form only where the region rule allows (``may_serve``).
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask_babel import gettext
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from portal.core import regions, tokens, validate
from portal.core.errors import InvalidFields, NotFound, PortalError
from portal.core.models import (
    AgreementAcceptance,
    Customer,
    CustomerRelationship,
    DeliveryStatus,
    EventKind,
    Partner,
    PartnerKind,
    PersonalRequest,
    new_id,
    utcnow,
)
from portal.domain import acceptance, events, invitations, relationships
from portal.domain.acceptance import Contact, Shown
from portal.domain.invitations import LinkSettings
from portal.i18n.languages import best_locale
from portal.mail import emails, outbox


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


def requester(
    session: Session, partner: Partner, reseller_id: str | None, field: str = "indirectResellerId"
) -> Partner:
    """Whose link a partner asks for (or for whom it creates a customer): its own, or a
    provider's for one of its resellers; else ``NotYourPartner`` naming ``field``."""
    if not reseller_id:
        return partner
    reseller = session.get(Partner, reseller_id.lower()[:64])
    if (
        partner.kind is not PartnerKind.INDIRECT_PROVIDER
        or reseller is None
        or reseller.provider_id != partner.id
    ):
        why = (
            None
            if field == "indirectResellerId"
            else f"{field} must name one of your indirect resellers."
        )
        raise NotYourPartner(why, **{field: reseller_id[:64]})
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
    #: For a personal request: the request (its ``state`` says whether it may be answered).
    personal: PersonalRequest | None = None

    @property
    def closed(self) -> bool:
        """A personal request that can no longer be answered (withdrawn, expired)."""
        return self.personal is not None and state(self.personal) in CLOSED


def opened(session: Session, links: LinkSettings, token: str) -> Request | None:
    """The request a link carries, or None for a link we did not sign (or whose partner is
    gone or has no country). A personal request's first opening is noted (by the way: the
    caller commits it if it can)."""
    partner_id = tokens.check_relationship_request_token(links.secret_key, links.fallbacks, token)
    personal = None
    if partner_id is None:
        checked = tokens.check_personal_request_token(
            links.secret_key, links.fallbacks, token, links.max_age
        )
        if checked.outcome is tokens.Outcome.INVALID:
            return None
        personal = session.get(PersonalRequest, checked.invitation_id)
        if personal is None or personal.nonce != checked.nonce:
            return None
        if personal.opened_at is None:
            personal.opened_at = utcnow()
        partner_id = personal.partner_id
    partner = session.get(Partner, partner_id)
    if partner is None or not partner.country:
        return None
    return Request(partner, partner.provider, personal)


# --- personal requests ---------------------------------------------------------------------------

#: Outbox kind of a personal request's email.
PERSONAL_REQUEST_EMAIL = "relationship-request"


class PersonalRequestState(enum.StrEnum):
    CREATED = "created"
    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"
    OPENED = "opened"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    EXPIRED = "expired"
    WITHDRAWN = "withdrawn"


CLOSED = frozenset(
    {
        PersonalRequestState.ACCEPTED,
        PersonalRequestState.DECLINED,
        PersonalRequestState.EXPIRED,
        PersonalRequestState.WITHDRAWN,
    }
)


def state(request: PersonalRequest, now: datetime | None = None) -> PersonalRequestState:
    """Where a personal request stands: its answer, else withdrawn or expired, else how far its
    email got."""
    if request.answer:
        return PersonalRequestState(request.answer)
    if request.withdrawn_at is not None:
        return PersonalRequestState.WITHDRAWN
    if request.expires_at <= (now or utcnow()):
        return PersonalRequestState.EXPIRED
    if request.opened_at is not None:
        return PersonalRequestState.OPENED
    statuses = {m.status for m in request.messages}
    if DeliveryStatus.SENT in statuses:
        return PersonalRequestState.SENT
    if statuses & {DeliveryStatus.QUEUED, DeliveryStatus.SENDING}:
        return PersonalRequestState.QUEUED
    if DeliveryStatus.FAILED in statuses:
        return PersonalRequestState.FAILED
    return PersonalRequestState.CREATED


class PersonalRequestNotFound(NotFound):
    error_name = "RelationshipRequestNotFound"
    description = "No relationship request with this id was found."


class PersonalRequestClosed(PortalError):
    status = 409
    code = 10416
    error_name = "RelationshipRequestClosed"
    description = "The relationship request was answered, withdrawn or has expired."


def personal_url(links: LinkSettings, request: PersonalRequest) -> str:
    token = tokens.personal_request_token(
        links.secret_key,
        links.fallbacks,
        request.id,
        request.nonce,
        int(request.created_at.timestamp()),
    )
    return f"{links.base_url}/relationship/{token}"


def create_personal(
    session: Session,
    partner: Partner,
    *,
    domain: str,
    recipient: str,
    language: str | None,
    links: LinkSettings,
    locales: Sequence[str],
    created_by: str,
) -> PersonalRequest:
    """A personal request to the company of ``domain``, as an email to ``recipient`` in
    ``language`` (else English); not sent (``send``). Nothing says whether the domain is a
    customer of the portal."""
    if not partner.country:
        raise PartnerCountryMissing(partnerId=partner.id)
    domain = domain.strip().lower()
    recipient = recipient.strip()
    language = validate.language_tag(language) if language else None
    problems = {
        name: problem
        for name, problem in (
            ("domain", validate.domain(domain)),
            ("email", validate.email(recipient)),
            ("language", validate.language(language) if language else None),
        )
        if problem is not None
    }
    if problems:
        raise InvalidFields(problems)
    now = utcnow()
    request = PersonalRequest(
        id=new_id(),
        partner=partner,
        partner_id=partner.id,  # known before the flush: its first email names the partner
        created_by=created_by,
        domain=domain,
        recipient=recipient,
        language=best_locale([language], list(locales)),
        nonce=secrets.token_urlsafe(24),
        created_at=now.replace(microsecond=0),
        expires_at=now.replace(microsecond=0) + timedelta(seconds=links.max_age),
        subject="",
        answer="",
    )
    email = _render(request, personal_url(links, request))
    request.subject, request.text_body, request.html_body = email.subject, email.text, email.html
    session.add(request)
    return request


def _render(request: PersonalRequest, url: str) -> emails.Email:
    partner = request.partner
    provider = partner.provider
    return emails.render(
        "relationship_request",
        request.language,
        # Translators: subject of the email a partner sends with its relationship request.
        subject=lambda: gettext(
            "%(partner)s asks to become your cloud solution partner", partner=partner.name
        ),
        partner_name=partner.name,
        provider_name=provider.name if provider else "",
        domain=request.domain,
        url=url,
        expires=emails.day(request.expires_at, request.language),
    )


def send_personal(
    session: Session, request: PersonalRequest, base_url: str, text_body: str | None = None
) -> None:
    """Queue the request's email (again); refused once it is closed. ``text_body``, the
    partner's edit, is sent instead and kept (``invitations.TextRejected`` when it lost the
    link or is empty or too long, before anything is written)."""
    if state(request) in CLOSED:
        raise PersonalRequestClosed(requestId=request.id)
    text = request.text_body if text_body is None else invitations.plain(text_body)
    if text != request.text_body:
        invitations.check_text(text, request.text_body, marker="/relationship/")
        edited = emails.written(request.subject, text, request.language)
        request.text_body, request.html_body = edited.text, edited.html
    outbox.queue(
        session,
        PERSONAL_REQUEST_EMAIL,
        request.recipient,
        emails.Email(request.subject, request.text_body, request.html_body, request.language),
        base_url=base_url,
        partner_id=request.partner_id,
        request_id=request.id,
    )


def withdraw_personal(session: Session, request: PersonalRequest) -> None:
    """Withdraw an open request: its link stops working, unsent mail is dropped."""
    if state(request) in CLOSED:
        raise PersonalRequestClosed(requestId=request.id)
    request.withdrawn_at = utcnow()
    request.text_body = request.html_body = ""
    outbox.cancel_pending(session, request_id=request.id)


def personal_requests(session: Session, partner_id: str) -> list[PersonalRequest]:
    """The partner's personal requests (and its resellers', for a provider), newest first."""
    ids = relationships.partner_ids(session, partner_id)
    return list(
        session.scalars(
            select(PersonalRequest)
            .where(PersonalRequest.partner_id.in_(ids))
            .order_by(PersonalRequest.created_at.desc(), PersonalRequest.id)
        )
    )


def waiting_count(session: Session, partner_id: str) -> int:
    """How many of the partner's personal requests (and its resellers') wait for an answer."""
    ids = relationships.partner_ids(session, partner_id)
    return int(
        session.scalar(
            select(func.count())
            .select_from(PersonalRequest)
            .where(
                PersonalRequest.partner_id.in_(ids),
                PersonalRequest.answer == "",
                PersonalRequest.withdrawn_at.is_(None),
                PersonalRequest.expires_at > utcnow(),
            )
        )
        or 0
    )


def personal_request(session: Session, partner_id: str, request_id: str) -> PersonalRequest:
    """One of the partner's personal requests (or its resellers'); the same 404 otherwise."""
    found = session.get(PersonalRequest, request_id[:64])
    if found is None or found.partner_id not in relationships.partner_ids(session, partner_id):
        raise PersonalRequestNotFound(requestId=request_id[:64])
    return found


def answered(request: Request | None, customer: Customer, answer: str) -> None:
    """Note a personal request's answer (the customer's, through its page)."""
    if request is not None and request.personal is not None and not request.personal.answer:
        request.personal.answer = answer
        request.personal.answered_at = utcnow()
        request.personal.customer_id = customer.id
        request.personal.text_body = request.personal.html_body = ""


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
    relationship, began = relationships.begin(
        session, customer, partner, accepted_by=user_name, accepted=True
    )
    if not began:
        return relationship, recorded, new
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
