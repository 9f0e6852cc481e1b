"""Webhooks in the partner dashboard: adding one (its secret shown once), the form's problems,
deliveries and "Send again", deleting, who may change them, and partner isolation."""

from __future__ import annotations

import html
from typing import Any

import pytest
from sqlalchemy import select

from portal.core import db
from portal.core.models import (
    EventKind,
    Partner,
    UserRole,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookStatus,
)
from portal.domain import webhooks
from portal.mail import delivery
from tests import test_dashboard, test_webhooks
from tests.test_dashboard import add_user, count, csrf, sign_in
from tests.test_webhooks import journey

# Fixtures of the dashboard's and the webhooks' tests: a signed-in admin agent's partner, and a
# partner's system that records what it is sent.
partner = test_dashboard.partner
receiver = test_webhooks.receiver

HOOK = "https://hooks.example.com/portal?tenant=7"


def page_text(response: Any) -> str:
    return html.unescape(response.get_data(as_text=True))


def add(client: Any, url: str, *events: str) -> Any:
    token = csrf(client.get("/dashboard/webhooks"))
    return client.post(
        "/dashboard/webhooks", data={"csrf_token": token, "url": url, "events": list(events)}
    )


def stored(app: Any) -> list[WebhookEndpoint]:
    with app.app_context():
        return list(db.session().scalars(select(WebhookEndpoint)))


def seal(app: Any) -> Any:
    return webhooks.sealer([app.config["SECRET_KEY"]])


def registered(app: Any, partner_id: str, url: str = HOOK) -> str:
    """A webhook of ``partner_id`` (as the API registers one); its id."""
    with app.app_context():
        session = db.session()
        endpoint, _secret = webhooks.register(
            session, session.get_one(Partner, partner_id), url, None, seal(app)
        )
        session.commit()
        return endpoint.id


def queued_delivery(app: Any, api: Any, endpoint_id: str, failed: bool = False) -> str:
    """A delivery to the webhook (an invitation link opened), waiting or, with ``failed``,
    given up on; its id."""
    customer = api.create_customer()
    with app.app_context():
        session = db.session()
        webhooks.notify(
            session,
            EventKind.INVITATION_OPENED,
            partner_id=api.partner_id,
            customer_id=customer["id"],
            data={},
        )
        made = session.scalars(
            select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
        ).one()
        if failed:
            made.status = WebhookStatus.FAILED
            made.attempts = 8
            made.last_error = "HTTP 500: no"
            made.last_status = 500
        session.commit()
        return made.id


def state_of(app: Any, delivery_id: str) -> tuple[WebhookStatus, int]:
    with app.app_context():
        found = db.session().get_one(WebhookDelivery, delivery_id)
        return found.status, found.attempts


# --- adding --------------------------------------------------------------------------------------


def test_an_admin_adds_a_webhook_and_sees_its_secret_once(
    app: Any, partner: Any, client: Any
) -> None:
    listing = page_text(client.get("/dashboard/"))
    assert 'href="/dashboard/webhooks">Webhooks</a>' in listing  # in the menu
    answer = add(client, HOOK, "agreement.accepted", "relationship.began")
    assert answer.status_code == 201
    assert answer.headers["Cache-Control"] == "no-store"  # not kept by the browser either
    shown = page_text(answer)
    (endpoint,) = stored(app)
    secret = webhooks.secret_of(endpoint, seal(app))
    assert secret.startswith("whsec_")
    assert f'<code id="secret" dir="ltr">{secret}</code>' in shown
    assert "Portal-Signature" in shown
    assert "only time the secret is shown" in shown
    assert endpoint.events == ["agreement.accepted", "relationship.began"]
    assert endpoint.url == HOOK
    # Not in the session, and never again on a page.
    with client.session_transaction() as cookie:
        assert secret not in repr(dict(cookie))
    again = page_text(client.get("/dashboard/webhooks"))
    assert HOOK in again
    assert "<code>agreement.accepted</code><br><code>relationship.began</code>" in again
    assert secret not in again
    one = page_text(client.get(f"/dashboard/webhooks/{endpoint.id}"))
    assert HOOK in one
    assert secret not in one
    assert "Nothing has been sent to this webhook yet." in one


def test_no_event_ticked_means_every_event(app: Any, partner: Any, client: Any) -> None:
    assert add(client, HOOK).status_code == 201
    (endpoint,) = stored(app)
    assert endpoint.events == []
    assert "All events" in page_text(client.get("/dashboard/webhooks"))


