"""Invitations: the generated email, the signed personal link, and fresh temporary credentials.

Each new invitation replaces the customer's previous one: the old link and the old temporary
password stop working. The link carries the invitation's id and a nonce only.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask_babel import gettext
from sqlalchemy import BindParameter, ColumnElement, Exists, bindparam, exists, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from portal.core import credentials, fastsql, tokens, validate
from portal.core.catalog import CUSTOMER_AGREEMENT
from portal.core.errors import InvalidFields, NotFound, PortalError, Problem, ProblemCode
from portal.core.models import (
    AcceptanceMethod,
    AgreementAcceptance,
    Customer,
    CustomerCredential,
    CustomerRelationship,
    CustomerSession,
    EventKind,
    Invitation,
    InvitationStatus,
    LinkState,
    OutboxMessage,
    is_id,
    new_id,
    utcnow,
)
from portal.domain import events, relationships, sessions
from portal.domain.customers import (
    PageCustomer,
    page_customer,
    page_customer_columns,
    with_partner_and_credential,
)
from portal.i18n import wording
from portal.i18n.languages import best_locale
from portal.mail import emails, outbox

INVITATION_MAIL = "invitation"


class AlreadyAccepted(PortalError):
    status = 409
    code = 10410
    error_name = "CustomerAlreadyAccepted"
    description = (
        "This customer has already accepted the Microsoft Customer Agreement; no invitation is "
        "needed. See GET /v1/customers/{id}/acceptanceStatus."
    )


class NotTheInviter(PortalError):
    status = 409
    code = 10411
    error_name = "CustomerHasAccount"
    description = (
        "This customer came to you by accepting your relationship request and has an account of "
        "its own: an invitation, which issues new credentials, is not needed."
    )


class InvitationNotFound(NotFound):
    error_name = "InvitationNotFound"
    description = "No invitation with this id was found for this customer."


class InvitationClosed(PortalError):
    status = 409
    code = 10411
    error_name = "InvitationClosed"
    description = "This invitation was withdrawn, replaced by a newer one, or has expired."


#: The longest email text a partner may send (a generated invitation has about 1,500 characters).
MAX_TEXT = 20_000


class TextRejected(InvalidFields):
    """An edited email the portal will not send: empty, too long, or without ``link``, the
    invitation's link, without which the customer cannot accept."""

    def __init__(self, problem: Problem, link: str = "") -> None:
        super().__init__({"textBody": problem})
        self.problem = problem.code
        self.link = link


@dataclass(frozen=True)
class LinkSettings:
    secret_key: str
    fallbacks: Sequence[str]
    base_url: str
    max_age: int

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> LinkSettings:
        return cls(
            config["SECRET_KEY"],
            list(config["SECRET_KEY_FALLBACKS"]),
            config["BASE_URL"],
            int(config["INVITATION_MAX_AGE"]),
        )

    def url(self, invitation: Invitation) -> str:
        token = tokens.invitation_token(
            self.secret_key,
            self.fallbacks,
            invitation.id,
            invitation.nonce,
            int(invitation.created_at.timestamp()),
        )
        return f"{self.base_url}/invite/{token}"


@dataclass
class Options:
    send: bool = False
    to: str | None = None
    language: str | None = None
    include_credentials: bool = True


@dataclass(frozen=True)
class Issued:
    invitation: Invitation
    url: str
    user_name: str
    password: str
    #: The outbox message, when it was queued for sending.
    message_id: str | None


def direct_acceptance_of(customer_id: ColumnElement[str] | InstrumentedAttribute[str]) -> Exists:
    """SQL: the customer ``customer_id`` (a column or a parameter) has accepted the Customer
    Agreement on the portal. What ``has_direct_acceptance`` asks, for use inside other
    queries."""
    return exists().where(
        AgreementAcceptance.customer_id == customer_id,
        AgreementAcceptance.method == AcceptanceMethod.DIRECT,
        AgreementAcceptance.agreement_type == CUSTOMER_AGREEMENT,
    )


