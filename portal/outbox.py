"""The outbox: emails are written in the same transaction as what caused them, and sent after
it commits, by ``portal mail send`` or the delivery loop inside ``portal serve``.

Every message is claimed before it is sent (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, and a
conditional UPDATE everywhere), so senders running at once never send one message twice. A
message the SMTP server accepted counts as sent even if the connection drops afterwards.
"""

from __future__ import annotations

import smtplib
import ssl
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.policy import compat32
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, current_app
from flask_mail import BadHeaderError, Connection, Message, sanitize_address
from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from portal.emails import Email
from portal.models import DeliveryStatus, Invitation, OutboxMessage, utcnow

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
) -> OutboxMessage:
    """Add a message to the outbox; it is sent only if this transaction commits.

    The MIME message is built here, once, so that delivery is only SMTP.
    """
    host = urlsplit(base_url).hostname or "portal.invalid"
    message = OutboxMessage(
        kind=kind,
        to_address=to,
        subject=email.subject,
        text_body=email.text,
        html_body=email.html,
        message_id=f"<{uuid.uuid4()}@{host}>",
        invitation=invitation,
        customer_id=customer_id,
        next_attempt_at=utcnow(),
    )
    message.mime = _mail_message(current_app.config["MAIL_DEFAULT_SENDER"], message).as_bytes()
    session.add(message)
    return message


def cancel_pending(session: Session, invitation_id: str) -> None:
    """Withdraw unsent messages of an invitation and drop the bodies of all of them."""
    session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.invitation_id == invitation_id,
            OutboxMessage.status.in_([DeliveryStatus.QUEUED, DeliveryStatus.FAILED]),
        )
        .values(status=DeliveryStatus.CANCELLED, claimed_until=None)
    )
    session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.invitation_id == invitation_id,
            OutboxMessage.status != DeliveryStatus.SENDING,
        )
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


# --- sending ----------------------------------------------------------------------------------


class VerifiedConnection(Connection):
    """Flask-Mail's connection with a timeout and certificate-verifying TLS."""

    def __init__(self, mail: Any, timeout: float) -> None:
        super().__init__(mail)
        self.timeout = timeout

    def configure_host(self) -> smtplib.SMTP:
        mail = self.mail
        context = ssl.create_default_context()
        host: smtplib.SMTP
        if mail.use_ssl:
            host = smtplib.SMTP_SSL(mail.server, mail.port, timeout=self.timeout, context=context)
        else:
            host = smtplib.SMTP(mail.server, mail.port, timeout=self.timeout)
        try:
            if mail.use_tls:
                host.starttls(context=context)
            if mail.username and mail.password:
                host.login(mail.username, mail.password)
        except BaseException:
            host.close()
            raise
        return host


@dataclass
class Report:
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def attempted(self) -> int:
        return self.sent + self.retrying + self.failed


def _due(now: datetime) -> Any:
    return or_(
        and_(OutboxMessage.status == DeliveryStatus.QUEUED, OutboxMessage.next_attempt_at <= now),
        # A sender that died mid-send leaves its claim; it lapses after the lease.
        and_(OutboxMessage.status == DeliveryStatus.SENDING, OutboxMessage.claimed_until < now),
    )


def claim(session: Session, limit: int, now: datetime | None = None) -> list[OutboxMessage]:
    """Take up to ``limit`` due messages for this sender in one statement; commits the claim.

    The UPDATE repeats the due test, so of two senders only one can claim a message; on
    PostgreSQL, ``SKIP LOCKED`` lets them take different messages instead of waiting.
    """
    now = now or utcnow()
    due = (
        select(OutboxMessage.id)
        .where(_due(now))
        .order_by(OutboxMessage.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    claimed = list(
        session.scalars(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(due.scalar_subquery()), _due(now))
            .values(
                status=DeliveryStatus.SENDING,
                claimed_until=now + CLAIM_LEASE,
                attempts=OutboxMessage.attempts + 1,
            )
            .returning(OutboxMessage.id)
            .execution_options(synchronize_session=False)
        )
    )
    session.commit()
    if not claimed:
        return []
    rows = list(
        session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.id.in_(claimed))
            .order_by(OutboxMessage.next_attempt_at)
            .execution_options(populate_existing=True)
        )
    )
    # End the read at once: no transaction (on SQLite, no write lock) stays open while SMTP talks.
    session.commit()
    return rows


def _backoff(attempts: int, base: float, cap: float) -> timedelta:
    return timedelta(seconds=min(base * 2 ** max(attempts - 1, 0), cap))


def _finish(
    session: Session,
    message: OutboxMessage,
    error: str,
    config: Any,
    permanent: bool = False,
) -> str:
    """Record a failed attempt; returns ``retrying`` or ``failed``."""
    now = utcnow()
    values: dict[str, Any]
    if permanent or message.attempts >= int(config["MAIL_MAX_ATTEMPTS"]):
        values = {
            "status": DeliveryStatus.FAILED,
            "claimed_until": None,
            "last_error": error[:2000],
        }
        outcome = "failed"
    else:
        delay = _backoff(
            message.attempts,
            float(config["MAIL_RETRY_BASE_SECONDS"]),
            float(config["MAIL_RETRY_MAX_SECONDS"]),
        )
        values = {
            "status": DeliveryStatus.QUEUED,
            "claimed_until": None,
            "next_attempt_at": now + delay,
            "last_error": error[:2000],
        }
        outcome = "retrying"
    session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message.id, OutboxMessage.status == DeliveryStatus.SENDING)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return outcome


