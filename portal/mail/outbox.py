"""The outbox: emails are written in the same transaction as what caused them, and sent after
it commits (``portal.mail.sending``), by ``portal mail send`` or the delivery loop inside
``portal serve``.

Every message is claimed before it is sent (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, and a
conditional UPDATE everywhere), so senders running at once never send one message twice. The
MIME bytes are built when a message is queued (``portal.mail.mime``), so a pass is SMTP and a
few statements.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import exists, inspect, select, update
from sqlalchemy.orm import Session

from portal.core import queues, validate
from portal.core.models import (
    DeliveryStatus,
    Invitation,
    OutboxMessage,
    Partner,
    PartnerUser,
    PersonalRequest,
    utcnow,
)
from portal.mail import mime
from portal.mail.emails import Email

#: How long a claim holds before another sender may take the message over.
CLAIM_LEASE = timedelta(minutes=5)


def queue(
    session: Session,
    kind: str,
    to: str,
    email: Email,
    *,
    base_url: str,
    invitation: Invitation | None = None,
    customer_id: str | None = None,
    partner_id: str | None = None,
    request_id: str | None = None,
) -> OutboxMessage:
    """Add a message to the outbox; it is sent only if this transaction commits.

    The MIME message is built here, once, so that delivery is only SMTP. ``partner_id``: the
    partner whose dealing it is (None for the customer's own mail), who alone sees it.
    """
    message = compose(
        kind,
        to,
        email,
        base_url=base_url,
        invitation=invitation,
        customer_id=customer_id,
        partner_id=partner_id,
        request_id=request_id,
        session=session,
    )
    session.add(message)
    return message


def compose(
    kind: str,
    to: str,
    email: Email,
    *,
    base_url: str,
    invitation: Invitation | None = None,
    customer_id: str | None = None,
    partner_id: str | None = None,
    request_id: str | None = None,
    session: Session | None = None,
) -> OutboxMessage:
    """An outbox message with its MIME bytes, not yet in any session (``queue`` adds it).

    Its Message-ID is on the sender's domain; replies go to the partner's person who issued it
    (``reply_to``). ``session``: where that person's account is looked up, when there is one."""
    sender = current_app.config["MAIL_DEFAULT_SENDER"]
    domain = mime.sender_domain(sender) or urlsplit(base_url).hostname or "portal.invalid"
    # Before the message exists: its look-up may flush the session, which must not meet a
    # message attached to an invitation but not added yet.
    answer_to = reply_to(session, invitation, request_id, partner_id)
    message = OutboxMessage(
        kind=kind,
        to_address=to,
        subject=email.subject,
        text_body=email.text,
        html_body=email.html,
        message_id=f"<{uuid.uuid4()}@{domain}>",
        invitation=invitation,
        customer_id=customer_id,
        partner_id=partner_id,
        request_id=request_id,
        next_attempt_at=utcnow(),
    )
    message.mime = mime.build(
        sender,
        message,
        reply_to=answer_to,
        language=validate.language_tag(email.locale),
    )
    return message


def reply_to(
    session: Session | None,
    invitation: Invitation | None,
    request_id: str | None,
    partner_id: str | None = None,
) -> str | None:
    """Where a customer's reply to an email of a partner should go: the partner's person who
    issued it in the dashboard (an invitation's or a personal relationship request's
    ``created_by``), while their account is active; else the partner's contact address
    (``portal partners contact``); else None (the reply goes to the sender).

    Without ``session`` (an invitation prepared outside the database) the person is the one
    signed in, so active, and the partner is the customer's creator, loaded with it."""
    return _issuer(session, invitation, request_id) or _contact(session, invitation, partner_id)


def _contact(
    session: Session | None, invitation: Invitation | None, partner_id: str | None
) -> str | None:
    partner: Partner | None = None
    if session is not None and partner_id is not None:
        partner = session.get(Partner, partner_id)
    elif invitation is not None and "creator" not in inspect(invitation.customer).unloaded:
        partner = invitation.customer.creator  # loaded with the customer: no query
    return (partner.contact_email or None) if partner is not None else None


def _issuer(
    session: Session | None, invitation: Invitation | None, request_id: str | None
) -> str | None:
    if invitation is not None:
        issued_by = invitation.created_by
    elif request_id is not None and session is not None:
        request = session.get(PersonalRequest, request_id)
        issued_by = request.created_by if request is not None else ""
    else:
        return None
    kind, _, address = issued_by.partition(":")
    if kind != "user" or validate.email(address) is not None:
        return None
    if session is not None and not session.scalar(
        select(exists().where(PartnerUser.email == address, PartnerUser.disabled_at.is_(None)))
    ):
        return None
    return address


def cancel_pending(
    session: Session, invitation_id: str | None = None, *, request_id: str | None = None
) -> None:
    """Withdraw unsent messages of an invitation (or of a personal relationship request) and
    drop the bodies of all of them."""
    of = (
        OutboxMessage.invitation_id == invitation_id
        if invitation_id is not None
        else OutboxMessage.request_id == request_id
    )
    session.execute(
        update(OutboxMessage)
        .where(of, OutboxMessage.status.in_([DeliveryStatus.QUEUED, DeliveryStatus.FAILED]))
        .values(status=DeliveryStatus.CANCELLED, claimed_until=None)
    )
    session.execute(
        update(OutboxMessage)
        .where(of, OutboxMessage.status != DeliveryStatus.SENDING)
        .values(text_body="", html_body="", mime=None)
    )


def pending(session: Session, limit: int = 100) -> list[OutboxMessage]:
    """Messages not yet sent (queued, being sent, or failed), oldest first."""
    query = (
        select(OutboxMessage)
        .where(
            OutboxMessage.status.in_(
                [DeliveryStatus.QUEUED, DeliveryStatus.SENDING, DeliveryStatus.FAILED]
            )
        )
        .order_by(OutboxMessage.created_at)
        .limit(limit)
    )
    return list(session.scalars(query))


def claim(session: Session, limit: int, now: datetime | None = None) -> list[OutboxMessage]:
    """Take up to ``limit`` due messages for this sender, oldest due first; commits the claim
    (``queues.claim``), so no write lock is held while SMTP talks."""
    claimed = queues.claim(
        session,
        OutboxMessage,
        queued=DeliveryStatus.QUEUED,
        sending=DeliveryStatus.SENDING,
        lease=CLAIM_LEASE,
        limit=limit,
        now=now or utcnow(),
    )
    claimed.sort(key=lambda message: message.next_attempt_at)
    return claimed