_CUSTOMER_ID: BindParameter[str] = bindparam("customer_id")
_DIRECT_ACCEPTANCE = direct_acceptance_of(_CUSTOMER_ID)
_OPEN_INVITATION = exists().where(
    Invitation.customer_id == _CUSTOMER_ID,
    Invitation.revoked_at.is_(None),
    Invitation.superseded_at.is_(None),
)
#: Built once (reusing a statement costs far less than making one). A new invitation asks both
#: questions in one statement: has the customer accepted, and is there an invitation to replace?
_ACCEPTED = select(_DIRECT_ACCEPTANCE)
_ACCEPTED_AND_OPEN = fastsql.CompiledRead(
    select(_DIRECT_ACCEPTANCE.label("accepted"), _OPEN_INVITATION.label("open"))
)


def has_direct_acceptance(session: Session, customer_id: str) -> bool:
    return bool(session.scalar(_ACCEPTED, {"customer_id": customer_id}))


def create(
    session: Session,
    customer: Customer,
    options: Options,
    *,
    links: LinkSettings,
    pepper: bytes,
    locales: Sequence[str],
    actor: str,
    partner_id: str | None,
) -> Issued:
    """Issue new credentials and a new invitation; queue it when ``options.send``."""
    draft = prepare(customer, options, links=links, pepper=pepper, locales=locales, actor=actor)
    return issue(session, customer, draft, actor=actor, partner_id=partner_id)


@dataclass(frozen=True)
class Draft:
    """A new invitation made ready without the database (see ``prepare``)."""

    invitation: Invitation
    url: str
    user_name: str
    password: str
    password_hash: str
    #: The outbox message with its MIME bytes, when the invitation is to be sent.
    message: OutboxMessage | None


def prepare(
    customer: Customer,
    options: Options,
    *,
    links: LinkSettings,
    pepper: bytes,
    locales: Sequence[str],
    actor: str,
) -> Draft:
    """What a new invitation needs no database for: new credentials, the signed link, the email
    in the recipient's locale and, to send it, its MIME bytes. ``issue`` stores it; an edge may
    prepare outside the transaction that stores it, which then stays short (on SQLite it holds
    the write lock)."""
    recipient = options.to if options.to is not None else customer.contact_email
    language = validate.language_tag(options.language) if options.language else None
    problems = {
        "to": validate.email(recipient),
        # Checked as at the customer's creation; a language with no translation then falls back.
        "language": validate.language(language) if language else None,
    }
    if any(problems.values()):
        raise InvalidFields({field: problem for field, problem in problems.items() if problem})
    credential = customer.credential  # loaded with the customer (customers.get_visible)
    if credential is None:
        raise LookupError(f"customer {customer.id} has no credentials")
    password = credentials.new_temporary_password()
    now = utcnow()
    locale = best_locale([language, customer.culture, customer.language], locales)
    invitation = Invitation(
        id=new_id(),  # known before the INSERT, so the row is written once, complete
        customer=customer,
        nonce=secrets.token_urlsafe(24),
        created_at=now,
        expires_at=now + timedelta(seconds=links.max_age),
        created_by=actor,
        language=locale,
        recipient=recipient,
        include_credentials=options.include_credentials,
        messages=[],
    )
    url = links.url(invitation)
    email = render(
        customer,
        url,
        credential.user_name,
        password if options.include_credentials else None,
        invitation.expires_at,
        locale,
    )
    invitation.subject = email.subject
    invitation.text_body = email.text
    invitation.html_body = email.html
    message = None
    if options.send:
        message = outbox.compose(
            INVITATION_MAIL,
            recipient,
            email,
            base_url=links.base_url,
            invitation=invitation,
            customer_id=customer.id,
            partner_id=customer.creator_id,
        )
    return Draft(
        invitation,
        url,
        credential.user_name,
        password,
        credentials.hash_temporary_password(password, pepper),
        message,
    )


