"""Delivery through SMTP servers that fail: nothing is lost, nothing is sent twice."""

from __future__ import annotations

import email
import email.policy
import os
import subprocess
import sys
import time
from datetime import timedelta

import flask_mail
import pytest
import time_machine
from sqlalchemy import select

from portal.core import db
from portal.core.models import Customer, DeliveryStatus, Invitation, OutboxMessage, utcnow
from portal.mail import mime, outbox, sending
from tests.mailservers import closed_port, silent_server, smtp_server


def queue_invitations(api, count: int = 1) -> list[str]:
    ids = []
    for _ in range(count):
        customer = api.create_customer()
        response = api.post(f"/v1/customers/{customer['id']}/invitations", json={"send": True})
        assert response.status_code == 201
        ids.append(response.get_json()["id"])
    return ids


def messages(app) -> list[OutboxMessage]:
    with app.app_context():
        return list(db.session().scalars(select(OutboxMessage).order_by(OutboxMessage.created_at)))


def deliver(app):
    with app.app_context():
        return sending.deliver_due(app, db.session())


def later(minutes: float):
    return time_machine.travel(utcnow() + timedelta(minutes=minutes), tick=True)


def test_no_smtp_configured_keeps_mail_in_the_outbox(app, api, runner):
    queue_invitations(api)
    report = deliver(app)
    assert report.attempted == 0
    [message] = messages(app)
    assert message.status is DeliveryStatus.QUEUED
    assert message.attempts == 0
    shown = runner.invoke(__import__("portal.cli", fromlist=["main"]).main, ["mail", "outbox"])
    assert shown.exit_code == 0
    assert "Temporary password:" in shown.output
    assert message.to_address in shown.output


def test_refused_connection_loses_nothing_and_a_later_pass_sends_once(make_app, api):
    app = make_app(MAIL_SERVER="127.0.0.1", MAIL_PORT=closed_port(), MAIL_TIMEOUT=2)
    queue_invitations(api, 2)
    report = deliver(app)
    assert (report.sent, report.retrying) == (0, 2)
    for message in messages(app):
        assert message.status is DeliveryStatus.QUEUED
        assert message.attempts == 1
        assert "Connection refused" in message.last_error or "Errno 111" in message.last_error
        assert message.text_body  # kept for the retry
    with app.app_context():
        assert db.session().query(Customer).count() == 2
        assert db.session().query(Invitation).count() == 2

    assert deliver(app).attempted == 0  # not due yet: backoff
    with smtp_server() as server:
        retry_app = make_app(MAIL_SERVER=server.host, MAIL_PORT=server.port, MAIL_TIMEOUT=2)
        with later(2):
            assert deliver(retry_app).sent == 2
            assert deliver(retry_app).attempted == 0
        assert len(server.inbox.received) == 2
    assert {m.status for m in messages(app)} == {DeliveryStatus.SENT}


def test_silent_server_times_out_without_slowing_requests(make_app, api):
    with silent_server() as port:
        app = make_app(MAIL_SERVER="127.0.0.1", MAIL_PORT=port, MAIL_TIMEOUT=1)
        started = time.monotonic()
        queue_invitations(api)  # the request does not talk to SMTP at all
        assert time.monotonic() - started < 1
        started = time.monotonic()
        report = deliver(app)
        assert time.monotonic() - started < 5
    assert report.retrying == 1
    [message] = messages(app)
    assert message.status is DeliveryStatus.QUEUED
    assert "timed out" in message.last_error.lower() or "timeout" in message.last_error.lower()


def test_server_that_drops_the_line_at_quit_sends_once(make_app, api):
    queue_invitations(api, 3)
    with smtp_server(drop_at_quit=True) as server:
        app = make_app(MAIL_SERVER=server.host, MAIL_PORT=server.port, MAIL_TIMEOUT=2)
        report = deliver(app)
        assert report.sent == 3
        with later(120):
            assert deliver(app).attempted == 0
        assert len(server.inbox.received) == 3
    assert {m.status for m in messages(app)} == {DeliveryStatus.SENT}


