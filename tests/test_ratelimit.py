"""Sign-in limits hold across the worker processes of real servers: on the embedded defaults
(counted in the database), and in Redis when it is configured; with Redis configured and down,
sign-in is refused with a 503, never let through uncounted."""

from __future__ import annotations

import http.cookiejar
import re
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tests.test_dashboard import PASSWORD, add_user
from tests.test_serve import free_port

REDIS_URL = "redis://127.0.0.1:6379/0"

#: The two sign-in forms: path and the name of the account field.
FORMS = {"customer": ("/signin", "user_name"), "dashboard": ("/dashboard/signin", "email")}

#: Real servers: a few seconds each.
pytestmark = pytest.mark.slow


def attempt(base: str, form: str, account: str, password: str) -> tuple[int, dict[str, str]]:
    """One sign-in over a fresh connection, as a new browser would: status and headers."""
    path, field = FORMS[form]
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect())
    with opener.open(f"{base}{path}", timeout=10) as page:
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.read().decode()).group(1)
    data = urllib.parse.urlencode(
        {"csrf_token": token, field: account, "password": password}
    ).encode()
    request = urllib.request.Request(f"{base}{path}", data=data, headers={"Connection": "close"})
    try:
        with opener.open(request, timeout=10) as response:
            return int(response.status), dict(response.headers)
    except urllib.error.HTTPError as error:
        headers = dict(error.headers)
        body = error.read().decode()
        error.close()
        return int(error.code), {**headers, "body": body}


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a successful sign-in answers 302: keep it as the answer


@pytest.fixture
def accounts(app: Any, api: Any) -> dict[str, tuple[str, str]]:
    """A customer and a dashboard user, each with the right password; and two more, untouched."""
    customer = api.create_customer()["userCredentials"]
    other = api.create_customer()["userCredentials"]
    add_user(app, api.partner_id, "avery@fabrikam.example.test")
    add_user(app, api.partner_id, "blake@fabrikam.example.test")
    return {
        "customer": (customer["userName"], customer["password"]),
        "other customer": (other["userName"], other["password"]),
        "dashboard": ("avery@fabrikam.example.test", PASSWORD),
        "other dashboard": ("blake@fabrikam.example.test", PASSWORD),
    }


def check_limit_holds(bases: list[str], accounts: dict[str, tuple[str, str]]) -> None:
    """Fifteen wrong passwords for one account, over fresh connections spread over ``bases``'
    workers: five answers, then only 429 with Retry-After, even for the right password; another
    account is not affected. The same for both sign-in forms."""
    for form in FORMS:
        account, password = accounts[form]
        answers = [attempt(bases[n % len(bases)], form, account, f"wrong {n}") for n in range(15)]
        assert [status for status, _ in answers] == [401] * 5 + [429] * 10, (form, answers)
        for _, headers in answers[5:]:
            assert 0 < int(headers["Retry-After"]) <= 15 * 60
        assert attempt(bases[0], form, account, password)[0] == 429
        other, other_password = accounts[f"other {form}"]
        assert attempt(bases[-1], form, other, other_password)[0] == 302


def test_the_embedded_defaults_count_failures_across_workers(serving, accounts):
    """No setting at all: two workers (portal serve's default) count in the database."""
    check_limit_holds([serving()], accounts)


def test_the_embedded_defaults_count_failures_across_servers(serving, accounts):
    check_limit_holds([serving(workers=1), serving(workers=1)], accounts)


def test_the_limit_per_address_holds_across_workers_and_both_forms(serving, accounts):
    """Guesses at many accounts from one address: the address's limit stops them, whichever
    worker and form they reach."""
    base = serving(PORTAL_SIGNIN_LIMIT_ADDRESS="8 per 15 minutes")
    statuses = [
        attempt(base, form, f"nobody{n}@example.test", "guess")[0]
        for n in range(6)
        for form in FORMS
    ]
    assert statuses == [401] * 8 + [429] * 4


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    prefix = f"portal-test-{uuid.uuid4().hex}"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"*{prefix}*"):
        client.delete(key)
    client.close()


def test_redis_counts_failures_across_servers_and_workers(serving, accounts, redis_prefix):
    settings = {
        "PORTAL_RATELIMIT_STORAGE_URI": REDIS_URL,
        "PORTAL_RATELIMIT_KEY_PREFIX": redis_prefix,
    }
    check_limit_holds([serving(**settings), serving(**settings)], accounts)
    # The counts are in Redis, under the prefix: nothing was counted in the database.
    client = redis.Redis.from_url(REDIS_URL)
    assert list(client.scan_iter(f"*{redis_prefix}*"))
    client.close()


def test_sign_in_fails_closed_when_redis_is_down(serving, accounts):
    """A configured Redis that does not answer: every sign-in gets a clear 503 (retryable),
    nothing is let through uncounted, and pages that need no counting still work."""
    base = serving(PORTAL_RATELIMIT_STORAGE_URI=f"redis://127.0.0.1:{free_port()}/0")
    for form in FORMS:
        account, password = accounts[form]
        status, headers = attempt(base, form, account, password)
        assert status == 503
        assert "Sign-in is unavailable" in headers["body"]
        assert "Traceback" not in headers["body"]
    with urllib.request.urlopen(f"{base}/signin", timeout=10) as page:
        assert page.status == 200
