"""Invitations over the API: the email, the link and the credentials, delivered for real."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
import time_machine
from sqlalchemy import func, select

from portal.core import credentials, db
from portal.core.models import Customer, CustomerCredential, Invitation, OutboxMessage
from portal.mail import sending
from tests.test_api_customers import statements


def invite(api, customer_id, **body):
    response = api.post(f"/v1/customers/{customer_id}/invitations", json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def deliver(app):
    with app.app_context():
        return sending.deliver_due(app, db.session())


def path_of(url: str) -> str:
    return urlsplit(url).path


def password_works(app, customer_id: str, password: str) -> bool:
    with app.app_context():
        session = db.session()
        stored = session.scalars(
            select(CustomerCredential.password_hash).where(
                CustomerCredential.customer_id == customer_id
            )
        ).one()
        return credentials.verify_password(stored, password, app.extensions["portal.peppers"])


class LinkCollector(HTMLParser):
    """A real HTML parser: collects links, images, scripts and the text."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.sources: list[str] = []
        self.scripts = 0
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "a":
            self.links.append(attributes.get("href", ""))
        if tag in {"img", "link", "iframe", "object", "embed", "video", "audio", "source"}:
            self.sources.append(attributes.get("src") or attributes.get("href") or "")
        if tag == "script":
            self.scripts += 1
        if any(name.startswith("on") for name in attributes):
            self.scripts += 1

    def handle_data(self, data):
        self.text.append(data)


def parse_html(html: str) -> LinkCollector:
    collector = LinkCollector()
    collector.feed(html)
    collector.close()
    return collector


# --- creating ---------------------------------------------------------------------------------


def test_invitation_response_is_the_email_with_fresh_credentials(app, api):
    customer = api.create_customer(company_name="Contoso Ltd")
    made = invite(api, customer["id"])
    assert set(made) >= {
        "id",
        "url",
        "expiresAt",
        "userName",
        "password",
        "subject",
        "textBody",
        "htmlBody",
        "language",
        "status",
    }
    assert made["status"] == "created"  # not sent: the partner copies it
    assert made["url"].startswith("https://portal.example.test/invite/")
    assert made["userName"] == customer["userCredentials"]["userName"]
    assert made["password"] != customer["userCredentials"]["password"]
    assert made["password"] in made["textBody"]
    assert made["url"] in made["textBody"]
    assert "Fabrikam" in made["textBody"]
    assert "Contoso Ltd" in made["subject"]
    expires = datetime.fromisoformat(made["expiresAt"])
    assert timedelta(days=29, hours=23) < expires - datetime.now(UTC) <= timedelta(days=30)
    # The new password works, the one from customer creation does not.
    assert password_works(app, customer["id"], made["password"])
    assert not password_works(app, customer["id"], customer["userCredentials"]["password"])


def test_not_sent_unless_asked(app, api):
    customer = api.create_customer()
    invite(api, customer["id"])
    with app.app_context():
        assert db.session().scalar(select(func.count()).select_from(OutboxMessage)) == 0


def test_without_credentials_the_password_stays_out_of_the_email(api):
    customer = api.create_customer()
    made = invite(api, customer["id"], includeCredentials=False)
    assert made["password"]
    assert made["password"] not in made["textBody"]
    assert made["password"] not in made["htmlBody"]
    assert made["userName"] in made["textBody"]
    assert "separately" in made["textBody"]


def test_password_is_shown_once(api):
    customer = api.create_customer()
    made = invite(api, customer["id"])
    listed = api.get(f"/v1/customers/{customer['id']}/invitations").get_json()
    assert made["password"] not in str(listed)
    one = api.get(f"/v1/customers/{customer['id']}/invitations/{made['id']}").get_json()
    assert made["password"] not in str(one)
    assert one["url"] == made["url"]


