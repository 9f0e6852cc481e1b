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
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from portal import credentials, emails, events, outbox, tokens, validate, wording
from portal.errors import InvalidFields, NotFound, PortalError
from portal.i18n import best_locale
from portal.models import (
    AcceptanceMethod,
    AgreementAcceptance,
    Customer,
    CustomerCredential,
    Invitation,
    new_id,
    utcnow,
)

INVITATION_MAIL = "invitation"
_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
#: A password hash nothing verifies against: credentials of a withdrawn invitation.
DEAD_PASSWORD = "!revoked"  # noqa: S105 - not a password: matches no hash scheme


class AlreadyAccepted(PortalError):
    status = 409
    code = 10410
    error_name = "CustomerAlreadyAccepted"
    description = (
        "This customer has already accepted the Microsoft Customer Agreement; no invitation is "
        "needed. See GET /v1/customers/{id}/acceptanceStatus."
    )


class InvitationNotFound(NotFound):
    error_name = "InvitationNotFound"
    description = "No invitation with this id was found for this customer."


class InvitationClosed(PortalError):
    status = 409
    code = 10411
    error_name = "InvitationClosed"
    description = "This invitation was withdrawn, replaced by a newer one, or has expired."


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


def has_direct_acceptance(session: Session, customer_id: str) -> bool:
    query = select(AgreementAcceptance.id).where(
        AgreementAcceptance.customer_id == customer_id,
        AgreementAcceptance.method == AcceptanceMethod.DIRECT,
        AgreementAcceptance.agreement_type == "MicrosoftCustomerAgreement",
    )
    return session.scalar(query) is not None


def create(
    session: Session,
    customer: Customer,
    options: Options,
    *,
    links: LinkSettings,
    pepper: bytes,
    locales: Sequence[str],
    actor: str,
) -> Issued:
    """Issue new credentials and a new invitation; queue it when ``options.send``."""
    recipient = options.to if options.to is not None else customer.contact_email
    problem = validate.email(recipient)
    if problem:
        raise InvalidFields({"to": problem})
    if has_direct_acceptance(session, customer.id):
        raise AlreadyAccepted()

    now = utcnow()
    _close_open_invitations(session, customer.id, now)
    password = credentials.new_temporary_password()
    credential = _reset_credentials(session, customer, password, pepper, now)

    locale = best_locale([options.language, customer.culture, customer.language], locales)
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
    session.add(invitation)
    customer.invitation_expires_at = invitation.expires_at
    message = None
    if options.send:
        message = outbox.queue(
            session,
            INVITATION_MAIL,
            recipient,
            email,
            base_url=links.base_url,
            invitation=invitation,
            customer_id=customer.id,
        )
    events.record(
        session,
        events.INVITATION_CREATED,
        actor=actor,
        partner_id=customer.partner_id,
        customer_id=customer.id,
        data={"invitation_id": invitation.id, "send": options.send, "language": locale},
    )
    return Issued(invitation, url, credential.user_name, password, message.id if message else None)


def render(
    customer: Customer,
    url: str,
    user_name: str,
    password: str | None,
    expires_at: datetime,
    locale: str,
) -> emails.Email:
    partner = customer.partner.name
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
    session: Session,
    customer: Customer,
    password: str,
    pepper: bytes,
    now: datetime,
) -> CustomerCredential:
    credential = session.scalars(
        select(CustomerCredential).where(CustomerCredential.customer_id == customer.id)
    ).one()
    credential.password_hash = credentials.hash_temporary_password(password, pepper)
    credential.temporary = True
    credential.updated_at = now
    return credential


def for_customer(session: Session, customer_id: str) -> list[Invitation]:
    return list(
        session.scalars(
            select(Invitation)
            .where(Invitation.customer_id == customer_id)
            .order_by(Invitation.created_at.desc(), Invitation.id)
        )
    )


def get(session: Session, customer_id: str, invitation_id: str) -> Invitation:
    invitation = None
    if _ID.match(invitation_id.lower()):
        invitation = session.get(Invitation, invitation_id.lower())
    if invitation is None or invitation.customer_id != customer_id:
        raise InvitationNotFound(invitationId=invitation_id[:64])
    return invitation