def test_gives_up_after_the_last_attempt_and_shows_it(make_app, api):
    app = make_app(
        MAIL_SERVER="127.0.0.1", MAIL_PORT=closed_port(), MAIL_TIMEOUT=1, MAIL_MAX_ATTEMPTS=3
    )
    customer = api.create_customer()
    made = api.post(f"/v1/customers/{customer['id']}/invitations", json={"send": True}).get_json()
    minutes = 0.0
    for _ in range(3):
        with later(minutes):
            deliver(app)
        minutes += 120
    [message] = messages(app)
    assert message.status is DeliveryStatus.FAILED
    assert message.attempts == 3
    listed = api.get(f"/v1/customers/{customer['id']}/invitations").get_json()["items"][0]
    assert listed["status"] == "failed"
    assert listed["messages"][0]["lastError"]
    # The partner may ask again; that sends a new message.
    assert (
        api.post(f"/v1/customers/{customer['id']}/invitations/{made['id']}/resend").status_code
        == 202
    )


def test_refused_recipient_fails_alone_and_the_rest_are_sent(make_app, api):
    queue_invitations(api, 2)
    customer = api.create_customer()
    api.post(
        f"/v1/customers/{customer['id']}/invitations",
        json={"send": True, "to": "nobody@example.test"},
    )
    with smtp_server() as server:
        server.inbox.refuse.add("nobody@example.test")
        app = make_app(MAIL_SERVER=server.host, MAIL_PORT=server.port, MAIL_TIMEOUT=2)
        report = deliver(app)
        assert (report.sent, report.failed) == (2, 1)
        assert len(server.inbox.received) == 2
    refused = next(m for m in messages(app) if m.to_address == "nobody@example.test")
    assert refused.status is DeliveryStatus.FAILED  # 5xx is permanent: no pointless retries
    assert "550" in refused.last_error


def test_nothing_is_sent_for_a_write_that_rolled_back(make_app, api, monkeypatch):
    from sqlalchemy.exc import OperationalError
    from sqlalchemy.orm import Session

    customer = api.create_customer()
    real_commit = Session.commit

    def failing_commit(self):
        raise OperationalError("COMMIT", {}, Exception("connection lost"))

    monkeypatch.setattr(Session, "commit", failing_commit)
    response = api.post(f"/v1/customers/{customer['id']}/invitations", json={"send": True})
    assert response.status_code == 503
    monkeypatch.setattr(Session, "commit", real_commit)
    with smtp_server() as server:
        app = make_app(MAIL_SERVER=server.host, MAIL_PORT=server.port)
        assert deliver(app).attempted == 0
        assert server.inbox.received == []
    assert messages(app) == []