def test_link_carries_only_ids_and_a_nonce(app, api):
    import base64
    import json

    customer = api.create_customer()
    made = invite(api, customer["id"])
    token = path_of(made["url"]).rsplit("/", 1)[1]
    payload = token.split(".")[0]
    decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    with app.app_context():
        invitation = db.session().get(Invitation, made["id"])
        assert decoded == [invitation.id, invitation.nonce]
    for secret in (
        made["password"],
        made["userName"],
        customer["billingProfile"]["email"],
        "Contoso",
    ):
        assert secret not in str(decoded)


def test_invitation_loads_the_customer_with_its_credentials_and_checks_in_one_statement(app, api):
    customer = api.create_customer()
    with statements(app) as ran:
        made = invite(api, customer["id"], send=True)
    selects = [s for s in ran if s.startswith("SELECT")]
    [load] = [s for s in selects if s.startswith("SELECT customers.")]
    assert "JOIN customer_credentials" in load
    assert not [s for s in selects if s.startswith("SELECT customer_credentials.")]
    # Accepted already? An invitation to replace? One statement asks both.
    [checks] = [s for s in selects if "agreement_acceptances" in s]
    assert "FROM invitations" in checks
    assert password_works(app, customer["id"], made["password"])


def test_invitation_reads_and_renders_without_holding_the_write_lock(app, api):
    """SQLite: the request reads (key, customer) in a transaction begun without the write lock,
    and takes the lock only to store the invitation, after the email is rendered and built."""
    with app.app_context():
        if db.engine().dialect.name != "sqlite":
            pytest.skip("SQLite's write lock")
    customer = api.create_customer()
    with statements(app) as ran:
        invite(api, customer["id"], send=True)
    begins = [i for i, s in enumerate(ran) if s.startswith("BEGIN")]
    assert [ran[i] for i in begins] == ["BEGIN", "BEGIN IMMEDIATE"]
    reads, writes = ran[begins[0] : begins[1]], ran[begins[1] :]
    assert reads
    assert all(s.startswith("SELECT") for s in reads[1:])
    assert any(s.startswith("INSERT INTO invitations") for s in writes)


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("to", "victim@example.test\r\nBcc: all@example.test", "control characters"),
        ("to", "not an address", "not an email address"),
        ("send", "yes", "true or false"),
        ("includeCredentials", 1, "true or false"),
    ],
)
def test_bad_invitation_options_are_400_naming_the_field(app, api, field, value, problem):
    customer = api.create_customer()
    response = api.post(f"/v1/customers/{customer['id']}/invitations", json={field: value})
    assert response.status_code == 400
    assert problem in response.get_json()["parameters"][field]
    with app.app_context():
        assert db.session().scalar(select(func.count()).select_from(Invitation)) == 0


def test_a_language_without_translation_falls_back_to_the_customers(api):
    customer = api.create_customer(culture="en-GB", language="en")
    for language in ("ko", "sw-KE"):  # languages, but none the portal is translated into
        made = invite(api, customer["id"], language=language)
        assert made["language"] == "en"


@pytest.mark.parametrize(
    "language",
    ["en\r\nBcc: victim@example.test", "../../etc/passwd", "xx", "xx-YY", "a" * 300, "de\u0085"],
)
def test_a_language_that_is_none_is_refused_as_at_creation(app, api, language):
    customer = api.create_customer()
    response = api.post(f"/v1/customers/{customer['id']}/invitations", json={"language": language})
    assert response.status_code == 400
    error = response.get_json()
    assert error["errorName"] == "InvalidFields"
    assert set(error["parameters"]) == {"language"}
    listed = api.get(f"/v1/customers/{customer['id']}/invitations").get_json()
    assert listed["totalCount"] == 0


def test_invitation_for_foreign_customer_is_404(api, make_api):
    theirs = make_api(name="Other").create_customer()
    response = api.post(f"/v1/customers/{theirs['id']}/invitations", json={})
    assert response.status_code == 404


def test_invitation_after_acceptance_is_409(app, api):
    from tests.test_api_agreements import record_direct_acceptance

    customer = api.create_customer()
    record_direct_acceptance(app, customer["id"])
    response = api.post(f"/v1/customers/{customer['id']}/invitations", json={"send": True})
    assert response.status_code == 409
    assert "already accepted" in response.get_json()["description"]


