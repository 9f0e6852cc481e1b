"""Mail that arrives: the shape and headers of what the portal sends (multipart/alternative,
Reply-To, Auto-Submitted, Content-Language, Message-ID), and its DKIM signature, checked on what
a real SMTP server received."""

from __future__ import annotations

import base64
import email
import email.policy
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import dkim
import pytest
import time_machine
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sqlalchemy import select

from portal import create_app
from portal.cli import main
from portal.core import db
from portal.core.config import ConfigError
from portal.core.models import DeliveryStatus, Invitation, OutboxMessage, PartnerUser, utcnow
from portal.domain import users
from portal.mail import delivery, mime, sending
from tests.conftest import Api
from tests.mailservers import closed_port
from tests.test_api_agreements import attestation
from tests.test_dashboard import add_user, csrf, sign_in
from tests.test_pages import accept, change_password, invited, sign_in_from_link
from tests.test_shared_customers import share

ADMIN = "admin@fabrikam.example.test"
SELECTOR = "portal2026"
#: The domain of the tests' MAIL_DEFAULT_SENDER, "Portal <portal@example.test>".
SENDER_DOMAIN = "example.test"


# --- helpers ------------------------------------------------------------------------------------


def parsed(raw: bytes) -> Any:
    return email.message_from_bytes(raw, policy=email.policy.default)


def deliver(app: Any) -> sending.Report:
    with app.app_context():
        return sending.deliver_due(app, db.session())


def rows(app: Any) -> list[OutboxMessage]:
    with app.app_context():
        query = select(OutboxMessage).order_by(OutboxMessage.created_at)
        return list(db.session().scalars(query))


def queued_headers(app: Any) -> list[Any]:
    """The messages waiting in the outbox, parsed from the bytes that will be sent."""
    return [parsed(row.mime) for row in rows(app) if row.mime is not None]


def received_by_kind(app: Any, smtp: Any) -> dict[str, list[Any]]:
    """What the SMTP server received, by the outbox kind of its Message-ID."""
    kinds = {row.message_id: row.kind for row in rows(app)}
    found: dict[str, list[Any]] = {}
    for message in smtp.inbox.messages:
        found.setdefault(kinds[message["Message-ID"]], []).append(message)
    return found


def invite_in_dashboard(client: Any, customer_id: str, **form: str) -> None:
    page = client.get(f"/dashboard/customers/{customer_id}")
    made = client.post(
        f"/dashboard/customers/{customer_id}/invitations",
        data={"csrf_token": csrf(page), **form},
    )
    assert made.status_code == 200


def invitation_id(app: Any, customer_id: str) -> str:
    with app.app_context():
        query = select(Invitation.id).where(Invitation.customer_id == customer_id)
        found: str = db.session().scalars(query).one()
        return found


@pytest.fixture
def partner(app: Any, api: Any, client: Any) -> Any:
    """A direct-bill partner (US) with an admin agent signed in to the dashboard in ``client``."""
    add_user(app, api.partner_id, ADMIN)
    assert sign_in(client, ADMIN).status_code == 302
    return api


# --- the shape ----------------------------------------------------------------------------------


@pytest.mark.mail
def test_text_and_html_are_alternatives_at_the_top_and_marked_automatic(app, api, smtp):
    customer = api.create_customer()
    response = api.post(f"/v1/customers/{customer['id']}/invitations", json={"send": True})
    assert response.status_code == 201
    assert deliver(app).sent == 1
    [received] = smtp.inbox.received
    message = received.message
    assert message.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in message.iter_parts()] == [
        "text/plain",
        "text/html",
    ]
    assert b"multipart/mixed" not in received.raw
    assert message["MIME-Version"] == "1.0"
    assert message.get_all("Auto-Submitted") == ["auto-generated"]
    assert message.get_all("Content-Language") == ["en"]
    assert "DKIM-Signature" not in message  # not configured: not signed


