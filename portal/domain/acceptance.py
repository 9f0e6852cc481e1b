"""Agreement acceptances: partner attestations, the customer's direct acceptance, and status."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from flask_babel import gettext
from sqlalchemy import Engine, Select, bindparam, exists, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from portal.core import credentials, fastsql, validate
from portal.core.catalog import CUSTOMER_AGREEMENT, SECRECY_AMENDMENT, Agreement, Catalog, Document
from portal.core.errors import (
    AttestationExists,
    AttestationNotAllowed,
    DateAgreedInFuture,
    InvalidFields,
    Problem,
    ProblemCode,
)
from portal.core.models import (
    AcceptanceMethod,
    AgreementAcceptance,
    ApiKey,
    Customer,
    CustomerRelationship,
    Event,
    EventKind,
    Partner,
    Progress,
    RelationshipState,
    utcnow,
)
from portal.domain import events
from portal.i18n import wording
from portal.i18n.languages import best_locale
from portal.mail import emails, outbox

#: Clock skew tolerated on ``dateAgreed`` before it counts as "in the future".
CLOCK_SKEW = timedelta(minutes=5)
DIRECT_KEY = "direct"


@dataclass
class Contact:
    first_name: str
    last_name: str
    email: str
    phone: str = ""


def _contact_problems(contact: Contact, prefix: str) -> dict[str, Problem]:
    checks = {
        "firstName": validate.text(contact.first_name, 100),
        "lastName": validate.text(contact.last_name, 100),
        "email": validate.email(contact.email),
        "phoneNumber": validate.phone(contact.phone),
    }
    return {f"{prefix}.{k}": v for k, v in checks.items() if v}


def _recorded(
    session: Session, customer_id: str, template_id: str, dedupe_key: str
) -> AgreementAcceptance | None:
    """The acceptance the unique index allows once: direct, or attested with one contact."""
    return session.scalars(
        select(AgreementAcceptance).where(
            AgreementAcceptance.customer_id == customer_id,
            AgreementAcceptance.template_id == template_id,
            AgreementAcceptance.dedupe_key == dedupe_key,
        )
    ).first()


def attestation_key(partner_id: str, contact: Contact) -> str:
    """The same partner and contact details, the same key: the unique index turns a repeat into
    a 409. Another partner's attestation of the same contact is a record of its own."""
    parts = [
        partner_id,
        contact.first_name.strip().lower(),
        contact.last_name.strip().lower(),
        contact.email.strip().lower(),
        contact.phone.strip(),
    ]
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def attest(
    session: Session,
    partner: Partner,
    customer: Customer,
    catalog: Catalog,
    *,
    agreement_type: str,
    template_id: str,
    date_agreed: datetime,
    contact: Contact,
    recorded_by: str | None = None,
) -> AgreementAcceptance:
    """Record a partner's confirmation that the customer accepted; ``recorded_by`` names who
    (the partner's id, as Partner Center's ``userId``, unless a dashboard user is named)."""
    if not partner.may_attest:
        raise AttestationNotAllowed()
    problems = _contact_problems(contact, "primaryContact")
    agreement = catalog.by_type(agreement_type)
    if agreement is None:
        problems["type"] = Problem(
            ProblemCode.NOT_ONE_OF, f"is not one of {', '.join(catalog.types)}"
        )
    elif agreement.retired_since is not None:
        problems["type"] = Problem(
            ProblemCode.RETIRED,
            f"is retired since {agreement.retired_since.isoformat()}: it can no longer be "
            f"attested; attest the {CUSTOMER_AGREEMENT} instead",
        )
    elif agreement.template_id != template_id:
        problems["templateId"] = Problem(
            ProblemCode.NOT_ONE_OF,
            f"is not the template of {agreement_type} ({agreement.template_id})",
        )
    if problems:
        raise InvalidFields(problems)
    assert agreement is not None  # noqa: S101 - narrowed by the checks above
    if date_agreed > utcnow() + CLOCK_SKEW:
        raise DateAgreedInFuture(
            {"dateAgreed": Problem(ProblemCode.IN_FUTURE, "must not be in the future")}
        )

    dedupe = attestation_key(partner.id, contact)
    if _recorded(session, customer.id, template_id, dedupe) is not None:
        raise AttestationExists()
    document = (
        agreement.document(customer.country, customer.culture) if agreement.documents else None
    )
    acceptance = AgreementAcceptance(
        customer=customer,
        agreement_type=agreement.type,
        template_id=agreement.template_id,
        version_rank=agreement.version_rank,
        method=AcceptanceMethod.ATTESTED,
        dedupe_key=dedupe,
        first_name=contact.first_name.strip(),
        last_name=contact.last_name.strip(),
        email=contact.email.strip(),
        phone=contact.phone.strip(),
        date_agreed=date_agreed,
        recorded_by=recorded_by or partner.id,
        country=document.country if document else customer.country,
        language=document.language if document else customer.culture,
        document_uri=document.display_uri if document else agreement.link,
        partner_id=partner.id,
    )
    try:
        with session.begin_nested():
            session.add(acceptance)
            session.flush()
    except IntegrityError as exc:  # a concurrent identical attestation won the race
        raise AttestationExists() from exc
    events.record(
        session,
        EventKind.AGREEMENT_ATTESTED,
        actor=f"partner:{partner.id}",
        partner_id=partner.id,
        customer_id=customer.id,
        data={"acceptance_id": acceptance.id, "template_id": template_id},
    )
    return acceptance