@pytest.mark.parametrize(
    "hostile", ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "{{7*7}}"]
)
def test_hostile_names_are_literal_in_both_bodies(api, hostile):
    customer = api.create_customer(company_name=hostile, first_name=hostile)
    made = invite(api, customer["id"])
    assert hostile in made["textBody"]
    html = parse_html(made["htmlBody"])
    assert html.scripts == 0
    assert hostile in "".join(html.text)
    assert hostile not in made["htmlBody"] or hostile == "{{7*7}}"


# --- the delivered email ----------------------------------------------------------------------


@pytest.mark.mail
def test_sent_invitation_arrives_and_its_link_works(app, api, client, smtp):
    customer = api.create_customer(company_name="Contoso Ltd", first_name="Ana", last_name="Silva")
    made = invite(api, customer["id"], send=True)
    assert made["status"] == "queued"
    report = deliver(app)
    assert report.sent == 1

    [received] = smtp.inbox.received
    message = received.message
    assert received.rcpt_tos == ["billing@contoso.example.test"]
    assert message["To"] == "billing@contoso.example.test"
    assert message["Subject"] == made["subject"]
    with app.app_context():
        queued = db.session().scalars(select(OutboxMessage)).one()
        assert message.get_all("Message-ID") == [queued.message_id]  # one, and the outbox's
    # SMTP carries CRLF line ends; the text is otherwise the one the partner got.
    text = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    html = message.get_body(("html",)).get_content()
    assert text.strip() == made["textBody"].strip()
    assert "Hello Ana Silva," in text
    parsed = parse_html(html)
    assert parsed.scripts == 0
    assert parsed.sources == []  # no external images, styles or frames
    assert made["url"] in parsed.links
    assert all(link.startswith("https://portal.example.test/") for link in parsed.links)
    assert made["password"] in "".join(parsed.text)

    url = re.search(r"https://portal\.example\.test/invite/\S+", text).group(0)
    page = client.get(path_of(url))
    assert page.status_code == 200
    assert made["userName"] in page.get_data(as_text=True)

    listed = api.get(f"/v1/customers/{customer['id']}/invitations").get_json()
    assert listed["items"][0]["status"] == "sent"
    assert listed["items"][0]["messages"][0]["status"] == "sent"
    assert listed["items"][0]["messages"][0]["sentAt"]


@pytest.mark.mail
def test_to_overrides_the_primary_contact(app, api, smtp):
    customer = api.create_customer()
    invite(api, customer["id"], send=True, to="someone-else@example.test")
    deliver(app)
    assert smtp.inbox.received[0].rcpt_tos == ["someone-else@example.test"]


@pytest.mark.mail
def test_sent_body_is_dropped_from_the_outbox(app, api, smtp):
    customer = api.create_customer()
    made = invite(api, customer["id"], send=True)
    deliver(app)
    with app.app_context():
        rows = db.session().scalars(select(OutboxMessage)).all()
        assert all(made["password"] not in (r.text_body + r.html_body) for r in rows)


# --- a new invitation kills the old ones ------------------------------------------------------


@pytest.mark.mail
def test_new_invitation_kills_previous_link_and_password(app, api, client, smtp):
    customer = api.create_customer()
    first = invite(api, customer["id"], send=True)
    deliver(app)
    second = invite(api, customer["id"], send=True)
    deliver(app)
    assert len(smtp.inbox.received) == 2

    old = client.get(path_of(first["url"]))
    assert old.status_code == 410
    assert "newer invitation" in old.get_data(as_text=True)
    assert client.get(path_of(second["url"])).status_code == 200
    assert not password_works(app, customer["id"], first["password"])
    assert password_works(app, customer["id"], second["password"])
    states = {
        i["id"]: i["status"]
        for i in api.get(f"/v1/customers/{customer['id']}/invitations").get_json()["items"]
    }
    assert states == {first["id"]: "superseded", second["id"]: "sent"}