def built(html: str = "", **options: Any) -> bytes:
    """A message as the outbox builds it, outside any request; ``options`` go to the builder."""
    message = OutboxMessage(
        to_address="ana@example.test",
        subject="Hallo",
        text_body="Hallo Ana,\n\nnur Text.\n",
        html_body=html,
        message_id="<1b4e28ba-2fa1-11d2-883f-0016d3cca427@example.test>",
    )
    return mime.build("Portal <portal@example.test>", message, **options)


def test_a_message_without_html_stays_text_plain(app):
    with app.app_context():
        message = parsed(built(language="de"))
    assert message.get_content_type() == "text/plain"
    assert not message.is_multipart()
    assert message.get_content().replace("\r\n", "\n") == "Hallo Ana,\n\nnur Text.\n"
    assert (message["Content-Language"], message["Auto-Submitted"]) == ("de", "auto-generated")
    assert "Reply-To" not in message


@pytest.mark.mail
@pytest.mark.parametrize(
    ("language", "tag"), [("de", "de"), ("pt-BR", "pt-BR"), ("zh-Hans", "zh-Hans")]
)
def test_content_language_is_the_recipients_language_as_a_bcp47_tag(app, api, smtp, language, tag):
    customer = api.create_customer()
    body = {"send": True, "language": language}
    assert api.post(f"/v1/customers/{customer['id']}/invitations", json=body).status_code == 201
    assert deliver(app).sent == 1
    [message] = smtp.inbox.messages
    assert message.get_all("Content-Language") == [tag]
    html = message.get_body(("html",)).get_content()
    assert f'lang="{tag}"' in html  # the language the text is written in


# --- Reply-To -----------------------------------------------------------------------------------


@pytest.mark.mail
def test_an_invitation_from_the_dashboard_is_answered_to_the_partner_who_sent_it(
    app, partner, client, smtp
):
    sent_at_once = partner.create_customer()
    invite_in_dashboard(client, sent_at_once["id"], send="yes")
    reviewed_first = partner.create_customer()
    invite_in_dashboard(client, reviewed_first["id"])  # not sent: the partner reviews it
    page = client.get(f"/dashboard/customers/{reviewed_first['id']}")
    sent = client.post(
        f"/dashboard/customers/{reviewed_first['id']}/invitations/"
        f"{invitation_id(app, reviewed_first['id'])}/send",
        data={"csrf_token": csrf(page)},
    )
    assert sent.status_code == 302
    from_api = partner.create_customer()
    answer = partner.post(f"/v1/customers/{from_api['id']}/invitations", json={"send": True})
    assert answer.status_code == 201
    assert deliver(app).sent == 3
    customers = {row.message_id: row.customer_id for row in rows(app)}
    reply_to = {customers[m["Message-ID"]]: m.get_all("Reply-To") for m in smtp.inbox.messages}
    assert reply_to == {
        sent_at_once["id"]: [ADMIN],
        reviewed_first["id"]: [ADMIN],
        from_api["id"]: None,  # the API names no person
    }


@pytest.mark.mail
def test_without_a_person_replies_go_to_the_partners_contact_address(
    app, partner, client, smtp, runner
):
    """The operator records where the partner takes replies (``portal partners contact``):
    what the API issues is answered there; what a dashboard user issued still to that user."""
    refused = runner.invoke(main, ["partners", "contact", partner.partner_id, "not an address"])
    assert refused.exit_code == 1
    assert "contact address" in refused.output
    set_to = runner.invoke(
        main, ["partners", "contact", partner.partner_id, "customers@fabrikam.example.test"]
    )
    assert set_to.exit_code == 0, set_to.output
    from_api = partner.create_customer()
    answer = partner.post(f"/v1/customers/{from_api['id']}/invitations", json={"send": True})
    assert answer.status_code == 201
    from_dashboard = partner.create_customer()
    invite_in_dashboard(client, from_dashboard["id"], send="yes")
    body = {"domain": "contoso.example.test", "email": "it@contoso.example.test", "send": True}
    assert partner.post("/v1/relationshiprequests", json=body).status_code == 201
    assert deliver(app).sent == 3
    customers = {row.message_id: row.customer_id or row.kind for row in rows(app)}
    reply_to = {customers[m["Message-ID"]]: m.get_all("Reply-To") for m in smtp.inbox.messages}
    assert reply_to == {
        from_api["id"]: ["customers@fabrikam.example.test"],
        from_dashboard["id"]: [ADMIN],
        "relationship-request": ["customers@fabrikam.example.test"],
    }
    cleared = runner.invoke(main, ["partners", "contact", partner.partner_id, ""])
    assert cleared.exit_code == 0
    assert "(nobody)" in cleared.output


