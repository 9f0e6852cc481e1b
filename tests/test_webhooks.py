"""Webhooks: registering receivers, events into the outbox, signed deliveries to a real HTTP
receiver on loopback, retries with backoff, re-sending, and receivers the portal must refuse."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import select

from portal.core import db
from portal.core.models import WebhookDelivery, WebhookEndpoint, WebhookStatus
from portal.domain import webhooks
from portal.mail import delivery
from tests.test_pages import MCA, accept, change_password, invited, sign_in_from_link


@dataclass
class Receiver:
    """A partner's system: records each POST, answers with the next status of ``answers``
    (then 200)."""

    url: str
    got: list[dict[str, Any]] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    location: str = ""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from _receiver()


@pytest.fixture
def other_receiver() -> Iterator[Receiver]:
    yield from _receiver()


def _receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.got.append({"path": self.path, "headers": dict(self.headers), "body": body})
            status = state.answers.pop(0) if state.answers else 200
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", state.location)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"no" if status >= 300 else b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/portal"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def hooked(make_app, make_api) -> Any:
    """An app whose webhooks may go to loopback (as tests need), retrying at once, three times;
    a partner's API on it."""
    app = make_app(WEBHOOK_ALLOW_PRIVATE=True, WEBHOOK_RETRY_BASE_SECONDS=0, WEBHOOK_MAX_ATTEMPTS=3)
    api = make_api()
    api.client = app.test_client()
    return app, api


def register(api: Any, url: str, **body: Any) -> dict[str, Any]:
    response = api.post("/v1/webhooks", json={"url": url, **body})
    assert response.status_code == 201, response.get_json()
    result: dict[str, Any] = response.get_json()
    return result


def verify(secret: str, got: dict[str, Any], tolerance: int = 300) -> dict[str, Any]:
    """What a receiver does (README's snippet): check the signature and its age."""
    parts = dict(item.split("=", 1) for item in got["headers"]["Portal-Signature"].split(","))
    signed = parts["t"].encode() + b"." + got["body"]
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(expected, parts["v1"])
    assert abs(time.time() - int(parts["t"])) < tolerance
    payload: dict[str, Any] = json.loads(got["body"])
    return payload


def journey(app: Any, api: Any) -> str:
    """A customer invited, the link opened, signed in, the agreement accepted."""
    client = app.test_client()
    customer, made = invited(api)
    sign_in_from_link(client, made)
    change_password(client)
    assert accept(client).headers["Location"].endswith("/account?accepted=1")
    return str(customer["id"])


# --- registering ----------------------------------------------------------------------------------


def test_a_webhook_gets_a_secret_once_and_keeps_it_sealed(hooked, receiver):
    app, api = hooked
    made = register(api, receiver.url)
    assert made["secret"].startswith("whsec_")
    assert made["events"] == []  # all, including types added later
    listed = api.get("/v1/webhooks").get_json()
    assert [item["id"] for item in listed["items"]] == [made["id"]]
    assert "secret" not in listed["items"][0]
    assert "secret" not in api.get(f"/v1/webhooks/{made['id']}").get_json()
    with app.app_context():
        stored = db.session().get_one(WebhookEndpoint, made["id"])
        assert made["secret"] not in stored.secret_sealed


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ftp://hooks.example.com/x", "https://"),
        ("http://hooks.example.com/x", "https://"),
        ("https://127.0.0.1/x", "public address"),
        ("https://10.1.2.3/x", "public address"),
        ("https://169.254.169.254/latest/meta-data", "public address"),
        ("https://[::1]/x", "public address"),
        ("https://[::ffff:192.168.0.1]/x", "public address"),
        ("https://100.64.0.1/x", "public address"),
        ("https://localhost/x", "public address"),
        ("https://api.localhost/x", "public address"),
        ("https://user:pw@hooks.example.com/x", "user name"),
        ("https://hooks.example.com/x#top", "fragment"),
        ("https://hooks.exämple.com/x", "punycode"),
        ("https://hooks.example.com/a b", "spaces"),
        ("https:///x", "no host"),
        ("https://hooks.example.com:99999/x", "not a URL"),
        ("https://hooks.example.com/" + "x" * 2000, "longer than"),
    ],
)
def test_receivers_that_are_not_public_https_urls_are_refused(make_app, make_api, url, words):
    app = make_app()
    api = make_api()
    api.client = app.test_client()
    response = api.post("/v1/webhooks", json={"url": url})
    assert response.status_code == 400
    body = response.get_json()
    assert body["errorName"] == "InvalidFields"
    assert words in body["parameters"]["url"]
    assert api.get("/v1/webhooks").get_json()["totalCount"] == 0