def test_new_invitation_cancels_the_unsent_one(app, api):
    customer = api.create_customer()
    invite(api, customer["id"], send=True)  # no SMTP configured: stays queued
    invite(api, customer["id"], send=True)
    with app.app_context():
        statuses = sorted(m.status.value for m in db.session().scalars(select(OutboxMessage)))
        assert statuses == ["cancelled", "queued"]


# --- resend and revoke ------------------------------------------------------------------------


@pytest.mark.mail
def test_resend_sends_the_same_email_again(app, api, smtp):
    customer = api.create_customer()
    made = invite(api, customer["id"], send=True)
    deliver(app)
    response = api.post(f"/v1/customers/{customer['id']}/invitations/{made['id']}/resend")
    assert response.status_code == 202
    deliver(app)
    assert len(smtp.inbox.received) == 2
    first, second = (r.message for r in smtp.inbox.received)
    assert first.get_body(("plain",)).get_content() == second.get_body(("plain",)).get_content()
    assert first["Message-ID"] != second["Message-ID"]


@pytest.mark.mail
def test_revoked_invitation_shows_withdrawn_and_its_password_dies(app, api, client, smtp):
    customer = api.create_customer()
    made = invite(api, customer["id"])
    response = api.client.delete(
        f"/v1/customers/{customer['id']}/invitations/{made['id']}",
        headers={"Authorization": f"Bearer {api.key}"},
    )
    assert response.status_code == 200
    assert response.get_json()["status"] == "revoked"
    page = client.get(path_of(made["url"]))
    assert page.status_code == 410
    assert "withdrawn" in page.get_data(as_text=True)
    assert "Fabrikam" in page.get_data(as_text=True)
    assert not password_works(app, customer["id"], made["password"])
    again = api.post(f"/v1/customers/{customer['id']}/invitations/{made['id']}/resend")
    assert again.status_code == 409
    deliver(app)
    assert smtp.inbox.received == []


def test_revoking_cancels_a_queued_message(app, api):
    customer = api.create_customer()
    made = invite(api, customer["id"], send=True)
    api.client.delete(
        f"/v1/customers/{customer['id']}/invitations/{made['id']}",
        headers={"Authorization": f"Bearer {api.key}"},
    )
    with app.app_context():
        message = db.session().scalars(select(OutboxMessage)).one()
        assert message.status.value == "cancelled"
        assert message.text_body == ""


def test_unknown_invitation_is_404(api):
    customer = api.create_customer()
    response = api.post(f"/v1/customers/{customer['id']}/invitations/nope/resend")
    assert response.status_code == 404
    assert response.get_json()["errorName"] == "InvitationNotFound"


# --- links: expired, tampered, wrong salt, fallbacks, scanners ---------------------------------


def test_link_is_valid_at_exactly_its_max_age_and_expired_a_second_later(app, api, client):
    customer = api.create_customer()
    start = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    with time_machine.travel(start, tick=False):
        made = invite(api, customer["id"])
    max_age = app.config["INVITATION_MAX_AGE"]
    with time_machine.travel(start + timedelta(seconds=max_age), tick=False):
        assert client.get(path_of(made["url"])).status_code == 200
    with time_machine.travel(start + timedelta(seconds=max_age + 1), tick=False):
        page = client.get(path_of(made["url"]))
        assert page.status_code == 410
        body = page.get_data(as_text=True)
        assert "expired" in body
        assert "Fabrikam" in body  # who to ask for a new one
        listed = api.get(f"/v1/customers/{customer['id']}/invitations").get_json()
        assert listed["items"][0]["status"] == "expired"


def test_tampered_and_garbage_links_get_the_invalid_page(api, client):
    customer = api.create_customer()
    token = path_of(invite(api, customer["id"])["url"]).rsplit("/", 1)[1]
    flipped = token[:10] + ("A" if token[10] != "A" else "B") + token[11:]
    for bad in (
        flipped,
        token[:-1],
        token + "x",
        token[:-1] + chr(ord(token[-1]) ^ 1),
        "x",
        "a" * 10_000,
        "%00",
        "%C3%A9t%C3%A9",
        "a%0Ab",
        "",
    ):
        page = client.get(f"/invite/{bad}")
        assert page.status_code == 404, bad
        assert "not valid" in page.get_data(as_text=True)
        assert "Fabrikam" not in page.get_data(as_text=True)  # reveals nothing
    # Dot segments are resolved before routing (as browsers do): an ordinary 404.
    assert client.get("/invite/..%2F..%2Fetc").status_code == 404