@pytest.mark.mail
def test_no_reply_to_once_the_partners_person_has_left_the_dashboard(app, partner, client, smtp):
    customer = partner.create_customer()
    invite_in_dashboard(client, customer["id"], send="yes")
    invitation = invitation_id(app, customer["id"])
    with app.app_context():
        session = db.session()
        user = session.scalars(select(PartnerUser).where(PartnerUser.email == ADMIN)).one()
        users.remove(session, user, actor="cli")
        session.commit()
    resent = partner.post(f"/v1/customers/{customer['id']}/invitations/{invitation}/resend")
    assert resent.status_code == 202
    assert deliver(app).sent == 2
    assert [m.get_all("Reply-To") for m in smtp.inbox.messages] == [[ADMIN], None]


@pytest.mark.mail
def test_a_relationship_request_from_the_dashboard_is_answered_to_the_partner(
    app, partner, client, smtp
):
    page = client.get("/dashboard/relationships")
    made = client.post(
        "/dashboard/relationships",
        data={
            "csrf_token": csrf(page),
            "domain": "contoso.example.test",
            "email": "it@contoso.example.test",
            "language": "pt-BR",
            "send": "yes",
        },
    )
    assert made.status_code == 302
    body = {"domain": "contoso.example.test", "email": "it@contoso.example.test", "send": True}
    assert partner.post("/v1/relationshiprequests", json=body).status_code == 201
    assert deliver(app).sent == 2
    sent = received_by_kind(app, smtp)["relationship-request"]
    assert [m.get_all("Reply-To") for m in sent] == [[ADMIN], None]
    assert [m["Content-Language"] for m in sent] == ["pt-BR", "en"]


@pytest.mark.mail
def test_the_customers_own_mail_and_notices_carry_no_reply_to(app, make_api, client, smtp):
    """Password resets, acceptance confirmations, attestation notices (the API's) and removal
    notices (to the partner itself) have no partner's person to answer to."""
    first = make_api(name="First Partner Ltd")
    second = make_api(name="Second Partner Ltd")
    add_user(app, second.partner_id, "admin@second.example.test")
    customer, made = invited(first)
    share(app, customer["id"], second)
    sign_in_from_link(client, made)
    change_password(client)
    assert accept(client).status_code == 302
    form = client.get(f"/account/partners/{second.partner_id}/remove")
    removed = client.post(
        f"/account/partners/{second.partner_id}/remove", data={"csrf_token": csrf(form)}
    )
    assert removed.status_code == 302
    client.post("/signout", data={})
    attested = first.post(f"/v1/customers/{customer['id']}/agreements", json=attestation())
    assert attested.status_code == 201
    page = client.get("/password/forgot")
    client.post("/password/forgot", data={"csrf_token": csrf(page), "user_name": made["userName"]})
    assert delivery.run_once(app) is not None  # writes the reset email, then sends everything
    found = received_by_kind(app, smtp)
    assert set(found) == {
        "acceptance-confirmation",
        "relationship-removal-notice",
        "attestation-notice",
        "password-reset",
    }
    for kind, messages in found.items():
        for message in messages:
            assert "Reply-To" not in message, kind
            assert message["Auto-Submitted"] == "auto-generated", kind
            assert message["Content-Language"] == "en", kind


# --- Message-ID ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sender", "domain"),
    [
        ("Portal <portal@Mail.Example.TEST>", "mail.example.test"),
        ("portal@example.test", "example.test"),
        (("Portal", "portal@bücher.example"), "xn--bcher-kva.example"),
        ("portal@localhost", "localhost"),
        ("portal", None),
    ],
)
def test_the_sender_domain_names_the_message_id(sender, domain):
    assert mime.sender_domain(sender) == domain