@pytest.mark.parametrize(
    ("body", "field_name"),
    [
        ({"url": "https://hooks.example.com/x", "events": ["agreement.signed"]}, "events"),
        ({"url": "https://hooks.example.com/x", "events": "agreement.accepted"}, "events"),
        ({"url": "https://hooks.example.com/x", "events": [1]}, "events"),
        ({"url": 5}, "url"),
        ({}, "url"),
    ],
)
def test_bad_fields_are_named(api, body, field_name):
    response = api.post("/v1/webhooks", json=body)
    assert response.status_code == 400
    assert field_name in response.get_json()["parameters"]


def test_public_https_receivers_are_taken_with_an_event_filter(api):
    made = register(api, "https://hooks.example.com/portal?tenant=7", events=["agreement.accepted"])
    assert made["events"] == ["agreement.accepted"]
    assert made["url"] == "https://hooks.example.com/portal?tenant=7"


def test_at_most_ten_webhooks(api):
    for n in range(webhooks.MAX_ENDPOINTS):
        register(api, f"https://hooks.example.com/{n}")
    response = api.post("/v1/webhooks", json={"url": "https://hooks.example.com/11"})
    assert response.status_code == 409
    assert response.get_json()["errorName"] == "TooManyWebhooks"


def test_webhooks_registered_at_once_stop_at_ten(app, api):
    """Registrations at once (on PostgreSQL, really at once: the partner's row is locked
    before counting) make ten webhooks, never more."""
    tries = webhooks.MAX_ENDPOINTS + 6
    barrier = threading.Barrier(tries)
    answers: list[int] = []

    def attempt(n: int) -> None:
        client = app.test_client()
        barrier.wait()
        answers.append(
            client.post(
                "/v1/webhooks",
                json={"url": f"https://hooks.example.com/{n}"},
                headers={"Authorization": f"Bearer {api.key}"},
            ).status_code
        )

    started = [threading.Thread(target=attempt, args=(n,)) for n in range(tries)]
    for thread in started:
        thread.start()
    for thread in started:
        thread.join()
    assert sorted(answers) == [201] * webhooks.MAX_ENDPOINTS + [409] * 6
    assert len(api.get("/v1/webhooks").get_json()["items"]) == webhooks.MAX_ENDPOINTS


def test_another_partners_webhooks_are_not_found(api, make_api):
    made = register(api, "https://hooks.example.com/x")
    other = make_api(name="Northwind")
    for answer in (
        other.get(f"/v1/webhooks/{made['id']}"),
        other.get(f"/v1/webhooks/{made['id']}/deliveries"),
        other.client.delete(
            f"/v1/webhooks/{made['id']}", headers={"Authorization": f"Bearer {other.key}"}
        ),
    ):
        assert answer.status_code == 404
        assert answer.get_json()["errorName"] == "WebhookNotFound"
    assert api.get(f"/v1/webhooks/{made['id']}").status_code == 200


# --- delivering -----------------------------------------------------------------------------------


def test_a_journey_reaches_the_receiver_signed_and_in_order(hooked, receiver):
    app, api = hooked
    made = register(api, receiver.url)
    customer_id = journey(app, api)
    delivery.run_once(app)
    types = [json.loads(got["body"])["type"] for got in receiver.got]
    assert types == ["invitation.opened", "customer.signedIn", "agreement.accepted"]
    for got in receiver.got:
        payload = verify(made["secret"], got)
        assert payload["data"]["customerId"] == customer_id
        assert got["path"] == "/hooks/portal"
        assert got["headers"]["Portal-Event-Id"] == payload["id"]
        assert got["headers"]["Portal-Event-Type"] == payload["type"]
        assert got["headers"]["Content-Type"] == "application/json"
    accepted = json.loads(receiver.got[-1]["body"])
    assert accepted["data"]["templateId"] == MCA
    assert "ip_address" not in receiver.got[-1]["body"].decode()  # evidence stays with us
    listed = api.get(f"/v1/webhooks/{made['id']}/deliveries").get_json()
    assert {item["status"] for item in listed["items"]} == {"delivered"}
    assert all(item["lastStatus"] == 200 for item in listed["items"])
    delivery.run_once(app)
    assert len(receiver.got) == 3  # nothing twice