def issue(
    session: Session, customer: Customer, draft: Draft, *, actor: str, partner_id: str | None
) -> Issued:
    """Store a prepared invitation: the previous one is replaced, the credentials reset, the
    email queued. ``partner_id``: the partner asking (None for an operator). Raises
    AlreadyAccepted, or NotTheInviter for a partner other than the customer's creator (and its
    provider): the credentials are the customer's, issued once by its creator."""
    session.connection()  # the transaction that writes (on SQLite: the write lock) from here
    found = _ACCEPTED_AND_OPEN.first(session, customer_id=customer.id) or {}
    if found.get("accepted"):
        raise AlreadyAccepted()
    if partner_id is not None and not inviter(session, partner_id, customer):
        raise NotTheInviter()
    invitation = draft.invitation
    now = invitation.created_at
    if found.get("open"):
        _close_open_invitations(session, customer.id, now)
    # Everything written at once, so the transaction (on SQLite: the write lock) stays short.
    _reset_credentials(session, customer, draft.password_hash, now)
    fastsql.insert_now(session, invitation, *([draft.message] if draft.message is not None else []))
    _SET_EXPIRY.run(
        session.connection(),
        {
            "of_customer": customer.id,
            "of_partner": customer.creator_id,
            "expires_at": invitation.expires_at,
        },
    )
    events.record(
        session,
        EventKind.INVITATION_CREATED,
        actor=actor,
        partner_id=customer.creator_id,
        customer_id=customer.id,
        data={
            "invitation_id": invitation.id,
            "send": draft.message is not None,
            "language": invitation.language,
        },
        write_now=True,
    )
    message_id = draft.message.id if draft.message is not None else None
    return Issued(invitation, draft.url, draft.user_name, draft.password, message_id)


#: When the creator's current invitation link expires, on its relationship (the dashboard's
#: "expired" filter reads it there).
_SET_EXPIRY = fastsql.CompiledWrite(
    update(CustomerRelationship)
    .where(
        CustomerRelationship.customer_id == bindparam("of_customer"),
        CustomerRelationship.partner_id == bindparam("of_partner"),
    )
    .values(invitation_expires_at=bindparam("expires_at"))
)


def render(
    customer: Customer,
    url: str,
    user_name: str,
    password: str | None,
    expires_at: datetime,
    locale: str,
) -> emails.Email:
    partner = customer.creator.name
    company = customer.company_name
    return emails.render(
        "invitation",
        locale,
        subject=lambda: gettext(
            # Translators: the subject of the invitation email.
            "%(partner)s asks %(company)s to accept the Microsoft Customer Agreement",
            partner=partner,
            company=company,
        ),
        partner_name=partner,
        company_name=company,
        contact_name=lambda: wording.person_name(
            customer.contact_first_name, customer.contact_last_name
        ),
        url=url,
        user_name=user_name,
        password=password,
        expires=emails.when(expires_at, locale, wording.customer_zone(customer.country)),
    )


def _close_open_invitations(session: Session, customer_id: str, now: datetime) -> None:
    open_ids = list(
        session.scalars(
            select(Invitation.id).where(
                Invitation.customer_id == customer_id,
                Invitation.revoked_at.is_(None),
                Invitation.superseded_at.is_(None),
            )
        )
    )
    if not open_ids:
        return
    session.execute(
        update(Invitation)
        .where(Invitation.id.in_(open_ids))
        .values(superseded_at=now, text_body="", html_body="")
    )
    for invitation_id in open_ids:
        outbox.cancel_pending(session, invitation_id)


def _reset_credentials(
    session: Session, customer: Customer, password_hash: str, now: datetime
) -> None:
    credential = customer.credential
    if credential is None:
        raise LookupError(f"customer {customer.id} has no credentials")
    fastsql.update_now(
        session,
        credential,
        password_hash=password_hash,
        temporary=True,
        updated_at=now,
        generation=fastsql.INCREMENT,  # a new generation: every session opened before ends
    )
    # The new generation alone ends them; this marks them ended for whoever reads the records.
    sessions.end_all(session, CustomerSession, CustomerSession.customer_id, customer.id, now)


def inviter(session: Session, partner_id: str, customer: Customer) -> bool:
    """Whether the partner deals with the customer's invitations: it sees the customer through
    the creator's relationship (its own, or for a provider, its reseller's)."""
    seen = relationships.seen(session, partner_id, customer.id)
    return seen is not None and seen.partner_id == customer.creator_id


def for_customer(session: Session, customer: Customer, partner_id: str) -> list[Invitation]:
    """The customer's invitations, newest first, for a partner that deals with them (see
    ``inviter``); none for any other."""
    if not inviter(session, partner_id, customer):
        return []
    return list(
        session.scalars(
            select(Invitation)
            .where(Invitation.customer_id == customer.id)
            .order_by(Invitation.created_at.desc(), Invitation.id)
        )
    )


