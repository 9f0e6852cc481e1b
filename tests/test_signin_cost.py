"""Failed sign-ins cost the same whatever the account's state, so their timing names nobody: every
one spends exactly one slow password hash, and runs the same look-up. The times themselves are
measured by ``bench/signin_timing.py`` (speed is measured, not asserted)."""

from __future__ import annotations

from typing import Any

import pytest
import time_machine
from sqlalchemy import event

from portal.core import credentials, db
from tests import test_dashboard as dash
from tests.test_pages import NEW_PASSWORD, change_password, csrf, invited, sign_in_from_link


@pytest.fixture
def slow_hashes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every slow hash checked, in order (Werkzeug's, as the portal calls it)."""
    checked: list[str] = []
    real = credentials.check_password_hash

    def counting(stored: str, password: str) -> bool:
        checked.append(stored)
        return real(stored, password)

    monkeypatch.setattr(credentials, "check_password_hash", counting)
    return checked


@pytest.fixture
def statements(app: Any) -> list[str]:
    seen: list[str] = []
    with app.app_context():
        engine = db.engine()

    def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "rate_limit_counters" not in statement:  # the throttle's, the same for everyone
            seen.append(statement.split(" WHERE")[0])

    event.listen(engine, "before_cursor_execute", note)
    yield seen
    event.remove(engine, "before_cursor_execute", note)


def customer_accounts(app: Any, api: Any) -> dict[str, str]:
    """A user name in each state an account can be in."""
    _, waiting = invited(api)
    _, activated = invited(api)
    browser = app.test_client()
    sign_in_from_link(browser, activated)
    change_password(browser)
    withdrawn_customer, withdrawn = invited(api)
    api.client.delete(
        f"/v1/customers/{withdrawn_customer['id']}/invitations/{withdrawn['id']}",
        headers={"Authorization": f"Bearer {api.key}"},
    )
    return {
        "unknown": "admin@nobody.example.test",
        "temporary": waiting["userName"],
        "activated": activated["userName"],
        "withdrawn": withdrawn["userName"],
    }


def failed_sign_in(app: Any, path: str, field: str, account: str) -> int:
    browser = app.test_client()
    page = browser.get(path)
    response = browser.post(
        path, data={"csrf_token": csrf(page), field: account, "password": "a wrong password"}
    )
    return response.status_code


def test_every_failed_customer_sign_in_costs_one_slow_hash(app, api, slow_hashes, statements):
    accounts = customer_accounts(app, api)
    costs = {}
    for state, user_name in accounts.items():
        slow_hashes.clear()
        statements.clear()
        assert failed_sign_in(app, "/signin", "user_name", user_name) == 401
        costs[state] = (len(slow_hashes), statements.copy())
    assert {state: cost[0] for state, cost in costs.items()} == dict.fromkeys(accounts, 1)
    # The same statements for every state: nothing more is read for an account that exists.
    assert len({tuple(cost[1]) for cost in costs.values()}) == 1


def test_an_expired_temporary_password_costs_the_same(app, api, slow_hashes):
    from datetime import UTC, datetime, timedelta

    _, made = invited(api)
    later = datetime.now(UTC) + timedelta(seconds=app.config["INVITATION_MAX_AGE"] + 60)
    with time_machine.travel(later, tick=False):
        browser = app.test_client()
        page = browser.get("/signin")
        slow_hashes.clear()
        response = browser.post(
            "/signin",
            data={
                "csrf_token": csrf(page),
                "user_name": made["userName"],
                "password": made["password"],  # the right one, expired
            },
        )
    assert response.status_code == 401
    assert len(slow_hashes) == 1


def test_every_failed_dashboard_sign_in_costs_one_slow_hash(app, api, runner, slow_hashes):
    from portal.cli import main

    dash.add_user(app, api.partner_id, "avery@fabrikam.example.test")
    dash.add_user(app, api.partner_id, "gone@fabrikam.example.test")
    runner.invoke(main, ["partners", "users", "remove", "gone@fabrikam.example.test"])
    for account in (
        "nobody@fabrikam.example.test",
        "avery@fabrikam.example.test",
        "gone@fabrikam.example.test",
    ):
        slow_hashes.clear()
        assert failed_sign_in(app, "/dashboard/signin", "email", account) == 401
        assert len(slow_hashes) == 1, account
    # A removed user is refused with the right password too, at the same cost.
    browser = app.test_client()
    slow_hashes.clear()
    assert dash.sign_in(browser, "gone@fabrikam.example.test").status_code == 401
    assert len(slow_hashes) == 1


def test_successful_sign_ins_cost_one_slow_hash_too(app, api, slow_hashes):
    _, made = invited(api)
    browser = app.test_client()
    slow_hashes.clear()
    assert sign_in_from_link(browser, made).status_code == 302
    assert len(slow_hashes) == 1
    change_password(browser)
    other = app.test_client()
    page = other.get("/signin")
    slow_hashes.clear()
    response = other.post(
        "/signin",
        data={"csrf_token": csrf(page), "user_name": made["userName"], "password": NEW_PASSWORD},
    )
    assert response.status_code == 302
    assert len(slow_hashes) == 1
