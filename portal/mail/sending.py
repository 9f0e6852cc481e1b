"""Sending what the outbox holds: claim a batch, send it over one SMTP connection (a timeout,
TLS that verifies the server), and record each outcome. A message the SMTP server accepted counts
as sent even if the connection drops afterwards; the records of what was sent are written from a
thread of their own while messages go out; a failure is retried with backoff, a permanent one
(5xx) or the last attempt marks the message failed.
"""

from __future__ import annotations

import smtplib
import ssl
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, NamedTuple

from flask import Flask
from flask_mail import BadHeaderError, Connection, Message
from sqlalchemy import update
from sqlalchemy.orm import Session

from portal.core import db
from portal.core.models import DeliveryStatus, OutboxMessage, utcnow
from portal.mail import mime
from portal.mail.outbox import claim


class VerifiedConnection(Connection):
    """Flask-Mail's connection with a timeout and certificate-verifying TLS."""

    def __init__(self, mail: Any, timeout: float) -> None:
        super().__init__(mail)
        self.timeout = timeout

    def configure_host(self) -> smtplib.SMTP:
        mail = self.mail
        host: smtplib.SMTP
        # A TLS context only for TLS: loading the system's certificates takes tens of ms.
        if mail.use_ssl:
            context = ssl.create_default_context()
            host = smtplib.SMTP_SSL(mail.server, mail.port, timeout=self.timeout, context=context)
        else:
            host = smtplib.SMTP(mail.server, mail.port, timeout=self.timeout)
        try:
            if mail.use_tls:
                host.starttls(context=ssl.create_default_context())
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


def _backoff(attempts: int, base: float, cap: float) -> timedelta:
    return timedelta(seconds=min(base * 2 ** max(attempts - 1, 0), cap))


#: ``app.extensions`` key: what is told of messages sent or given up on, in the transaction that
#: records it: each is called with the session, the messages (``Outcome``) and None (sent) or
#: the error (failed). ``create_app`` fills it (webhooks about invitations).
OUTCOMES = "portal.delivery_outcomes"


class Outcome(NamedTuple):
    id: str
    kind: str
    invitation_id: str | None
    customer_id: str | None
    partner_id: str | None


OutcomeHook = Callable[[Session, list[Outcome], str | None], None]


def _outcome(message: OutboxMessage) -> Outcome:
    return Outcome(
        message.id, message.kind, message.invitation_id, message.customer_id, message.partner_id
    )


def _finish(
    session: Session,
    message: OutboxMessage,
    error: str,
    config: Any,
    permanent: bool = False,
    hooks: Sequence[OutcomeHook] = (),
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
    changed = session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message.id, OutboxMessage.status == DeliveryStatus.SENDING)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if outcome == "failed" and changed.rowcount:  # type: ignore[attr-defined]
        for hook in hooks:
            hook(session, [_outcome(message)], error[:500])
    session.commit()
    return outcome


#: At most this many accepted messages are not yet recorded as sent: a sender that dies mid-pass
#: may send up to this many again after their claim lapses (with the same Message-ID, so
#: receivers can drop them).
SENT_GROUP = 20


def _send(
    host: smtplib.SMTP,
    envelope_from: str,
    probe: Message,
    message: OutboxMessage,
    signer: mime.DkimSigner | None,
) -> None:
    """Send the bytes built at queue time (or build them now, for a message queued without),
    DKIM-signed when ``signer`` is given.

    Signed here, on each attempt, rather than when queued: a message waiting in the outbox is
    signed with the key of the day it leaves (a key rotated meanwhile does not strand it), and
    the signature's cost stays off the requests that queue mail. Nothing changes the bytes
    after: smtplib sends bytes as they are (its dot-stuffing is undone by the server).

    ``probe`` is a Flask-Mail message with the sender set: its header check, reused."""
    probe.recipients = [message.to_address]
    probe.subject = message.subject
    if probe.has_bad_headers():
        raise BadHeaderError()
    data = message.mime
    if data is None:
        data = mime.build(str(probe.sender), message)
    if signer is not None:
        data = signer.sign(data)
    host.sendmail(envelope_from, [message.to_address], data)


#: ``app.extensions`` key: the app's DKIM signer (None when DKIM is off), made at its first pass.
SIGNER = "portal.dkim_signer"


def signer(app: Flask) -> mime.DkimSigner | None:
    """The app's DKIM signer, its key read once per process."""
    if SIGNER not in app.extensions:
        app.extensions[SIGNER] = mime.DkimSigner.from_config(app.config)
    found: mime.DkimSigner | None = app.extensions[SIGNER]
    return found


def _mark_sent(session: Session, ids: list[str], hooks: Sequence[OutcomeHook] = ()) -> None:
    """Record accepted messages as sent, and drop their bodies (they may hold a password)."""
    if not ids:
        return
    marked = session.execute(
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
        .returning(
            OutboxMessage.id,
            OutboxMessage.kind,
            OutboxMessage.invitation_id,
            OutboxMessage.customer_id,
            OutboxMessage.partner_id,
        )
        .execution_options(synchronize_session=False)
    )
    sent = [Outcome(*row) for row in marked]
    for hook in hooks:
        hook(session, sent, None)
    session.commit()
    ids.clear()


