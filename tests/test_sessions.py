"""Sessions end with the credentials they were opened with: a password change, a new invitation,
a withdrawal, an expired temporary password, and (dashboard) a change of role or password and a
removal end every other session of the account at once (ASVS 7.4.3). Sign-in and a password
change give the browser a new session id (ASVS 7.2.4)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from sqlalchemy import select

from portal.core import db
from portal.core.models import CustomerCredential, PartnerUser, UserRole
from portal.domain import signin, users
from tests import test_dashboard as dash
from tests.conftest import Api
from tests.test_pages import (
    NEW_PASSWORD,
    change_password,
    csrf,
    invited,
    sign_in_from_link,
)

OTHER_PASSWORD = "another long passphrase"


def signed_in(client: Any) -> bool:
    """Whether ``client`` still holds a live customer session (a signed-in page answers)."""
    response = client.get("/password")
    return response.status_code == 200


def sign_in(client: Any, user_name: str, password: str) -> Any:
    page = client.get("/signin")
    return client.post(
        "/signin",
        data={"csrf_token": csrf(page), "user_name": user_name, "password": password},
    )


def password_in_use(app: Any, user_name: str) -> str:
    with app.app_context():
        return (
            db.session()
            .scalars(
                select(CustomerCredential.password_hash).where(
                    CustomerCredential.user_name == user_name
                )
            )
            .one()
        )


def test_a_password_change_ends_the_other_browsers_temporary_session(app, api):
    """The account takeover: two browsers signed in with the same temporary password (a
    forwarded email). Once one chooses a password, the other can set none of its own."""
    _, made = invited(api)
    owner, intruder = app.test_client(), app.test_client()
    assert sign_in_from_link(owner, made).status_code == 302
    assert sign_in_from_link(intruder, made).status_code == 302
    intruders_form = intruder.get("/password")
    assert intruders_form.status_code == 200

    assert change_password(owner).headers["Location"].endswith("/agreement")
    chosen = password_in_use(app, made["userName"])

    # The intruder's form was valid a moment ago; its post now finds no session.
    late = intruder.post(
        "/password",
        data={
            "csrf_token": csrf(intruders_form),
            "password": OTHER_PASSWORD,
            "repeat": OTHER_PASSWORD,
        },
    )
    assert late.status_code == 302
    assert late.headers["Location"].startswith("/signin")
    assert not signed_in(intruder)
    assert password_in_use(app, made["userName"]) == chosen
    # The owner goes on, and signs in with the chosen password.
    assert signed_in(owner)
    assert sign_in(app.test_client(), made["userName"], NEW_PASSWORD).status_code == 302


def test_a_new_invitation_ends_every_session_of_the_account(app, api):
    customer, made = invited(api)
    temporary, activated = app.test_client(), app.test_client()
    sign_in_from_link(temporary, made)
    sign_in_from_link(activated, made)
    change_password(activated)  # ends ``temporary`` already; sign it in again below
    assert not signed_in(temporary)
    assert sign_in(temporary, made["userName"], NEW_PASSWORD).status_code == 302
    assert signed_in(temporary)
    assert signed_in(activated)

    again = api.post(f"/v1/customers/{customer['id']}/invitations", json={}).get_json()
    assert not signed_in(temporary)
    assert not signed_in(activated)
    # Only the new invitation's password works now, and it opens a session that lives.
    fresh = app.test_client()
    assert sign_in(fresh, made["userName"], NEW_PASSWORD).status_code == 401
    assert sign_in_from_link(fresh, again).status_code == 302
    assert signed_in(fresh)


def test_a_withdrawal_ends_the_temporary_session(app, api):
    customer, made = invited(api)
    browser = app.test_client()
    sign_in_from_link(browser, made)
    assert signed_in(browser)
    invitation = f"/v1/customers/{customer['id']}/invitations/{made['id']}"
    assert (
        api.client.delete(invitation, headers={"Authorization": f"Bearer {api.key}"}).status_code
        == 200
    )
    assert not signed_in(browser)
    assert sign_in(app.test_client(), made["userName"], made["password"]).status_code == 401


def test_a_temporary_session_ends_when_its_password_expires(make_app, api):
    """Kept alive by use all along, a session on a temporary password still ends with it."""
    short = make_app(INVITATION_MAX_AGE=3600)
    partner = Api(short.test_client(), api.partner_id, api.key, api.kind)
    _, made = invited(partner)
    browser = short.test_client()
    start = datetime.now(UTC)
    with time_machine.travel(start, tick=False):
        sign_in_from_link(browser, made)
    for minutes in (20, 40, 59):
        with time_machine.travel(start + timedelta(minutes=minutes), tick=False):
            assert signed_in(browser)
    with time_machine.travel(start + timedelta(minutes=60, seconds=1), tick=False):
        assert not signed_in(browser)


def test_changing_an_activated_password_needs_the_current_one(app, api):
    _, made = invited(api)
    browser, elsewhere = app.test_client(), app.test_client()
    sign_in_from_link(browser, made)
    change_password(browser)
    assert sign_in(elsewhere, made["userName"], NEW_PASSWORD).status_code == 302
    chosen = password_in_use(app, made["userName"])

    form = browser.get("/password")
    assert 'name="current"' in form.get_data(as_text=True)
    for current in (None, "", "not the password"):
        data = {"csrf_token": csrf(form), "password": OTHER_PASSWORD, "repeat": OTHER_PASSWORD}
        if current is not None:
            data["current"] = current
        refused = browser.post("/password", data=data)
        assert refused.status_code == 401
        assert "The current password is not right." in refused.get_data(as_text=True)
        assert password_in_use(app, made["userName"]) == chosen
        assert signed_in(elsewhere)

    cookie_before = browser.get_cookie("session").value
    done = browser.post(
        "/password",
        data={
            "csrf_token": csrf(form),
            "current": NEW_PASSWORD,
            "password": OTHER_PASSWORD,
            "repeat": OTHER_PASSWORD,
        },
    )
    assert done.status_code == 302
    assert password_in_use(app, made["userName"]) != chosen
    # The other browser is signed out; this one goes on, under a new session id.
    assert not signed_in(elsewhere)
    assert signed_in(browser)
    assert browser.get_cookie("session").value != cookie_before
    assert sign_in(app.test_client(), made["userName"], OTHER_PASSWORD).status_code == 302
    assert sign_in(app.test_client(), made["userName"], NEW_PASSWORD).status_code == 401


def test_the_first_password_form_asks_for_no_current_password(app, api):
    _, made = invited(api)
    browser = app.test_client()
    sign_in_from_link(browser, made)
    assert 'name="current"' not in browser.get("/password").get_data(as_text=True)


def test_wrong_current_passwords_count_as_failed_sign_ins(app, api):
    _, made = invited(api)
    browser = app.test_client()
    sign_in_from_link(browser, made)
    change_password(browser)
    form = browser.get("/password")
    limit = int(app.config["SIGNIN_LIMIT_ACCOUNT"].split()[0])
    statuses = [
        browser.post(
            "/password",
            data={
                "csrf_token": csrf(form),
                "current": f"guess {n}",
                "password": OTHER_PASSWORD,
                "repeat": OTHER_PASSWORD,
            },
        ).status_code
        for n in range(limit + 1)
    ]
    assert statuses == [401] * limit + [429]
    # The account is locked for sign-in too, right password or not.
    assert sign_in(app.test_client(), made["userName"], NEW_PASSWORD).status_code == 429


def test_of_two_changes_made_at_once_only_the_first_wins(app, api):
    """Both sessions pass the checks (same generation); the conditional write lets one through."""
    _, made = invited(api)
    browsers = app.test_client(), app.test_client()
    tokens = []
    for browser in browsers:
        sign_in_from_link(browser, made)
        with browser.session_transaction() as cookie:
            tokens.append(cookie["sid"])
    peppers = app.extensions["portal.peppers"]
    idle, max_age = timedelta(hours=1), timedelta(days=1)
    with app.app_context():
        session = db.session()
        live = [signin.current(session, token, idle, max_age) for token in tokens]
        assert all(live)
        # As two requests would: both check first, then both write.
        hashes = [
            signin.new_password_hash(session, one, f"{NEW_PASSWORD} {n}", None, peppers)
            for n, one in enumerate(live)
        ]
        session.commit()
        signin.change_password(session, live[0], hashes[0], ip_address="", user_agent="")
        session.commit()
        with pytest.raises(signin.SessionOver):
            signin.change_password(session, live[1], hashes[1], ip_address="", user_agent="")
        session.rollback()
    assert sign_in(app.test_client(), made["userName"], f"{NEW_PASSWORD} 0").status_code == 302
    assert sign_in(app.test_client(), made["userName"], f"{NEW_PASSWORD} 1").status_code == 401
    assert not signed_in(browsers[1])


# --- dashboard users -------------------------------------------------------------------------


@pytest.fixture
def two_browsers(app: Any, api: Any) -> tuple[Any, Any]:
    dash.add_user(app, api.partner_id, "avery@fabrikam.example.test")
    browsers = app.test_client(), app.test_client()
    for browser in browsers:
        assert dash.sign_in(browser, "avery@fabrikam.example.test").status_code == 302
        assert browser.get("/dashboard/").status_code == 200
    return browsers


def dashboard_signed_in(client: Any) -> bool:
    return client.get("/dashboard/").status_code == 200


def _user(app: Any) -> Any:
    return (
        db.session()
        .scalars(select(PartnerUser).where(PartnerUser.email == "avery@fabrikam.example.test"))
        .one()
    )


@pytest.mark.parametrize(
    "change",
    [
        lambda s, u: users.set_role(s, u, UserRole.SALES_AGENT, actor="test"),
        lambda s, u: users.set_password(s, u, OTHER_PASSWORD, actor="test"),
        lambda s, u: users.remove(s, u, actor="test"),
    ],
    ids=["role", "password", "removal"],
)
def test_a_dashboard_users_change_ends_all_their_sessions(app, two_browsers, change):
    with app.app_context():
        session = db.session()
        change(session, _user(app))
        session.commit()
    assert not any(dashboard_signed_in(browser) for browser in two_browsers)


def test_a_role_taken_away_is_not_kept_by_a_browser_signed_in_before(app, api, two_browsers):
    customer = api.create_customer()
    browser = two_browsers[0]
    page = browser.get(f"/dashboard/customers/{customer['id']}")
    assert "attest" in page.get_data(as_text=True).lower()
    with app.app_context():
        session = db.session()
        users.set_role(session, _user(app), UserRole.SALES_AGENT, actor="test")
        session.commit()
    attest = browser.post(
        f"/dashboard/customers/{customer['id']}/attest",
        data={
            "csrf_token": dash.csrf(page),
            "first_name": "Ana",
            "last_name": "Silva",
            "email": "ana@contoso.example.test",
            "date": "2024-06-14",
        },
    )
    assert attest.status_code == 302
    assert attest.headers["Location"].startswith("/dashboard/signin")
    status = api.get(f"/v1/customers/{customer['id']}/acceptanceStatus").get_json()
    assert status["acceptance"] is None


def test_cli_changes_to_dashboard_users_end_their_sessions(app, runner, two_browsers):
    from portal.cli import main

    result = runner.invoke(
        main, ["partners", "users", "role", "avery@fabrikam.example.test", "sales-agent"]
    )
    assert result.exit_code == 0, result.output
    assert not any(dashboard_signed_in(browser) for browser in two_browsers)
    for browser in two_browsers:
        dash.sign_in(browser, "avery@fabrikam.example.test")
    result = runner.invoke(
        main,
        ["partners", "users", "password", "avery@fabrikam.example.test"],
        env={"PORTAL_NEW_USER_PASSWORD": OTHER_PASSWORD},
    )
    assert result.exit_code == 0, result.output
    assert not any(dashboard_signed_in(browser) for browser in two_browsers)
    assert dash.sign_in(two_browsers[0], "avery@fabrikam.example.test").status_code == 401
    assert (
        dash.sign_in(two_browsers[0], "avery@fabrikam.example.test", OTHER_PASSWORD).status_code
        == 302
    )
    result = runner.invoke(main, ["partners", "users", "remove", "avery@fabrikam.example.test"])
    assert result.exit_code == 0, result.output
    assert not dashboard_signed_in(two_browsers[0])
    assert (
        dash.sign_in(two_browsers[0], "avery@fabrikam.example.test", OTHER_PASSWORD).status_code
        == 401
    )
    unknown = runner.invoke(main, ["partners", "users", "remove", "nobody@example.test"])
    assert unknown.exit_code != 0
    assert "No dashboard user" in unknown.output


def test_the_session_id_changes_at_dashboard_sign_in(app, api):
    dash.add_user(app, api.partner_id, "avery@fabrikam.example.test")
    browser = app.test_client()
    browser.get("/dashboard/signin")
    before = browser.get_cookie("session").value
    dash.sign_in(browser, "avery@fabrikam.example.test")
    assert browser.get_cookie("session").value != before


@pytest.mark.slow
def test_a_password_change_ends_the_other_session_in_every_worker(serving, api):
    """Through a real server with two workers: fresh connections land on either, and each of
    them sees the other browser's session over at once."""
    import http.cookiejar
    import re
    import urllib.error
    import urllib.parse
    import urllib.request

    base = serving()
    _, made = invited(api)

    class Stay(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    def browser() -> Any:
        jar = http.cookiejar.CookieJar()
        return urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), Stay())

    def call(opener: Any, path: str, form: dict[str, str] | None = None) -> tuple[int, str]:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        request = urllib.request.Request(base + path, data=data, headers={"Connection": "close"})
        try:
            with opener.open(request, timeout=10) as response:
                return int(response.status), response.read().decode()
        except urllib.error.HTTPError as answer:
            body = answer.read().decode()
            answer.close()
            return int(answer.code), body

    def token_of(page: str) -> str:
        return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)

    owner, intruder = browser(), browser()
    for one in (owner, intruder):
        _, page = call(one, "/signin")
        form = {"csrf_token": token_of(page), "user_name": made["userName"]}
        assert call(one, "/signin", {**form, "password": made["password"]})[0] == 302
    statuses = {call(intruder, "/password")[0] for _ in range(6)}
    assert statuses == {200}
    _, page = call(owner, "/password")
    new = {"password": NEW_PASSWORD, "repeat": NEW_PASSWORD, "csrf_token": token_of(page)}
    assert call(owner, "/password", new)[0] == 302
    # Six fresh connections: whichever worker answers, the intruder is signed out.
    statuses = {call(intruder, "/password")[0] for _ in range(6)}
    assert statuses == {302}
    assert {call(owner, "/password")[0] for _ in range(6)} == {200}