ACCEPTANCE_CONFIRMATION = "acceptance-confirmation"


@dataclass(frozen=True)
class Shown:
    """An agreement as the customer page shows it: what they accept when they tick the box."""

    agreement: Agreement
    document: Document


class Terms(Protocol):
    """What decides the agreements a customer accepts: a ``Customer``, or the pages' record."""

    @property
    def country(self) -> str: ...

    @property
    def requires_secrecy_amendment(self) -> bool: ...


def to_accept(customer: Terms, catalog: Catalog, language: str) -> list[Shown]:
    """The agreements this customer accepts on the page, with the documents for their country
    and language: the Customer Agreement, and the secrecy amendment where the customer needs it."""
    types = [CUSTOMER_AGREEMENT]
    if customer.requires_secrecy_amendment:
        types.append(SECRECY_AMENDMENT)
    shown = []
    for agreement_type in types:
        agreement = catalog.by_type(agreement_type)
        if agreement is not None and agreement.documents:
            shown.append(Shown(agreement, agreement.document(customer.country, language)))
    return shown


def accept_directly(
    session: Session,
    customer: Customer,
    shown: list[Shown],
    *,
    contact: Contact,
    user_name: str,
    ip_address: str,
    user_agent: str,
    through: str | None = None,
) -> tuple[list[AgreementAcceptance], bool]:
    """Record the customer's own acceptance of what was shown, with its evidence.

    ``through``: the partner whose invitation or request led to it (who alone sees its evidence),
    by default the customer's creator, whose invitations lead to the agreement page.

    Idempotent: a repeat (a double click, twenty tabs at once) finds the acceptance already
    there. Returns the acceptances and whether this call recorded them.
    """
    through = through or customer.creator_id
    problems = _contact_problems(contact, "contact")
    if problems:
        raise InvalidFields(problems)
    now = utcnow()
    recorded: list[AgreementAcceptance] = []
    new = False
    for item in shown:
        existing = _recorded(session, customer.id, item.agreement.template_id, DIRECT_KEY)
        if existing is not None:
            recorded.append(existing)
            continue
        acceptance = AgreementAcceptance(
            customer=customer,
            agreement_type=item.agreement.type,
            template_id=item.agreement.template_id,
            version_rank=item.agreement.version_rank,
            method=AcceptanceMethod.DIRECT,
            dedupe_key=DIRECT_KEY,
            first_name=contact.first_name.strip(),
            last_name=contact.last_name.strip(),
            email=contact.email.strip(),
            phone=contact.phone.strip(),
            date_agreed=now,
            recorded_at=now,
            recorded_by=user_name,
            country=item.document.country,
            language=item.document.language,
            document_uri=item.document.display_uri,
            ip_address=ip_address[:45],
            user_agent=user_agent[:500],
            partner_id=through,
        )
        try:
            with session.begin_nested():
                session.add(acceptance)
                session.flush()
        except IntegrityError:
            # Another submission got there first: theirs is the acceptance.
            winner = _recorded(session, customer.id, item.agreement.template_id, DIRECT_KEY)
            assert winner is not None  # noqa: S101 - the unique index just said it exists
            recorded.append(winner)
            continue
        new = True
        recorded.append(acceptance)
        events.record(
            session,
            EventKind.AGREEMENT_ACCEPTED,
            actor=f"customer:{user_name}",
            partner_id=through,
            customer_id=customer.id,
            data={
                "acceptance_id": acceptance.id,
                "template_id": acceptance.template_id,
                "ip_address": acceptance.ip_address,
            },
        )
    return recorded, new