@pytest.mark.parametrize(
    "url",
    [
        "",
        "hooks.example.com/portal",
        "http://hooks.example.com/portal",
        "https://127.0.0.1/portal",
        "https://user:secret@hooks.example.com/portal",
        "https://hooks.example.com/" + "x" * 2000,
    ],
)
def test_a_bad_url_is_shown_at_its_field_and_adds_nothing(
    app: Any, partner: Any, client: Any, url: str
) -> None:
    answer = add(client, url, "agreement.accepted")
    assert answer.status_code == 400
    shown = page_text(answer)
    assert 'aria-invalid="true" aria-describedby="url-problem"' in shown
    assert '<p class="problem" id="url-problem">Enter an https:// address that can be' in shown
    assert '<li><a href="#url">Enter an https:// address' in shown
    # What was typed and ticked is kept, to be corrected.
    assert f'value="{url[:2001]}"' in answer.get_data(as_text=True).replace("&amp;", "&")
    assert 'value="agreement.accepted" checked' in shown
    assert stored(app) == []


def test_the_url_problem_is_said_in_the_readers_language(
    app: Any, partner: Any, client: Any
) -> None:
    page = client.get("/dashboard/webhooks")
    client.post(
        "/language", data={"csrf_token": csrf(page), "lang": "de", "next": "/dashboard/webhooks"}
    )
    shown = page_text(add(client, "http://10.0.0.1/portal"))
    assert '<html lang="de"' in shown
    assert "Geben Sie eine https://-Adresse ein" in shown
    assert "Enter an https:// address" not in shown


def test_an_unknown_event_type_is_refused(app: Any, partner: Any, client: Any) -> None:
    answer = add(client, HOOK, "agreement.signed")
    assert answer.status_code == 400
    assert '<p class="problem" id="events-problem">Check this field.</p>' in page_text(answer)
    assert stored(app) == []


def test_a_form_without_its_csrf_token_adds_nothing(app: Any, partner: Any, client: Any) -> None:
    answer = client.post("/dashboard/webhooks", data={"url": HOOK})
    assert answer.status_code == 400
    assert stored(app) == []


def test_at_most_ten_webhooks(app: Any, partner: Any, client: Any) -> None:
    for n in range(webhooks.MAX_ENDPOINTS - 1):
        registered(app, partner.partner_id, f"https://hooks.example.com/{n}")
    token = csrf(client.get("/dashboard/webhooks"))
    assert add(client, HOOK).status_code == 201
    full = page_text(client.get("/dashboard/webhooks"))
    assert "You have 10 webhooks, as many as a partner may have." in full
    assert 'action="/dashboard/webhooks"' not in full
    late = client.post("/dashboard/webhooks", data={"csrf_token": token, "url": HOOK + "&x"})
    assert late.status_code == 409
    assert len(stored(app)) == webhooks.MAX_ENDPOINTS


# --- deliveries ----------------------------------------------------------------------------------


def test_deliveries_are_listed_and_a_failed_one_is_sent_again(
    make_app: Any, make_api: Any, receiver: Any
) -> None:
    app = make_app(WEBHOOK_ALLOW_PRIVATE=True, WEBHOOK_RETRY_BASE_SECONDS=0, WEBHOOK_MAX_ATTEMPTS=3)
    api = make_api()
    api.client = client = app.test_client()
    add_user(app, api.partner_id, "admin@fabrikam.example.test")
    sign_in(client, "admin@fabrikam.example.test")
    assert add(client, receiver.url, "customer.signedIn").status_code == 201
    (endpoint,) = stored(app)
    receiver.answers = [500, 503, 500]
    journey(app, api)
    for _ in range(3):
        delivery.run_once(app)
    page = page_text(client.get(f"/dashboard/webhooks/{endpoint.id}"))
    assert "<code>customer.signedIn</code>" in page
    assert "Customer signed in" in page
    assert "<td>Delivery failed</td>" in page
    assert '<td class="number">3</td>' in page
    assert "<td>500</td>" in page
    assert "HTTP 500: no" in page
    with app.app_context():
        (failed,) = db.session().scalars(select(WebhookDelivery))
    resent = client.post(
        f"/dashboard/webhooks/{endpoint.id}/deliveries/{failed.id}/resend",
        data={"csrf_token": csrf(client.get(f"/dashboard/webhooks/{endpoint.id}"))},
    )
    assert resent.status_code == 302
    assert resent.headers["Location"].endswith(f"/dashboard/webhooks/{endpoint.id}?done=resent")
    assert state_of(app, failed.id) == (WebhookStatus.QUEUED, 0)
    waiting = page_text(client.get(resent.headers["Location"]))
    assert "The delivery will be sent again in a moment." in waiting
    assert "<td>Waiting to be sent</td>" in waiting
    delivery.run_once(app)
    assert len(receiver.got) == 4
    assert state_of(app, failed.id) == (WebhookStatus.DELIVERED, 1)
    done = page_text(client.get(f"/dashboard/webhooks/{endpoint.id}"))
    assert "<td>Delivered</td>" in done
    assert "<td>200</td>" in done