#: Sent messages are recorded in groups this big: a sender that dies mid-pass may send up to this
#: many again after their claim lapses (with the same Message-ID, so receivers can drop them).
SENT_GROUP = 20
_SMTP_POLICY = compat32.clone(linesep="\r\n")


class _Mail(Message):
    """Flask-Mail's message, serialised with the plain email policy: the same MIME structure,
    several times cheaper than Flask-Mail's header re-parsing."""

    def as_bytes(self) -> bytes:
        return self._message().as_bytes(policy=_SMTP_POLICY)


def _mail_message(sender: str, message: OutboxMessage) -> Message:
    mail = _Mail(
        subject=message.subject,
        recipients=[message.to_address],
        body=message.text_body,
        html=message.html_body or None,
        sender=sender,
    )
    mail.msgId = message.message_id  # the same on every attempt
    return mail


def _send(connection: VerifiedConnection, app: Flask, message: OutboxMessage) -> None:
    """Send the message built at queue time over Flask-Mail's connection (or build it now, for
    a message queued without one)."""
    mail = _mail_message(app.config["MAIL_DEFAULT_SENDER"], message)
    if message.mime is None:
        connection.send(mail)
        return
    if mail.has_bad_headers():
        raise BadHeaderError()
    assert connection.host is not None  # noqa: S101 - configured before the loop
    connection.host.sendmail(sanitize_address(mail.sender), [message.to_address], message.mime)


def _mark_sent(session: Session, ids: list[str]) -> None:
    """Record accepted messages as sent, and drop their bodies (they may hold a password)."""
    if not ids:
        return
    session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(ids), OutboxMessage.status == DeliveryStatus.SENDING)
        .values(
            status=DeliveryStatus.SENT,
            sent_at=utcnow(),
            claimed_until=None,
            last_error="",
            text_body="",
            html_body="",
            mime=None,
        )
        .execution_options(synchronize_session=False)
    )
    session.commit()
    ids.clear()


def _permanent(exc: smtplib.SMTPException) -> bool:
    """A 5xx answer will not change on retry; a 4xx may."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
    else:
        codes = [getattr(exc, "smtp_code", 0)]
    return bool(codes) and all(500 <= code < 600 for code in codes)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def deliver_due(app: Flask, session: Session, batch: int = 100) -> Report:
    """One pass: claim what is due and send it over one SMTP connection. Never raises for SMTP
    trouble; each message's outcome is recorded. With no SMTP server configured, does nothing."""
    report = Report()
    if not app.config.get("MAIL_SERVER"):
        return report
    messages = claim(session, batch)
    if not messages:
        return report
    mail_state = app.extensions["mail"]
    connection = VerifiedConnection(mail_state, float(app.config["MAIL_TIMEOUT"]))
    remaining = list(messages)
    sent: list[str] = []
    try:
        connection.host = connection.configure_host()
        while remaining:
            message = remaining[0]
            try:
                _send(connection, app, message)
            except (
                smtplib.SMTPRecipientsRefused,
                smtplib.SMTPDataError,
                smtplib.SMTPSenderRefused,
            ) as exc:
                # This message was refused; the connection is still good for the next.
                remaining.pop(0)
                _mark_sent(session, sent)
                outcome = _finish(session, message, _describe(exc), app.config, _permanent(exc))
                _count(report, outcome, exc)
                continue
            except BadHeaderError as exc:
                # Addresses are checked at the edge; a message that still fails this never will.
                remaining.pop(0)
                _mark_sent(session, sent)
                _count(report, _finish(session, message, "bad header", app.config, True), exc)
                continue
            remaining.pop(0)
            sent.append(message.id)
            report.sent += 1
            if len(sent) >= SENT_GROUP:
                _mark_sent(session, sent)
    except (OSError, smtplib.SMTPException) as exc:
        # The connection failed: what was not accepted yet goes back to the queue.
        _mark_sent(session, sent)
        for message in remaining:
            _count(report, _finish(session, message, _describe(exc), app.config), exc)
    finally:
        _mark_sent(session, sent)
        _quietly_quit(connection)
    return report


def _count(report: Report, outcome: str, exc: BaseException | None) -> None:
    setattr(report, outcome, getattr(report, outcome) + 1)
    if exc is not None:
        report.errors.append(_describe(exc))


def _quietly_quit(connection: VerifiedConnection) -> None:
    host = connection.host
    if host is None:
        return
    try:
        host.quit()
    except (OSError, smtplib.SMTPException):
        # Everything sent so far was accepted; a server that drops the line at QUIT loses nothing.
        try:
            host.close()
        except OSError:
            pass