def confirm_acceptance(
    session: Session,
    customer: Customer,
    recorded: list[AgreementAcceptance],
    catalog: Catalog,
    *,
    locale: str,
    base_url: str,
    partner_name: str | None = None,
) -> None:
    """Email the person who accepted what they accepted, and when; ``partner_name``: whose
    invitation or request led to it, by default the customer's creator."""
    acceptor = recorded[0]
    partner = partner_name or customer.creator.name
    email = emails.render(
        "acceptance_confirmation",
        locale,
        subject=lambda: gettext(
            # Translators: subject of the email confirming the customer's own acceptance.
            "You accepted the Microsoft Customer Agreement for %(company)s",
            company=customer.company_name,
        ),
        partner_name=partner,
        company_name=customer.company_name,
        contact_name=lambda: wording.person_name(acceptor.first_name, acceptor.last_name),
        accepted_at=emails.when(
            acceptor.date_agreed, locale, wording.customer_zone(customer.country)
        ),
        documents=lambda: [
            (_agreement_name(catalog, r.template_id), r.document_uri) for r in recorded
        ],
    )
    outbox.queue(
        session,
        ACCEPTANCE_CONFIRMATION,
        acceptor.email,
        email,
        base_url=base_url,
        customer_id=customer.id,
    )


ATTESTATION_NOTICE = "attestation-notice"


def notify_attestation(
    session: Session,
    partner: Partner,
    customer: Customer,
    acceptance: AgreementAcceptance,
    catalog: Catalog,
    *,
    base_url: str,
    locales: list[str],
) -> None:
    """Tell the customer's primary contact that ``partner`` attested on their behalf."""
    locale = best_locale([customer.culture, customer.language], locales)
    partner_name = partner.name
    email = emails.render(
        "attestation_notice",
        locale,
        subject=lambda: gettext(
            # Translators: subject of the email telling a customer that their partner confirmed
            # the customer's acceptance of an agreement.
            "%(partner)s confirmed your acceptance: %(agreement)s",
            partner=partner_name,
            agreement=_agreement_name(catalog, acceptance.template_id),
        ),
        partner_name=partner_name,
        company_name=customer.company_name,
        contact_name=lambda: wording.person_name(
            customer.contact_first_name, customer.contact_last_name
        ),
        agreement_name=lambda: _agreement_name(catalog, acceptance.template_id),
        acceptor_name=lambda: wording.person_name(acceptance.first_name, acceptance.last_name),
        date_agreed=emails.day(acceptance.date_agreed, locale),
    )
    outbox.queue(
        session,
        ATTESTATION_NOTICE,
        customer.contact_email,
        email,
        base_url=base_url,
        customer_id=customer.id,
        partner_id=partner.id,
    )


def _agreement_name(catalog: Catalog, template_id: str) -> str:
    agreement = catalog.by_template(template_id)
    return wording.agreement_name(agreement.type, agreement.name) if agreement else template_id


def acceptances(
    session: Session,
    customer_id: str,
    agreement_types: list[str] | None = None,
    *,
    seen_by: list[str],
) -> list[AgreementAcceptance]:
    """The customer's acceptances as the partners ``seen_by`` (a partner and its resellers) see
    them: the customer's own, whichever partner's dealing led to them, with their evidence (IP
    address, user agent) only for the partner that led to it; and the attestations of those
    partners alone (another partner's attestation is its own record). The objects of others'
    acceptances are copies, outside the session: the blanked evidence is never written."""
    query = select(AgreementAcceptance).where(
        AgreementAcceptance.customer_id == customer_id,
        or_(
            AgreementAcceptance.method == AcceptanceMethod.DIRECT,
            AgreementAcceptance.partner_id.in_(seen_by),
        ),
    )
    if agreement_types is not None:
        query = query.where(AgreementAcceptance.agreement_type.in_(agreement_types))
    found = session.scalars(query.order_by(AgreementAcceptance.recorded_at))
    return [a if a.partner_id in seen_by else _without_evidence(a) for a in found]


def of_customer(session: Session, customer_id: str) -> list[AgreementAcceptance]:
    """The customer's own acceptances, as its pages show them to the customer."""
    query = select(AgreementAcceptance).where(
        AgreementAcceptance.customer_id == customer_id,
        AgreementAcceptance.method == AcceptanceMethod.DIRECT,
    )
    return list(session.scalars(query.order_by(AgreementAcceptance.recorded_at)))