def test_a_tampered_body_does_not_verify(hooked, receiver):
    app, api = hooked
    made = register(api, receiver.url)
    journey(app, api)
    delivery.run_once(app)
    tampered = {**receiver.got[-1], "body": receiver.got[-1]["body"].replace(b"accepted", b"x")}
    with pytest.raises(AssertionError):
        verify(made["secret"], tampered)
    with pytest.raises(AssertionError):
        verify("whsec_another", receiver.got[-1])


def test_an_attestation_and_the_event_filter(hooked, receiver, other_receiver):
    app, api = hooked
    register(api, receiver.url, events=["agreement.attested"])
    register(api, other_receiver.url, events=["invitation.opened"])
    customer = api.create_customer()
    attested = api.post(
        f"/v1/customers/{customer['id']}/agreements",
        json={
            "primaryContact": {
                "firstName": "Tania",
                "lastName": "Carr",
                "email": "tania@contoso.example.test",
            },
            "templateId": MCA,
            "dateAgreed": "2024-06-14T00:00:00Z",
            "type": "MicrosoftCustomerAgreement",
        },
    )
    assert attested.status_code == 201, attested.get_json()
    delivery.run_once(app)
    assert [json.loads(got["body"])["type"] for got in receiver.got] == ["agreement.attested"]
    assert json.loads(receiver.got[0]["body"])["data"]["partnerId"] == api.partner_id
    assert other_receiver.got == []


def test_a_failing_receiver_is_retried_then_given_up_and_can_be_resent(hooked, receiver):
    app, api = hooked
    made = register(api, receiver.url, events=["customer.signedIn"])
    receiver.answers = [500, 503, 500]
    journey(app, api)
    for _ in range(3):
        delivery.run_once(app)
    assert len(receiver.got) == 3
    listed = api.get(f"/v1/webhooks/{made['id']}/deliveries").get_json()["items"]
    assert len(listed) == 1
    assert listed[0]["status"] == "failed"
    assert listed[0]["attempts"] == 3
    assert listed[0]["lastStatus"] == 500
    assert "HTTP 500" in listed[0]["lastError"]
    # The same event, every time: receivers drop repeats by its id.
    assert len({got["headers"]["Portal-Event-Id"] for got in receiver.got}) == 1

    resent = api.post(f"/v1/webhooks/{made['id']}/deliveries/{listed[0]['id']}/resend")
    assert resent.status_code == 202
    assert resent.get_json()["status"] == "queued"
    delivery.run_once(app)
    assert len(receiver.got) == 4
    after = api.get(f"/v1/webhooks/{made['id']}/deliveries").get_json()["items"][0]
    assert after["status"] == "delivered"
    assert after["attempts"] == 1


def test_retries_back_off(make_app, make_api, receiver):
    app = make_app(WEBHOOK_ALLOW_PRIVATE=True, WEBHOOK_RETRY_BASE_SECONDS=60)
    api = make_api()
    api.client = app.test_client()
    register(api, receiver.url, events=["customer.signedIn"])
    receiver.answers = [500, 500]
    journey(app, api)
    delivery.run_once(app)
    delivery.run_once(app)  # not due yet
    assert len(receiver.got) == 1
    with app.app_context():
        waiting = db.session().scalars(select(WebhookDelivery)).one()
        assert waiting.status == WebhookStatus.QUEUED
        wait = (waiting.next_attempt_at - waiting.created_at).total_seconds()
        assert 55 <= wait <= 120


def test_a_redirect_is_not_followed(hooked, receiver, other_receiver):
    app, api = hooked
    register(api, receiver.url, events=["customer.signedIn"])
    receiver.answers = [302]
    receiver.location = other_receiver.url
    journey(app, api)
    delivery.run_once(app)
    assert other_receiver.got == []
    with app.app_context():
        waiting = db.session().scalars(select(WebhookDelivery)).one()
        assert waiting.status == WebhookStatus.QUEUED
        assert "redirects are not followed" in waiting.last_error


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_private_receiver_is_refused_at_delivery_too(make_app, make_api, receiver, host):
    """Registered while private addresses were allowed (or a name that now resolves to one):
    without the setting, the sender looks the host up and refuses before connecting."""
    allowing = make_app(WEBHOOK_ALLOW_PRIVATE=True)
    api = make_api()
    api.client = allowing.test_client()
    register(api, receiver.url.replace("127.0.0.1", host), events=["customer.signedIn"])
    strict = make_app(WEBHOOK_MAX_ATTEMPTS=1)
    journey(strict, api)
    delivery.run_once(strict)
    assert receiver.got == []
    with strict.app_context():
        refused = db.session().scalars(select(WebhookDelivery)).one()
        assert refused.status == WebhookStatus.FAILED
        assert "not a public address" in refused.last_error