def test_without_a_sender_domain_the_message_id_falls_back_to_the_base_url(make_app, api):
    app = make_app(MAIL_DEFAULT_SENDER="portal")
    caller = Api(app.test_client(), api.partner_id, api.key, api.kind)
    customer = caller.create_customer()
    answer = caller.post(f"/v1/customers/{customer['id']}/invitations", json={"send": True})
    assert answer.status_code == 201
    [row] = rows(app)
    assert row.message_id.endswith("@portal.example.test>")


@pytest.mark.mail
def test_the_message_id_is_on_the_senders_domain_and_the_same_on_a_retry(
    app, make_app, api, smtp, dkim_files
):
    customer = api.create_customer()
    answer = api.post(f"/v1/customers/{customer['id']}/invitations", json={"send": True})
    assert answer.status_code == 201
    [queued] = rows(app)
    assert re.fullmatch(rf"<[0-9a-f-]{{36}}@{re.escape(SENDER_DOMAIN)}>", queued.message_id)
    assert parsed(queued.mime)["Message-ID"] == queued.message_id

    refused = make_app(MAIL_PORT=closed_port(), MAIL_TIMEOUT=1)
    assert deliver(refused).retrying == 1
    [waiting] = rows(app)
    assert (waiting.status, waiting.attempts) == (DeliveryStatus.QUEUED, 1)
    assert waiting.message_id == queued.message_id
    assert waiting.mime == queued.mime  # what the retry sends: built once, when queued

    # The retry, by a sender that signs now: the message queued unsigned leaves signed.
    signing = make_app(**dkim_files.settings)
    with time_machine.travel(utcnow() + timedelta(minutes=5), tick=True):
        assert deliver(signing).sent == 1
    [received] = smtp.inbox.received
    assert received.message.get_all("Message-ID") == [queued.message_id]
    assert dkim.verify(received.raw, dnsfunc=dkim_files.dns)


# --- DKIM ---------------------------------------------------------------------------------------


class DkimFiles:
    """An RSA-2048 key in a PEM file, and the DNS the receiver asks for its public half."""

    def __init__(self, folder: Path) -> None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        self.path = folder / "dkim.pem"
        self.path.write_bytes(self.pem)
        public = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
        self.asked: list[bytes] = []

    @property
    def settings(self) -> dict[str, str]:
        return {
            "DKIM_DOMAIN": SENDER_DOMAIN,
            "DKIM_SELECTOR": SELECTOR,
            "DKIM_KEY_FILE": str(self.path),
        }

    def dns(self, name: bytes, timeout: float = 5) -> bytes | None:
        """The TXT record at ``name``: the public key at <selector>._domainkey.<domain> only."""
        self.asked.append(name)
        if name == f"{SELECTOR}._domainkey.{SENDER_DOMAIN}.".encode():
            return self.record
        return None


@pytest.fixture(scope="module")
def dkim_key_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dkim")


@pytest.fixture(scope="module")
def module_dkim_files(dkim_key_folder: Path) -> DkimFiles:
    """One key for the module: an RSA-2048 key takes a moment to make."""
    return DkimFiles(dkim_key_folder)


@pytest.fixture
def dkim_files(module_dkim_files: DkimFiles) -> DkimFiles:
    module_dkim_files.asked.clear()
    return module_dkim_files


def signature_tags(message: Any) -> dict[str, str]:
    value = re.sub(r"\s+", "", str(message["DKIM-Signature"]))
    return dict(tag.split("=", 1) for tag in value.split(";") if tag)


@pytest.fixture
def signed(make_app, partner, client, smtp, dkim_files) -> Any:
    """An invitation from the dashboard (so with a Reply-To), sent signed; what arrived."""
    app = make_app(**dkim_files.settings)
    customer = partner.create_customer()
    invite_in_dashboard(client, customer["id"], send="yes")
    assert deliver(app).sent == 1
    [received] = smtp.inbox.received
    return received