_COLUMNS = [column.key for column in AgreementAcceptance.__table__.columns]


def _without_evidence(acceptance: AgreementAcceptance) -> AgreementAcceptance:
    copy = AgreementAcceptance(**{name: getattr(acceptance, name) for name in _COLUMNS})
    copy.ip_address = ""
    copy.user_agent = ""
    copy.partner_id = None
    return copy


@dataclass(frozen=True)
class SignedStatus:
    key_valid: bool
    customer_visible: bool
    is_signed: bool


def _signed_status_query() -> Select[*tuple[Any, ...]]:
    customer_id: Any = bindparam("customer_id")
    visible = exists().where(
        CustomerRelationship.customer_id == customer_id,
        CustomerRelationship.state == RelationshipState.ACTIVE,
        or_(
            CustomerRelationship.partner_id == ApiKey.partner_id,
            CustomerRelationship.provider_id == ApiKey.partner_id,
        ),
    )
    signed = exists().where(
        AgreementAcceptance.customer_id == customer_id,
        AgreementAcceptance.agreement_type == CUSTOMER_AGREEMENT,
        AgreementAcceptance.dedupe_key == DIRECT_KEY,
    )
    return select(visible.label("visible"), signed.label("signed")).where(
        ApiKey.key_hash == bindparam("key_hash"), ApiKey.revoked_at.is_(None)
    )


#: Partners' tools poll this endpoint: built and compiled once.
_SIGNED_STATUS = fastsql.CompiledRead(_signed_status_query())


def direct_signed_status(engine: Engine, api_key: str, customer_id: str) -> SignedStatus:
    """Key check, visibility and ``isSigned`` in one indexed query, on a pooled DB-API
    connection (no ORM, no transaction of its own beyond the driver's)."""
    row = _SIGNED_STATUS.first_on(
        engine, customer_id=customer_id, key_hash=credentials.api_key_hash(api_key)
    )
    if row is None:
        return SignedStatus(False, False, False)
    visible = bool(row["visible"])
    return SignedStatus(True, visible, bool(row["signed"]) and visible)


@dataclass(frozen=True)
class Status:
    """Everything a partner wants to know about one customer's acceptance."""

    customer: Customer
    invited_at: datetime | None
    opened_at: datetime | None
    signed_in_at: datetime | None
    direct: AgreementAcceptance | None
    attested: AgreementAcceptance | None
    acceptances: list[AgreementAcceptance]

    @property
    def eligible(self) -> bool:
        return self.direct is not None or self.attested is not None

    @property
    def state(self) -> Progress:
        """The furthest step reached (the API's ``state``). Unlike ``Customer.progress``, a
        withdrawn invitation does not take the customer back: this is the story so far."""
        if self.direct:
            return Progress.ACCEPTED
        if self.attested:
            return Progress.ATTESTED
        if self.signed_in_at:
            return Progress.SIGNED_IN
        if self.opened_at:
            return Progress.OPENED
        if self.invited_at:
            return Progress.INVITED
        return Progress.NOT_INVITED


def status(session: Session, customer: Customer, seen_by: list[str]) -> Status:
    """The customer's acceptance, and how far the dealings of the partners ``seen_by`` (a
    partner and its resellers) have come: another partner's invitations are not told."""
    found = acceptances(session, customer.id, seen_by=seen_by)
    mca = [a for a in found if a.agreement_type == CUSTOMER_AGREEMENT]
    direct = next((a for a in mca if a.method is AcceptanceMethod.DIRECT), None)
    attested = next((a for a in mca if a.method is AcceptanceMethod.ATTESTED), None)
    latest: dict[str, datetime] = {}
    kinds = (
        EventKind.INVITATION_CREATED,
        EventKind.INVITATION_OPENED,
        EventKind.CUSTOMER_SIGNED_IN,
    )
    rows = session.execute(
        select(Event.kind, Event.occurred_at)
        .where(
            Event.customer_id == customer.id,
            Event.kind.in_(kinds),
            Event.partner_id.in_(seen_by),
        )
        .order_by(Event.id.desc())
    )
    for kind, occurred_at in rows:  # newest first: keep the latest of each kind
        latest.setdefault(kind, occurred_at)
    return Status(
        customer=customer,
        invited_at=latest.get(EventKind.INVITATION_CREATED),
        opened_at=latest.get(EventKind.INVITATION_OPENED),
        signed_in_at=latest.get(EventKind.CUSTOMER_SIGNED_IN),
        direct=direct,
        attested=attested,
        acceptances=found,
    )