class _Bookkeeper:
    """The database side of a pass, in a thread with a session of its own, so that SMTP does not
    wait for the database: the next batch is claimed while the current one is sent, and accepted
    messages are recorded as sent, half a ``SENT_GROUP`` at a time, while the next go out.

    Before each message, ``wait_for_room`` holds the sender while a whole ``SENT_GROUP`` is
    accepted and unrecorded. What goes wrong in the thread (a database error) is raised in the
    sender's, by ``wait_for_room``, ``next_batch`` or ``close``.
    """

    def __init__(self, session: Session, batch: int, hooks: Sequence[OutcomeHook] = ()) -> None:
        self._session = session
        self._batch = batch
        self._hooks = hooks
        self._changed = threading.Condition()
        self._waiting: list[str] = []
        self._unrecorded = 0
        self._claim_wanted = False
        self._claimed: list[OutboxMessage] | None = None
        self._closing = False
        self._error: Exception | None = None
        self._raised = False
        self._thread = threading.Thread(target=self._run, name="outbox-bookkeeper", daemon=True)
        self._thread.start()

    def claim_next(self) -> None:
        """Start claiming the next batch; ``next_batch`` returns it."""
        with self._changed:
            self._claim_wanted = True
            self._changed.notify_all()

    def next_batch(self) -> list[OutboxMessage]:
        with self._changed:
            while self._claimed is None and self._error is None:
                self._changed.wait()
            self._raise_error()
            claimed, self._claimed = self._claimed or [], None
            return claimed

    def wait_for_room(self) -> None:
        with self._changed:
            while self._unrecorded >= SENT_GROUP and self._error is None:
                self._changed.wait()
            self._raise_error()

    def add(self, message_id: str) -> None:
        """Record an accepted message as sent (soon)."""
        with self._changed:
            self._waiting.append(message_id)
            self._unrecorded += 1
            self._changed.notify_all()

    def close(self) -> None:
        """Record the rest and end the thread (a claim asked for is finished first)."""
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        self._thread.join()
        self._session.close()
        if not self._raised:
            self._raise_error()

    def _raise_error(self) -> None:
        if self._error is not None:
            self._raised = True
            raise self._error

    def _run(self) -> None:
        while True:
            with self._changed:
                while not (
                    self._closing or self._claim_wanted or len(self._waiting) >= SENT_GROUP // 2
                ):
                    self._changed.wait()
                ids, self._waiting = self._waiting, []
                wanted, self._claim_wanted = self._claim_wanted, False
            if not ids and not wanted:
                return  # closing, and nothing left to do
            try:
                recorded = len(ids)
                _mark_sent(self._session, ids, self._hooks)
                claimed = claim(self._session, self._batch) if wanted else None
                # Handed to the sending thread: no longer this session's to refresh.
                self._session.expunge_all()
            except Exception as exc:  # raised in the sending thread
                with self._changed:
                    self._error = exc
                    self._changed.notify_all()
                return
            with self._changed:
                self._unrecorded -= recorded
                if wanted:
                    self._claimed = claimed
                self._changed.notify_all()


def _permanent(exc: smtplib.SMTPException) -> bool:
    """A 5xx answer will not change on retry; a 4xx may."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
    else:
        codes = [getattr(exc, "smtp_code", 0)]
    return bool(codes) and all(500 <= code < 600 for code in codes)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def deliver_due(
    app: Flask,
    session: Session,
    batch: int = 100,
    stop: Callable[[], bool] | None = None,
) -> Report:
    """One pass: claim due messages ``batch`` at a time and send them over one SMTP connection,
    until a claim comes back short (nothing more is due) or ``stop()`` is true when the next
    batch would be claimed (at the start of each batch, while it is sent).

    Never raises for SMTP trouble; each message's outcome is recorded, and a connection that
    fails ends the pass. With no SMTP server configured, does nothing.
    """
    report = Report()
    if not app.config.get("MAIL_SERVER"):
        return report
    messages = claim(session, batch)
    if not messages:
        return report
    sender = app.config["MAIL_DEFAULT_SENDER"]
    envelope_from = mime.address(sender)
    probe = Message(sender=sender)
    signs = signer(app)
    connection = VerifiedConnection(app.extensions["mail"], float(app.config["MAIL_TIMEOUT"]))
    hooks: list[OutcomeHook] = app.extensions.get(OUTCOMES, [])
    keeper = _Bookkeeper(db.new_session(app), batch, hooks)
    remaining = messages[::-1]  # the oldest last: sent first, popped from the end
    more = False  # the next batch is being claimed
    try:
        connection.host = connection.configure_host()
        while remaining:
            if len(remaining) == len(messages) == batch and not (stop is not None and stop()):
                # A full batch: more may be due. Claimed while this one is sent.
                keeper.claim_next()
                more = True
            message = remaining[-1]
            keeper.wait_for_room()
            try:
                _send(connection.host, envelope_from, probe, message, signs)
            except (
                smtplib.SMTPRecipientsRefused,
                smtplib.SMTPDataError,
                smtplib.SMTPSenderRefused,
            ) as exc:
                # This message was refused; the connection is still good for the next.
                remaining.pop()
                outcome = _finish(
                    session, message, _describe(exc), app.config, _permanent(exc), hooks
                )
                _count(report, outcome, exc)
            except BadHeaderError as exc:
                # Addresses are checked at the edge; a message that still fails this never will.
                remaining.pop()
                _count(
                    report, _finish(session, message, "bad header", app.config, True, hooks), exc
                )
            except mime.SigningError as exc:
                remaining.pop()
                outcome = _finish(session, message, f"DKIM: {exc}", app.config, True, hooks)
                _count(report, outcome, exc)
            else:
                remaining.pop()
                keeper.add(message.id)
                report.sent += 1
            if not remaining and more:
                # Over the same connection.
                messages, more = keeper.next_batch(), False
                remaining = messages[::-1]
    except (OSError, smtplib.SMTPException) as exc:
        # The connection failed: what was not accepted yet goes back to the queue, the batch
        # claimed meanwhile too.
        if more:
            remaining[:0] = keeper.next_batch()[::-1]
        for message in reversed(remaining):
            _count(report, _finish(session, message, _describe(exc), app.config, False, hooks), exc)
    finally:
        _quietly_quit(connection)
        keeper.close()
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