def status(invitation: Invitation, now: datetime | None = None) -> str:
    """``revoked``, ``superseded``, ``expired``, or the delivery state of its latest message
    (``queued``, ``sending``, ``sent``, ``failed``); ``created`` when it was never sent."""
    now = now or utcnow()
    if invitation.revoked_at:
        return "revoked"
    if invitation.superseded_at:
        return "superseded"
    if invitation.expires_at <= now:
        return "expired"
    if invitation.messages:
        return invitation.messages[-1].status.value
    return "created"


def is_open(invitation: Invitation, now: datetime | None = None) -> bool:
    return status(invitation, now) not in {"revoked", "superseded", "expired"}


def resend(session: Session, invitation: Invitation, base_url: str, actor: str) -> str:
    """Queue the same email again (a failed delivery is retried at once)."""
    if not is_open(invitation) or not invitation.text_body:
        raise InvitationClosed()
    if has_direct_acceptance(session, invitation.customer_id):
        raise AlreadyAccepted()
    email = emails.Email(
        invitation.subject, invitation.text_body, invitation.html_body, invitation.language
    )
    message = outbox.queue(
        session,
        INVITATION_MAIL,
        invitation.recipient,
        email,
        base_url=base_url,
        invitation=invitation,
        customer_id=invitation.customer_id,
    )
    session.flush()
    events.record(
        session,
        "invitation.resent",
        actor=actor,
        customer_id=invitation.customer_id,
        partner_id=invitation.customer.partner_id,
        data={"invitation_id": invitation.id, "message_id": message.id},
    )
    return message.id


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
        invitation.customer.invitation_expires_at = None
        credential = session.scalars(
            select(CustomerCredential).where(
                CustomerCredential.customer_id == invitation.customer_id
            )
        ).one()
        if credential.temporary:
            credential.password_hash = DEAD_PASSWORD
            credential.updated_at = now
    events.record(
        session,
        events.INVITATION_REVOKED,
        actor=actor,
        customer_id=invitation.customer_id,
        partner_id=invitation.customer.partner_id,
        data={"invitation_id": invitation.id},
    )


# --- following a link -------------------------------------------------------------------------


@dataclass(frozen=True)
class Landing:
    """Where a link leads: ``valid``, ``expired``, ``withdrawn``, ``replaced`` (a newer
    invitation exists), ``accepted`` or ``invalid``."""

    state: str
    invitation: Invitation | None = None


def follow(session: Session, links: LinkSettings, token: str) -> Landing:
    """Check a link. Never changes anything but the first-opened time (mail scanners open links
    too, so a GET may not use a link up)."""
    checked = tokens.check_invitation_token(links.secret_key, links.fallbacks, token, links.max_age)
    if checked.outcome is tokens.Outcome.INVALID:
        return Landing("invalid")
    invitation = session.get(Invitation, checked.invitation_id)
    if invitation is None or not secrets.compare_digest(invitation.nonce, checked.nonce):
        return Landing("invalid")
    if has_direct_acceptance(session, invitation.customer_id):
        return Landing("accepted", invitation)
    if invitation.revoked_at is not None:
        return Landing("withdrawn", invitation)
    if invitation.superseded_at is not None:
        return Landing("replaced", invitation)
    # The signed timestamp decides expiry (exactly max_age old is still valid).
    if checked.outcome is tokens.Outcome.EXPIRED:
        return Landing("expired", invitation)
    if invitation.opened_at is None:
        # Load what the event needs first: a GET may only write when it commits (SQLite: a
        # write lock taken mid-request would wait on, or fail against, another writer).
        customer = invitation.customer
        invitation.opened_at = utcnow()
        events.record(
            session,
            events.INVITATION_OPENED,
            actor="link",
            customer_id=invitation.customer_id,
            partner_id=customer.partner_id,
            data={"invitation_id": invitation.id},
        )
    return Landing("valid", invitation)