def test_two_concurrent_senders_deliver_each_message_once(api, cli_env):
    queue_invitations(api, 60)
    with smtp_server() as server:
        env = {
            **os.environ,
            **cli_env,
            "PORTAL_MAIL_SERVER": server.host,
            "PORTAL_MAIL_PORT": str(server.port),
        }
        command = [sys.executable, "-m", "portal.cli", "mail", "send", "--batch", "5"]
        senders = [
            subprocess.Popen(
                command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            for _ in range(2)
        ]
        outputs = [s.communicate(timeout=120)[0] for s in senders]
        assert [s.returncode for s in senders] == [0, 0], outputs
        ids = [r.message["Message-ID"] for r in server.inbox.received]
    assert len(ids) == 60
    assert len(set(ids)) == 60
    sent = [int(o.split("sent ")[1].split(",")[0]) for o in outputs]
    assert sum(sent) == 60


@pytest.mark.slow
def test_a_slow_smtp_server_does_not_hold_the_database(make_app, api):
    """While a sender waits on SMTP, other requests can write (SQLite has one write lock)."""
    import threading

    queue_invitations(api, 1)
    with silent_server() as port:
        app = make_app(MAIL_SERVER="127.0.0.1", MAIL_PORT=port, MAIL_TIMEOUT=3)
        sender = threading.Thread(target=deliver, args=(app,))
        sender.start()
        time.sleep(0.5)  # the sender has claimed and is waiting for the SMTP greeting
        started = time.monotonic()
        api.create_customer()
        assert time.monotonic() - started < 1.5
        sender.join(10)


# --- one pass, many batches -------------------------------------------------------------------


def test_a_pass_sends_batch_after_batch_over_one_connection(make_app, api, monkeypatch):
    queue_invitations(api, 7)
    connections = []
    connect = sending.VerifiedConnection.configure_host

    def counted(self):
        connections.append(self)
        return connect(self)

    monkeypatch.setattr(sending.VerifiedConnection, "configure_host", counted)
    with smtp_server() as server:
        app = make_app(MAIL_SERVER=server.host, MAIL_PORT=server.port, MAIL_TIMEOUT=2)
        with app.app_context():
            report = sending.deliver_due(app, db.session(), batch=3)
        assert (report.sent, report.attempted) == (7, 7)
        assert len(connections) == 1
        ids = [r.message["Message-ID"] for r in server.inbox.received]
    assert sorted(ids) == sorted(m.message_id for m in messages(app))
    for message in messages(app):
        assert message.status is DeliveryStatus.SENT
        assert (message.attempts, message.text_body, message.mime) == (1, "", None)


def test_a_stop_request_ends_the_pass_between_batches(make_app, api):
    queue_invitations(api, 5)
    with smtp_server() as server:
        app = make_app(MAIL_SERVER=server.host, MAIL_PORT=server.port, MAIL_TIMEOUT=2)
        with app.app_context():
            report = sending.deliver_due(app, db.session(), batch=2, stop=lambda: True)
        assert report.sent == 2
        assert len(server.inbox.received) == 2
    left = [m for m in messages(app) if m.status is not DeliveryStatus.SENT]
    assert len(left) == 3
    # Never claimed: the next pass sends them at once.
    assert {(m.status, m.attempts) for m in left} == {(DeliveryStatus.QUEUED, 0)}


def test_a_claim_takes_no_more_than_its_limit(app, api):
    queue_invitations(api, 5)
    with app.app_context():
        session = db.session()
        assert len(outbox.claim(session, 2)) == 2
        assert len(outbox.claim(session, 2)) == 2
        assert len(outbox.claim(session, 2)) == 1
        assert outbox.claim(session, 2) == []


def test_claim_returns_the_claimed_rows_fresh_oldest_first(app, api):
    queue_invitations(api, 3)
    with app.app_context():
        session = db.session()
        loaded = list(session.scalars(select(OutboxMessage)))  # queued, 0 attempts
        session.commit()
        claimed = outbox.claim(session, 10)
    assert {m.id for m in claimed} == {m.id for m in loaded}
    assert [m.next_attempt_at for m in claimed] == sorted(m.next_attempt_at for m in claimed)
    for message in claimed:
        assert message.status is DeliveryStatus.SENDING
        assert message.attempts == 1
        assert message.claimed_until is not None
        assert message.mime


def test_when_recording_fails_at_most_a_group_is_sent_and_nothing_is_lost(
    make_app, api, monkeypatch
):
    from sqlalchemy.exc import OperationalError

    count = sending.SENT_GROUP + 5
    queue_invitations(api, count)

    def broken(session, ids, hooks=()):
        raise OperationalError("UPDATE outbox", {}, Exception("disk I/O error"))

    with smtp_server() as server:
        app = make_app(MAIL_SERVER=server.host, MAIL_PORT=server.port, MAIL_TIMEOUT=2)
        with monkeypatch.context() as patched:
            patched.setattr(sending, "_mark_sent", broken)
            with pytest.raises(OperationalError):
                deliver(app)
        sent_unrecorded = len(server.inbox.received)
        assert 0 < sent_unrecorded <= sending.SENT_GROUP
        # All still claimed; after the lease, the next pass sends every one (again, for those
        # whose sending was not recorded, with the same Message-ID).
        assert {m.status for m in messages(app)} == {DeliveryStatus.SENDING}
        with later(outbox.CLAIM_LEASE.total_seconds() / 60 + 1):
            assert deliver(app).sent == count
        ids = {r.message["Message-ID"] for r in server.inbox.received}
        assert len(server.inbox.received) == count + sent_unrecorded
    assert ids == {m.message_id for m in messages(app)}
    assert {m.status for m in messages(app)} == {DeliveryStatus.SENT}


def test_a_message_queued_without_its_mime_bytes_is_built_when_sent(make_app, api):
    from sqlalchemy import update

    queue_invitations(api, 1)
    [queued] = messages(app := make_app())
    with app.app_context():
        db.session().execute(update(OutboxMessage).values(mime=None))
        db.session().commit()
    with smtp_server() as server:
        sender = make_app(MAIL_SERVER=server.host, MAIL_PORT=server.port, MAIL_TIMEOUT=2)
        assert deliver(sender).sent == 1
        [received] = server.inbox.received
    assert received.message.get_all("Message-ID") == [queued.message_id]
    text = received.message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert text.strip() == queued.text_body.strip()


# --- the MIME bytes ---------------------------------------------------------------------------


def shape(raw: bytes) -> list[tuple[str, str | None, str | None]]:
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    return [
        (part.get_content_type(), part.get_content_charset(), part["Content-Transfer-Encoding"])
        for part in parsed.walk()
    ]


@pytest.mark.parametrize("html", ["<p>Hallo Ana, Ihr Kennwort: <b>x&lt;y</b></p>", ""])
def test_built_message_is_flask_mails_alternatives_with_the_outbox_message_id(app, html):
    message = OutboxMessage(
        to_address="ana@example.test",
        subject="Fabrikam bittet Contoso GmbH, die Microsoft-Kundenvereinbarung zu akzeptieren",
        text_body="Hallo Ana,\n\nÖffnen Sie den Link.\n.\nFrom here on\n",
        html_body=html,
        message_id="<1b4e28ba-2fa1-11d2-883f-0016d3cca427@portal.example.test>",
    )
    sender = "Portal Ü <portal@example.test>"
    with app.app_context():
        ours = mime.build(sender, message)
        flask_mails = flask_mail.Message(
            subject=message.subject,
            recipients=[message.to_address],
            body=message.text_body,
            html=html or None,
            sender=sender,
        )
        flask_mails.msgId = message.message_id
        # As the outbox serialised Flask-Mail's message before (its own as_bytes re-parses the
        # headers and puts a space before a folded subject).
        theirs = flask_mails._message().as_bytes(policy=email.policy.compat32.clone(linesep="\r\n"))
    expected = shape(theirs)
    if html:
        # Flask-Mail wraps the alternatives in a multipart/mixed that holds nothing else.
        assert expected[0][0] == "multipart/mixed"
        expected = expected[1:]
    assert shape(ours) == expected
    mine = email.message_from_bytes(ours, policy=email.policy.default)
    reference = email.message_from_bytes(theirs, policy=email.policy.default)
    for header in ("Subject", "From", "To", "Message-ID"):
        assert mine[header] == reference[header]
    assert mine.get_all("Message-ID") == [message.message_id]
    for kind in ("plain", "html"):
        ours_part, their_part = mine.get_body((kind,)), reference.get_body((kind,))
        assert (ours_part is None) == (their_part is None)
        if ours_part is not None and their_part is not None:
            assert ours_part.get_content() == their_part.get_content()
    assert b"\r\n" in ours
    assert b"\n" not in ours.replace(b"\r\n", b"")


@pytest.mark.parametrize(
    "value",
    [
        "",
        "short",
        "  spaces  around and   inside  ",
        "tab\tinside",
        "x" * 69,
        "x" * 70,
        "x" * 71,
        "word " * 40,
        "y" * 200,
        "Grüße aus Köln",
        "=?utf-8?q?already_encoded?=",
        "<1b4e28ba-2fa1-11d2-883f-0016d3cca427@portal.example.test>",
        'multipart/alternative;\n boundary="===============1234=="',
    ],
)
def test_headers_are_written_exactly_as_compat32_folds_them(value):
    plain = email.policy.compat32.clone(linesep="\r\n")
    for name in ("Subject", "To", "Content-Type"):
        assert mime._SMTP_POLICY.fold_binary(name, value) == plain.fold_binary(name, value)