@pytest.mark.mail
def test_a_signed_message_verifies_with_the_published_key(signed, dkim_files):
    assert dkim.verify(signed.raw, dnsfunc=dkim_files.dns)
    assert dkim_files.asked == [f"{SELECTOR}._domainkey.{SENDER_DOMAIN}.".encode()]
    message = signed.message
    assert message["Reply-To"] == ADMIN
    assert len(message.get_all("DKIM-Signature")) == 1
    assert signed.raw.startswith(b"DKIM-Signature: ")
    tags = signature_tags(message)
    assert (tags["a"], tags["c"], tags["d"], tags["s"]) == (
        "rsa-sha256",
        "relaxed/relaxed",
        SENDER_DOMAIN,
        SELECTOR,
    )
    covered = tags["h"].split(":")
    for name in (
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "reply-to",
        "content-type",
        "mime-version",
        "content-language",
        "auto-submitted",
    ):
        assert covered.count(name) == 2, name  # the field, and no second one added
    assert "l" not in tags  # the whole body is covered


def _changed_body(raw: bytes) -> bytes:
    """A line added to the text part, as a relay that appends a footer would."""
    head, _, rest = raw.partition(b"Content-Type: text/html")
    marker = head.rfind(b"\r\n--")
    assert marker > 0
    return head[:marker] + b"\r\nDGVzdA==" + head[marker:] + b"Content-Type: text/html" + rest


@pytest.mark.mail
@pytest.mark.parametrize(
    "alter",
    [
        pytest.param(lambda raw: raw.replace(b"\r\nSubject: ", b"\r\nSubject: Re: "), id="subject"),
        pytest.param(
            lambda raw: raw.replace(ADMIN.encode(), b"attacker@evil.example.test"), id="reply-to"
        ),
        pytest.param(
            lambda raw: raw.replace(b"\r\nFrom: ", b"\r\nFrom: x@evil.example.test\r\nFrom: ", 1),
            id="second-from",
        ),
        pytest.param(
            lambda raw: b"Reply-To: attacker@evil.example.test\r\n" + raw, id="second-reply-to"
        ),
        pytest.param(_changed_body, id="body"),
    ],
)
def test_a_message_altered_after_it_left_fails_verification(signed, dkim_files, alter):
    altered = alter(signed.raw)
    assert altered != signed.raw
    assert dkim.verify(signed.raw, dnsfunc=dkim_files.dns)
    assert not dkim.verify(altered, dnsfunc=dkim_files.dns)


@pytest.mark.mail
def test_a_message_without_reply_to_cannot_be_given_one(make_app, api, smtp, dkim_files):
    app = make_app(**dkim_files.settings)
    customer = api.create_customer()
    answer = api.post(f"/v1/customers/{customer['id']}/invitations", json={"send": True})
    assert answer.status_code == 201
    assert deliver(app).sent == 1
    [received] = smtp.inbox.received
    assert "Reply-To" not in received.message
    assert dkim.verify(received.raw, dnsfunc=dkim_files.dns)
    forged = b"Reply-To: attacker@evil.example.test\r\n" + received.raw
    assert not dkim.verify(forged, dnsfunc=dkim_files.dns)


def test_the_key_is_read_once_not_per_message(make_app, dkim_files, tmp_path):
    key_file = tmp_path / "once.pem"
    key_file.write_bytes(dkim_files.pem)
    app = make_app(**{**dkim_files.settings, "DKIM_KEY_FILE": str(key_file)})
    signer = sending.signer(app)
    assert signer is not None
    key_file.unlink()  # a file read per message would fail from here on
    assert sending.signer(app) is signer
    with app.app_context():
        for _ in range(2):
            raw = signer.sign(built("<p>Hallo Ana</p>", reply_to=ADMIN))
            assert dkim.verify(raw, dnsfunc=dkim_files.dns)


def test_a_numeric_selector_from_the_environment_signs(monkeypatch, dkim_files, settings):
    for name, value in {**settings, **dkim_files.settings, "DKIM_SELECTOR": "2026"}.items():
        monkeypatch.setenv(f"PORTAL_{name}", str(value))
    app = create_app()
    assert app.config["DKIM_SELECTOR"] == 2026  # JSON in the environment: a number
    signer = sending.signer(app)
    assert signer is not None
    raw = signer.sign(b"From: portal@example.test\r\nSubject: x\r\n\r\nbody\r\n")
    assert signature_tags(parsed(raw))["s"] == "2026"
    record = dkim_files.record

    def dns(name: bytes, timeout: float = 5) -> bytes | None:
        return record if name == b"2026._domainkey.example.test." else None

    assert dkim.verify(raw, dnsfunc=dns)
    with app.app_context():
        db.engine().dispose()