def test_a_deleted_webhook_gets_nothing_more(hooked, receiver):
    app, api = hooked
    made = register(api, receiver.url)
    customer, link = invited(api)
    app.test_client().get(link["url"].split("portal.example.test", 1)[-1])
    deleted = api.client.delete(
        f"/v1/webhooks/{made['id']}", headers={"Authorization": f"Bearer {api.key}"}
    )
    assert deleted.status_code == 204
    delivery.run_once(app)
    assert receiver.got == []
    assert api.get(f"/v1/webhooks/{made['id']}").status_code == 404
    with app.app_context():
        kept = db.session().scalars(select(WebhookDelivery)).all()
        assert [d.status for d in kept] == [WebhookStatus.FAILED]


def test_no_webhook_means_no_delivery_rows(app, api):
    journey(app, api)
    with app.app_context():
        assert db.session().scalars(select(WebhookDelivery)).all() == []


def readme_verify() -> Any:
    """The receivers' snippet in README.md, as a reader would paste it."""
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    blocks = [b.split("```", 1)[0] for b in readme.split("```python\n")[1:]]
    snippet = next(block for block in blocks if "def verify(secret" in block)
    namespace: dict[str, Any] = {}
    exec(compile(snippet, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    return namespace["verify"]


def test_the_readme_snippet_verifies_a_delivery_and_refuses_a_forgery(hooked, receiver):
    app, api = hooked
    made = register(api, receiver.url, events=["customer.signedIn"])
    customer_id = journey(app, api)
    delivery.run_once(app)
    verify_like_readme = readme_verify()
    got = receiver.got[0]
    event = verify_like_readme(made["secret"], got["headers"]["Portal-Signature"], got["body"])
    assert event["data"]["customerId"] == customer_id
    with pytest.raises(ValueError, match="not signed"):
        verify_like_readme(made["secret"], got["headers"]["Portal-Signature"], got["body"] + b" ")
    stale = (
        f"t={int(time.time()) - 3600},v1="
        + hmac.new(
            made["secret"].encode(),
            f"{int(time.time()) - 3600}.".encode() + got["body"],
            hashlib.sha256,
        ).hexdigest()
    )
    with pytest.raises(ValueError, match="too old"):
        verify_like_readme(made["secret"], stale, got["body"])


@pytest.mark.mail
def test_the_invitation_emails_fate_is_told(make_app, make_api, receiver, smtp):
    app = make_app(
        WEBHOOK_ALLOW_PRIVATE=True, MAIL_SERVER=smtp.host, MAIL_PORT=smtp.port, MAIL_MAX_ATTEMPTS=1
    )
    api = make_api()
    api.client = app.test_client()
    made = register(api, receiver.url, events=["invitation.delivered", "invitation.failed"])
    smtp.inbox.refuse.add("nobody@contoso.example.test")
    delivered = api.create_customer()
    failing = api.create_customer()
    sent = api.post(f"/v1/customers/{delivered['id']}/invitations", json={"send": True})
    refused = api.post(
        f"/v1/customers/{failing['id']}/invitations",
        json={"send": True, "to": "nobody@contoso.example.test"},
    )
    assert (sent.status_code, refused.status_code) == (201, 201)
    delivery.run_once(app)  # the mail, then the webhooks its outcomes queued
    events = {
        json.loads(got["body"])["data"]["customerId"]: verify(made["secret"], got)
        for got in receiver.got
    }
    assert events[delivered["id"]]["type"] == "invitation.delivered"
    assert events[delivered["id"]]["data"]["invitationId"] == sent.get_json()["id"]
    assert events[failing["id"]]["type"] == "invitation.failed"
    assert "550" in events[failing["id"]]["data"]["error"]
    assert len(receiver.got) == 2