def get(session: Session, customer: Customer, invitation_id: str, partner_id: str) -> Invitation:
    """One of the customer's invitations, for a partner that deals with them; else
    InvitationNotFound, as for an unknown id."""
    invitation = None
    if is_id(invitation_id.lower()):
        invitation = session.get(Invitation, invitation_id.lower())
    if (
        invitation is None
        or invitation.customer_id != customer.id
        or not inviter(session, partner_id, customer)
    ):
        raise InvitationNotFound(invitationId=invitation_id[:64])
    return invitation


def status(invitation: Invitation, now: datetime | None = None) -> InvitationStatus:
    """Closed (revoked, superseded, expired), or the delivery state of its latest message;
    ``created`` when it was never sent."""
    now = now or utcnow()
    if invitation.revoked_at:
        return InvitationStatus.REVOKED
    if invitation.superseded_at:
        return InvitationStatus.SUPERSEDED
    if invitation.expires_at <= now:
        return InvitationStatus.EXPIRED
    if invitation.messages:
        return InvitationStatus(invitation.messages[-1].status.value)
    return InvitationStatus.CREATED


def is_open(invitation: Invitation, now: datetime | None = None) -> bool:
    return not status(invitation, now).closed


def resend(
    session: Session,
    invitation: Invitation,
    base_url: str,
    actor: str,
    *,
    text_body: str | None = None,
) -> str:
    """Queue the email again (a failed delivery is retried at once).

    ``text_body``, the partner's edit of the text, is sent instead, with HTML made from it, and
    kept as the invitation's email; a text the same as the kept one is no edit. Raises
    TextRejected, before anything is written, for a text the customer could not accept from.
    """
    if not is_open(invitation) or not invitation.text_body:
        raise InvitationClosed()
    if has_direct_acceptance(session, invitation.customer_id):
        raise AlreadyAccepted()
    text = invitation.text_body if text_body is None else plain(text_body)
    edited = text != invitation.text_body
    if edited:
        check_text(text, invitation.text_body)
        email = emails.written(invitation.subject, text, invitation.language)
        invitation.text_body = email.text
        invitation.html_body = email.html
    else:
        email = emails.Email(
            invitation.subject, invitation.text_body, invitation.html_body, invitation.language
        )
    first = not session.scalar(select(exists().where(OutboxMessage.invitation_id == invitation.id)))
    message = outbox.queue(
        session,
        INVITATION_MAIL,
        invitation.recipient,
        email,
        base_url=base_url,
        invitation=invitation,
        customer_id=invitation.customer_id,
        partner_id=invitation.customer.creator_id,
    )
    session.flush()
    data: dict[str, Any] = {"invitation_id": invitation.id, "message_id": message.id}
    if edited:
        data["edited"] = True
    if first:  # the partner reviewed it first, then sent it: not "again"
        data["first"] = True
    events.record(
        session,
        EventKind.INVITATION_RESENT,
        actor=actor,
        customer_id=invitation.customer_id,
        partner_id=invitation.customer.creator_id,
        data=data,
    )
    return message.id


#: Control characters a text area may carry but a plain-text email should not (tabs and line
#: ends stay); PostgreSQL stores no NUL.
_UNSENDABLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def plain(text: str) -> str:
    """A text as submitted by a browser (CRLF line ends) as the portal keeps texts."""
    return _UNSENDABLE.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def check_text(text: str, sent_before: str, marker: str = "/invite/") -> None:
    """Raise TextRejected unless ``text`` can go to the customer: not empty, not too long, and
    still holding every link of the text it replaces whose address holds ``marker`` (the
    invitation's; a relationship request's is ``/relationship/``)."""
    if not text.strip():
        raise TextRejected(Problem(ProblemCode.REQUIRED, "is empty"))
    if len(text) > MAX_TEXT:
        raise TextRejected(validate.too_long(MAX_TEXT))
    present = set(emails.web_addresses(text))
    for link in emails.web_addresses(sent_before):
        if marker in link and link not in present:
            raise TextRejected(Problem(ProblemCode.NO_LINK, f"lacks the link {link}"), link)