def test_a_delivery_of_another_webhook_cannot_be_sent_again_through_this_one(
    app: Any, partner: Any, client: Any
) -> None:
    first = registered(app, partner.partner_id)
    second = registered(app, partner.partner_id, HOOK + "&second")
    sent = queued_delivery(app, partner, second, failed=True)
    token = csrf(client.get("/dashboard/webhooks"))
    wrong = f"/dashboard/webhooks/{first}/deliveries/{sent}/resend"
    assert client.post(wrong, data={"csrf_token": token}).status_code == 404
    assert state_of(app, sent)[0] == WebhookStatus.FAILED


# --- deleting ------------------------------------------------------------------------------------


def test_an_admin_deletes_a_webhook(app: Any, partner: Any, client: Any) -> None:
    endpoint_id = registered(app, partner.partner_id)
    waiting = queued_delivery(app, partner, endpoint_id)
    assert state_of(app, waiting) == (WebhookStatus.QUEUED, 0)
    page = client.get(f"/dashboard/webhooks/{endpoint_id}")
    assert "Delete webhook</button>" in page_text(page)
    gone = client.post(f"/dashboard/webhooks/{endpoint_id}/delete", data={"csrf_token": csrf(page)})
    assert gone.status_code == 302
    assert gone.headers["Location"].endswith("/dashboard/webhooks?done=deleted")
    listing = page_text(client.get(gone.headers["Location"]))
    assert "The webhook was deleted" in listing
    assert HOOK not in listing
    assert client.get(f"/dashboard/webhooks/{endpoint_id}").status_code == 404
    assert stored(app)[0].disabled_at is not None
    assert state_of(app, waiting)[0] == WebhookStatus.FAILED  # not sent after all


# --- who may -------------------------------------------------------------------------------------


def test_sales_agents_see_webhooks_but_cannot_change_them(app: Any, api: Any, client: Any) -> None:
    endpoint_id = registered(app, api.partner_id)
    sent = queued_delivery(app, api, endpoint_id, failed=True)
    add_user(app, api.partner_id, "sales@fabrikam.example.test", UserRole.SALES_AGENT)
    sign_in(client, "sales@fabrikam.example.test")
    listing = client.get("/dashboard/webhooks")
    assert listing.status_code == 200
    shown = page_text(listing)
    assert HOOK in shown
    assert "Only admin agents can add and delete webhooks" in shown
    assert 'action="/dashboard/webhooks"' not in shown
    one = page_text(client.get(f"/dashboard/webhooks/{endpoint_id}"))
    assert "HTTP 500: no" in one
    assert "/resend" not in one
    assert "/delete" not in one
    token = csrf(listing)
    refused = [
        client.post("/dashboard/webhooks", data={"csrf_token": token, "url": HOOK + "&mine"}),
        client.post(f"/dashboard/webhooks/{endpoint_id}/delete", data={"csrf_token": token}),
        client.post(
            f"/dashboard/webhooks/{endpoint_id}/deliveries/{sent}/resend",
            data={"csrf_token": token},
        ),
    ]
    assert [answer.status_code for answer in refused] == [403, 403, 403]
    assert all("You cannot change the webhooks." in page_text(a) for a in refused)
    assert [e.id for e in stored(app)] == [endpoint_id]
    assert stored(app)[0].disabled_at is None
    assert state_of(app, sent) == (WebhookStatus.FAILED, 8)


# --- isolation -----------------------------------------------------------------------------------


def test_another_partners_webhook_is_not_found(app: Any, make_api: Any, client: Any) -> None:
    mine = make_api(name="Mine Inc")
    theirs = make_api(name="Theirs Inc")
    foreign = registered(app, theirs.partner_id, "https://theirs.example.com/hooks")
    sent = queued_delivery(app, theirs, foreign, failed=True)
    add_user(app, mine.partner_id, "me@mine.example.test")
    sign_in(client, "me@mine.example.test")
    listing = client.get("/dashboard/webhooks")
    assert "theirs.example.com" not in page_text(listing)
    token = csrf(listing)
    base = f"/dashboard/webhooks/{foreign}"
    for method, path in (
        ("get", base),
        ("post", base + "/delete"),
        ("post", f"{base}/deliveries/{sent}/resend"),
        ("get", "/dashboard/webhooks/00000000-0000-0000-0000-000000000000"),
        ("get", "/dashboard/webhooks/not-an-id"),
    ):
        answer = getattr(client, method)(path, data={"csrf_token": token})
        assert answer.status_code == 404, (method, path)
        assert "theirs.example.com" not in page_text(answer)
    assert stored(app)[0].disabled_at is None
    assert state_of(app, sent) == (WebhookStatus.FAILED, 8)
    assert count(app, WebhookEndpoint) == 1