def test_wrong_salt_and_session_signed_tokens_are_rejected(app, api, client):
    from itsdangerous import URLSafeTimedSerializer

    customer = api.create_customer()
    made = invite(api, customer["id"])
    with app.app_context():
        invitation = db.session().get(Invitation, made["id"])
        payload = [invitation.id, invitation.nonce]
    other_salt = URLSafeTimedSerializer(app.config["SECRET_KEY"], salt="portal.other").dumps(
        payload
    )
    session_signed = app.session_interface.get_signing_serializer(app).dumps(payload)
    for token in (other_salt, session_signed):
        assert client.get(f"/invite/{token}").status_code == 404


def test_links_signed_with_a_fallback_key_still_work(settings, api, make_app):
    customer = api.create_customer()
    made = invite(api, customer["id"])
    rotated = make_app(SECRET_KEY="n" * 48, SECRET_KEY_FALLBACKS=[settings["SECRET_KEY"]])
    assert rotated.test_client().get(path_of(made["url"])).status_code == 200
    dropped = make_app(SECRET_KEY="n" * 48)
    assert dropped.test_client().get(path_of(made["url"])).status_code == 404
    # New links are signed with the new key.
    rotated_api_key = {"Authorization": f"Bearer {api.key}"}
    fresh = (
        rotated.test_client()
        .post(f"/v1/customers/{customer['id']}/invitations", headers=rotated_api_key, json={})
        .get_json()
    )
    assert dropped.test_client().get(path_of(fresh["url"])).status_code == 200


def test_mail_scanner_get_changes_nothing_but_the_opened_time(app, api, client):
    customer = api.create_customer()
    made = invite(api, customer["id"])
    for _ in range(3):
        assert client.get(path_of(made["url"])).status_code == 200
    assert password_works(app, customer["id"], made["password"])
    with app.app_context():
        session = db.session()
        invitation = session.get(Invitation, made["id"])
        assert invitation.opened_at is not None
        assert invitation.revoked_at is None
        assert invitation.superseded_at is None
        assert session.get(Customer, customer["id"]).credential.temporary
    status = api.get(f"/v1/customers/{customer['id']}/acceptanceStatus").get_json()
    assert status["state"] == "link-opened"
    assert status["isSigned"] is False


def test_links_come_from_base_url_not_the_host_header(api):
    customer = api.create_customer()
    response = api.post(
        f"/v1/customers/{customer['id']}/invitations",
        json={},
        headers={"Host": "evil.example.test"},
    )
    made = response.get_json()
    assert made["url"].startswith("https://portal.example.test/invite/")
    assert "evil" not in made["textBody"] + made["htmlBody"]


def test_invite_pages_are_not_cached(api, client):
    customer = api.create_customer()
    page = client.get(path_of(invite(api, customer["id"])["url"]))
    assert page.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]


def test_invited_status_shows_in_acceptance_status(api):
    customer = api.create_customer()
    invite(api, customer["id"])
    status = api.get(f"/v1/customers/{customer['id']}/acceptanceStatus").get_json()
    assert status["state"] == "invited"
    assert status["invited"] is True


def test_a_link_listed_later_is_the_same_and_expires_with_the_first(app, api, client):
    customer = api.create_customer()
    start = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    with time_machine.travel(start, tick=False):
        made = invite(api, customer["id"])
    max_age = app.config["INVITATION_MAX_AGE"]
    with time_machine.travel(start + timedelta(days=10), tick=False):
        listed = api.get(f"/v1/customers/{customer['id']}/invitations").get_json()
        assert listed["items"][0]["url"] == made["url"]
    with time_machine.travel(start + timedelta(seconds=max_age + 1), tick=False):
        assert client.get(path_of(listed["items"][0]["url"])).status_code == 410