def test_dkim_is_off_when_nothing_is_set(app):
    assert sending.signer(app) is None


# --- refusing to start --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "given",
    [
        ("DKIM_DOMAIN",),
        ("DKIM_SELECTOR",),
        ("DKIM_KEY_FILE",),
        ("DKIM_DOMAIN", "DKIM_SELECTOR"),
        ("DKIM_DOMAIN", "DKIM_KEY_FILE"),
        ("DKIM_SELECTOR", "DKIM_KEY_FILE"),
    ],
)
def test_half_configured_dkim_refuses_to_start(settings, dkim_files, given):
    changes = {name: dkim_files.settings[name] for name in given}
    missing = [f"PORTAL_{n}" for n in dkim_files.settings if n not in given]
    with pytest.raises(ConfigError, match="DKIM is half configured") as refused:
        create_app({**settings, **changes})
    for name in missing:
        assert name in str(refused.value)
    assert "Set all three" in str(refused.value)


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def _unusable_keys(folder: Path) -> dict[str, tuple[str, str]]:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    encrypted = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    elliptic = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    no_key = "holds no unencrypted RSA private key in PEM form"
    return {
        "missing": (str(folder / "nowhere.pem"), "cannot read the DKIM private key"),
        "directory": (str(folder), "cannot read the DKIM private key"),
        "garbage": (_write(folder / "garbage.pem", b"not a key\n"), no_key),
        "encrypted": (_write(folder / "encrypted.pem", encrypted), no_key),
        "elliptic": (_write(folder / "ec.pem", elliptic), no_key),
        "public": (_write(folder / "public.pem", public), no_key),
    }


@pytest.mark.parametrize(
    "case", ["missing", "directory", "garbage", "encrypted", "elliptic", "public"]
)
def test_an_unusable_key_file_refuses_to_start(settings, dkim_files, tmp_path, case):
    folder = tmp_path / "keys"
    folder.mkdir()
    path, words = _unusable_keys(folder)[case]
    with pytest.raises(ConfigError, match="PORTAL_DKIM_KEY_FILE") as refused:
        create_app({**settings, **dkim_files.settings, "DKIM_KEY_FILE": path})
    assert words in str(refused.value)
    assert path in str(refused.value)


@pytest.mark.parametrize(
    ("name", "value"), [("DKIM_DOMAIN", "@example.test"), ("DKIM_SELECTOR", "portal 2026")]
)
def test_a_selector_or_domain_that_is_no_dns_name_refuses_to_start(
    settings, dkim_files, name, value
):
    with pytest.raises(ConfigError, match=f"PORTAL_{name} must be a DNS name"):
        create_app({**settings, **dkim_files.settings, name: value})


def test_a_key_file_with_windows_line_ends_is_accepted(make_app, dkim_files, tmp_path):
    path = _write(tmp_path / "crlf.pem", dkim_files.pem.replace(b"\n", b"\r\n"))
    app = make_app(**{**dkim_files.settings, "DKIM_KEY_FILE": path})
    signer = sending.signer(app)
    assert signer is not None
    raw = signer.sign(b"From: portal@example.test\r\nSubject: x\r\n\r\nbody\r\n")
    assert dkim.verify(raw, dnsfunc=dkim_files.dns)


def test_the_command_line_says_why_it_will_not_start(runner, dkim_files):
    result = runner.invoke(
        main,
        ["mail", "outbox"],
        env={"PORTAL_DKIM_DOMAIN": SENDER_DOMAIN, "PORTAL_DKIM_SELECTOR": SELECTOR},
    )
    assert result.exit_code == 1
    assert "Error: DKIM is half configured" in result.output
    assert "PORTAL_DKIM_KEY_FILE" in result.output
