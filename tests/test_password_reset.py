"""A customer's "forgot password": a signed, single-use, expiring link by email, the same answer
(and the same work) whether or not the account exists, and every session ended by the reset."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from sqlalchemy import func, select

from portal.core import db
from portal.core.models import Customer, Event, EventKind, OutboxMessage, PasswordResetRequest
from portal.domain import resets
from portal.mail import delivery
from tests.test_invitations import password_works
from tests.test_pages import NEW_PASSWORD, change_password, csrf, invited, sign_in_from_link
from tests.test_signin_cost import statements  # noqa: F401 - a fixture

pytestmark = pytest.mark.mail
NEWER = "a brand new passphrase 2026"


def activated(api: Any, client: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """A customer that chose its own password, signed in to ``client``."""
    customer, made = invited(api)
    sign_in_from_link(client, made)
    change_password(client)
    return customer, made


def ask(client: Any, user_name: str) -> Any:
    page = client.get("/password/forgot")
    return client.post("/password/forgot", data={"csrf_token": csrf(page), "user_name": user_name})


def send(app: Any) -> None:
    report = delivery.run_once(app)
    assert report is not None


def reset_link(smtp: Any) -> str:
    (message,) = [m for m in smtp.inbox.messages if "new password" in m["Subject"]]
    text = message.get_body(("plain",)).get_content()
    found = re.search(r"https://portal\.example\.test(/password/reset/\S+)", text)
    assert found, text
    return found.group(1)


def choose(client: Any, path: str, password: str = NEWER, repeat: str | None = None) -> Any:
    page = client.get(path)
    return client.post(
        path,
        data={
            "csrf_token": csrf(page),
            "password": password,
            "repeat": password if repeat is None else repeat,
        },
    )


def test_the_link_arrives_works_once_and_ends_every_session(app, api, client, smtp):
    customer, made = activated(api, client)
    other = app.test_client()
    assert ask(other, made["userName"].upper()).status_code == 200
    send(app)
    (message,) = smtp.inbox.messages
    with app.app_context():
        contact = db.session().get_one(Customer, customer["id"]).contact_email
    assert message["To"] == contact  # the account's address, as the invitation's
    path = reset_link(smtp)

    assert other.get(path).status_code == 200
    mismatch = choose(other, path, NEWER, "something else entirely")
    assert mismatch.status_code == 400
    assert password_works(app, customer["id"], NEW_PASSWORD)
    done = choose(other, path)
    assert done.status_code == 302
    assert "/signin?reset=1" in done.headers["Location"]
    assert password_works(app, customer["id"], NEWER)
    assert not password_works(app, customer["id"], NEW_PASSWORD)

    signed_out = client.get("/account")  # the session opened before the reset is over
    assert signed_out.status_code == 302
    assert "/signin" in signed_out.headers["Location"]
    assert other.get(path).status_code == 410  # once only
    assert choose_posted(other, path).status_code == 410
    with app.app_context():
        found = (
            db.session()
            .scalars(select(Event).where(Event.kind == EventKind.CUSTOMER_PASSWORD_CHANGED))
            .all()
        )
        assert [e.data for e in found][-1] == {"reset": True}


def choose_posted(client: Any, path: str) -> Any:
    token = csrf(client.get("/password/forgot"))
    return client.post(path, data={"csrf_token": token, "password": NEWER, "repeat": NEWER})


def test_unknown_and_known_accounts_get_the_same_answer_and_the_same_work(
    app,
    api,
    client,
    smtp,
    statements,  # noqa: F811 - the fixture imported above
):
    _, made = activated(api, app.test_client())
    answers = {}
    runs = {}
    for name, user_name in (("known", made["userName"]), ("unknown", "nobody@nowhere.test")):
        page = client.get("/password/forgot")
        statements.clear()
        response = client.post(
            "/password/forgot", data={"csrf_token": csrf(page), "user_name": user_name}
        )
        runs[name] = list(statements)
        answers[name] = (response.status_code, response.get_data(as_text=True))
    assert answers["known"] == answers["unknown"]
    assert answers["known"][0] == 200
    assert runs["known"] == runs["unknown"]
    assert runs["known"]  # it did store the request
    send(app)
    assert len(smtp.inbox.messages) == 1  # the unknown name got nothing, and no row says why
    with app.app_context():
        session = db.session()
        assert (
            session.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .where(OutboxMessage.kind == resets.RESET_EMAIL)
            )
            == 1
        )
        assert (
            session.scalar(
                select(func.count())
                .select_from(PasswordResetRequest)
                .where(PasswordResetRequest.handled_at.is_(None))
            )
            == 0
        )


def test_the_link_expires_after_an_hour(app, api, client, smtp):
    customer, made = activated(api, client)
    start = datetime.now(UTC)
    with time_machine.travel(start, tick=False):
        ask(app.test_client(), made["userName"])
        send(app)
    path = reset_link(smtp)
    with time_machine.travel(start + timedelta(minutes=59), tick=False):
        assert client.get(path).status_code == 200
    with time_machine.travel(start + timedelta(minutes=61), tick=False):
        assert client.get(path).status_code == 410
        assert choose_posted(app.test_client(), path).status_code == 410
    assert password_works(app, customer["id"], NEW_PASSWORD)


def test_a_changed_password_ends_an_unused_link_too(app, api, client, smtp):
    _, made = activated(api, client)
    ask(app.test_client(), made["userName"])
    send(app)
    path = reset_link(smtp)
    page = client.get("/password")
    client.post(
        "/password",
        data={
            "csrf_token": csrf(page),
            "current": NEW_PASSWORD,
            "password": NEWER,
            "repeat": NEWER,
        },
    )
    assert client.get(path).status_code == 410


@pytest.mark.parametrize(
    ("tampered", "status"),
    [("forged", 410), ("A" * 600, 410), ("x.y.z", 410), ("..%2f..%2fetc", 404), ("%00", 400)],
)
def test_a_link_that_is_not_ours_changes_nothing(app, api, client, tampered, status):
    customer, _ = activated(api, client)
    assert client.get(f"/password/reset/{tampered}").status_code == status
    assert password_works(app, customer["id"], NEW_PASSWORD)


def test_a_tampered_real_link_is_refused(app, api, client, smtp):
    customer, made = activated(api, client)
    ask(app.test_client(), made["userName"])
    send(app)
    path = reset_link(smtp)
    for changed in (path[:-1] + ("A" if path[-1] != "A" else "B"), path.replace(".", "x", 1)):
        assert client.get(changed).status_code == 410
        assert choose_posted(app.test_client(), changed).status_code == 410
    assert password_works(app, customer["id"], NEW_PASSWORD)


def test_asking_uses_the_sign_in_limits(app, api, client):
    _, made = activated(api, app.test_client())
    statuses = [ask(client, made["userName"]).status_code for _ in range(7)]
    assert statuses == [200] * 5 + [429] * 2
    unknown = [ask(app.test_client(), "nobody@nowhere.test").status_code for _ in range(7)]
    assert unknown == [200] * 5 + [429] * 2


def test_an_empty_user_name_is_asked_again(client):
    response = ask(client, "   ")
    assert response.status_code == 400
    assert "Enter your user name." in response.get_data(as_text=True)


def test_the_sign_in_page_offers_the_way_and_the_reset_ends_in_a_sign_in(client):
    body = client.get("/signin").get_data(as_text=True)
    assert 'href="/password/forgot"' in body
    assert "Your new password is saved" in client.get("/signin?reset=1").get_data(as_text=True)