def revoke(session: Session, invitation: Invitation, actor: str) -> None:
    """Withdraw an invitation: its link shows "withdrawn" and its password stops working."""
    if invitation.revoked_at is not None:
        return
    now = utcnow()
    invitation.revoked_at = now
    invitation.text_body = ""
    invitation.html_body = ""
    outbox.cancel_pending(session, invitation.id)
    if invitation.superseded_at is None:
        session.execute(
            _SET_EXPIRY.statement,
            {
                "of_customer": invitation.customer_id,
                "of_partner": invitation.customer.creator_id,
                "expires_at": None,
            },
        )
        credential = session.scalars(
            select(CustomerCredential).where(
                CustomerCredential.customer_id == invitation.customer_id
            )
        ).one()
        if credential.temporary:
            credential.password_hash = credentials.DEAD
            credential.updated_at = now
            credential.generation = credential.generation + 1  # ends its sessions
            sessions.end_all(
                session, CustomerSession, CustomerSession.customer_id, credential.customer_id, now
            )
    events.record(
        session,
        EventKind.INVITATION_REVOKED,
        actor=actor,
        customer_id=invitation.customer_id,
        partner_id=invitation.customer.creator_id,
        data={"invitation_id": invitation.id},
    )


# --- following a link -------------------------------------------------------------------------


@dataclass(frozen=True)
class Landing:
    """Where a link leads and, unless invalid, whose link it is, as the pages show the
    customer."""

    state: LinkState
    customer: PageCustomer | None = None
    invitation_id: str | None = None


#: What a followed link needs to know, in one query (a landing page is opened often: by the
#: customer, again and again, and by mail scanners).
_LINK = fastsql.CompiledRead(
    with_partner_and_credential(
        select(
            Invitation.nonce,
            # Only whether these happened: no time to convert.
            Invitation.revoked_at.is_not(None).label("revoked"),
            Invitation.superseded_at.is_not(None).label("superseded"),
            Invitation.opened_at.is_not(None).label("opened"),
            direct_acceptance_of(Invitation.customer_id).label("accepted"),
            *page_customer_columns(),
        )
        .select_from(Invitation)
        .join(Customer, Customer.id == Invitation.customer_id)
    ).where(Invitation.id == bindparam("invitation_id"))
)


def follow(session: Session, links: LinkSettings, token: str) -> Landing:
    """Check a link. Never changes anything but the first-opened time (mail scanners open links
    too, so a GET may not use a link up)."""
    checked = tokens.check_invitation_token(links.secret_key, links.fallbacks, token, links.max_age)
    if checked.outcome is tokens.Outcome.INVALID:
        return Landing(LinkState.INVALID)
    row = _LINK.first(session, invitation_id=checked.invitation_id)
    if row is None:
        return Landing(LinkState.INVALID)
    if not secrets.compare_digest(row["nonce"], checked.nonce):
        return Landing(LinkState.INVALID)
    invitation_id = checked.invitation_id
    customer = page_customer(row)
    if row["accepted"]:
        return Landing(LinkState.ACCEPTED, customer, invitation_id)
    if row["revoked"]:
        return Landing(LinkState.REVOKED, customer, invitation_id)
    if row["superseded"]:
        return Landing(LinkState.SUPERSEDED, customer, invitation_id)
    # The signed timestamp decides expiry (exactly max_age old is still valid).
    if checked.outcome is tokens.Outcome.EXPIRED:
        return Landing(LinkState.EXPIRED, customer, invitation_id)
    if not row["opened"]:
        _note_opened(session, invitation_id)
    return Landing(LinkState.VALID, customer, invitation_id)


def _note_opened(session: Session, invitation_id: str) -> None:
    # Load what the event needs first: a GET may only write when it commits (SQLite: a write
    # lock taken mid-request would wait on, or fail against, another writer).
    invitation = session.get_one(Invitation, invitation_id)
    if invitation.opened_at is not None:
        return
    partner_id = invitation.customer.creator_id
    invitation.opened_at = utcnow()
    events.record(
        session,
        EventKind.INVITATION_OPENED,
        actor="link",
        customer_id=invitation.customer_id,
        partner_id=partner_id,
        data={"invitation_id": invitation.id},
    )
