"""The sign-in throttle and its database storage: fixed windows counted by one atomic statement,
attempts reserved before the password is checked, refunds, bad settings refused at start."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import time_machine

from portal import create_app
from portal.core import db, throttle
from portal.core.config import ConfigError


@pytest.fixture
def storage(app: Any) -> throttle.DatabaseStorage:
    with app.app_context():
        return throttle.DatabaseStorage(db.engine())


def test_a_counter_counts_within_its_window_and_starts_again_after(storage):
    start = time.time()
    with time_machine.travel(start, tick=False):
        assert [storage.incr("k", 60) for _ in range(3)] == [1, 2, 3]
        assert storage.get("k") == 3
        assert storage.get_expiry("k") == pytest.approx(start + 60)
        assert storage.get("other") == 0
    with time_machine.travel(start + 59, tick=False):
        assert storage.incr("k", 60) == 4  # the window is not moved by a hit
        assert storage.get_expiry("k") == pytest.approx(start + 60)
    with time_machine.travel(start + 61, tick=False):
        assert storage.get("k") == 0
        assert storage.incr("k", 60) == 1
        assert storage.get_expiry("k") == pytest.approx(start + 121)


def test_a_refund_never_goes_below_zero_nor_makes_a_counter(storage):
    assert storage.incr("k", 60) == 1
    assert storage.incr("k", 60, amount=-1) == 0
    assert storage.incr("k", 60, amount=-1) == 0
    assert storage.incr("fresh", 60, amount=-1) == 0
    assert storage.get("fresh") == 0


def test_clear_and_reset(storage):
    storage.incr("a", 60)
    storage.incr("b", 60)
    storage.clear("a")
    assert storage.get("a") == 0
    assert storage.get("b") == 1
    assert storage.reset() == 1
    assert storage.get("b") == 0
    assert storage.check()


def test_keys_are_stored_hashed(app, storage):
    from sqlalchemy import select

    from portal.core.models import RateLimitCounter

    storage.incr("account:admin@contoso.example.test", 60)
    with app.app_context():
        keys = db.session().scalars(select(RateLimitCounter.key)).all()
    assert len(keys) == 1
    assert "contoso" not in keys[0]
    assert len(keys[0]) == 64


def test_expired_counters_are_swept(app, storage):
    from sqlalchemy import func, select

    from portal.core.models import RateLimitCounter

    start = time.time()
    with time_machine.travel(start, tick=False):
        for n in range(5):
            storage.incr(f"old {n}", 60)
    with time_machine.travel(start + 120, tick=False):
        storage.incr("new", 60)
    with app.app_context():
        assert db.session().scalar(select(func.count()).select_from(RateLimitCounter)) == 1


def test_parallel_attempts_cannot_pass_a_limit_together(app, storage):
    """Twenty attempts at once at an account allowed five: each takes its unit before its
    password is checked, so exactly five go on, however they interleave."""
    guard = throttle.Throttle(storage, {"account": "5 per minute", "address": "100 per minute"})
    start = threading.Barrier(20)
    results: list[str] = []

    def one() -> None:
        start.wait()
        try:
            guard.reserve(account="customer:someone", address="192.0.2.1")
            results.append("reserved")
        except throttle.TooManyAttempts:
            results.append("refused")

    threads = [threading.Thread(target=one) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["refused"] * 15 + ["reserved"] * 5


def test_a_success_gives_its_units_back_and_a_refusal_says_when_to_come_back(storage):
    guard = throttle.Throttle(storage, {"account": "2 per minute", "address": "100 per minute"})
    start = time.time()
    with time_machine.travel(start, tick=False):
        for _ in range(5):
            guard.reserve(account="a", address="x").succeeded()
        guard.reserve(account="a", address="x")
        guard.reserve(account="a", address="x")
    with time_machine.travel(start + 15, tick=False):
        with pytest.raises(throttle.TooManyAttempts) as refused:
            guard.reserve(account="a", address="x")
        assert refused.value.retry_after == 45
        assert refused.value.headers() == {"Retry-After": "45"}
        guard.reserve(account="b", address="x").succeeded()  # another account


def test_a_storage_that_cannot_be_reached_refuses(free_port_url):
    from limits.storage import storage_from_string

    unreachable = storage_from_string(free_port_url, wrap_exceptions=True)
    guard = throttle.Throttle(unreachable, {"account": "5 per minute"})
    with pytest.raises(throttle.SignInUnavailable):
        guard.reserve(account="a")


@pytest.fixture
def free_port_url() -> str:
    from tests.test_serve import free_port

    return f"redis://127.0.0.1:{free_port()}/0"


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("RATELIMIT_STORAGE_URI", "nosuch://here"),
        ("SIGNIN_LIMIT_ACCOUNT", "five a minute"),
        ("SIGNIN_LIMIT_ADDRESS", ""),
        ("TRUSTED_PROXIES", -1),
        ("TRUSTED_PROXIES", "two"),
    ],
)
def test_settings_that_cannot_work_stop_start_up(settings, setting, value):
    with pytest.raises(ConfigError):
        create_app({**settings, setting: value})


def test_a_client_over_its_address_limit_adds_no_counter_per_account_tried(app, storage):
    from sqlalchemy import func, select

    from portal.core.models import RateLimitCounter

    guard = throttle.Throttle(storage, {"address": "3 per minute", "account": "5 per minute"})
    for n in range(50):
        try:
            guard.reserve(address="192.0.2.1", account=f"customer:guess{n}")
        except throttle.TooManyAttempts:
            pass
    with app.app_context():
        rows = db.session().scalar(select(func.count()).select_from(RateLimitCounter))
    assert rows == 1 + 3  # the address's, and the three accounts tried before it was refused


def test_sweeps_at_once_neither_fail_nor_lose_a_count(app, storage):
    """Twenty failed sign-ins at once, each sweeping the same expired counters (PostgreSQL would
    deadlock two sweeps that lock the same rows in another order): every count is kept."""
    from sqlalchemy import func, select

    from portal.core.models import RateLimitCounter

    start = time.time() - 3600
    with time_machine.travel(start, tick=False):
        for n in range(300):
            storage.incr(f"old {n}", 60)
    ready = threading.Barrier(20)
    counts: list[int] = []

    def one(n: int) -> None:
        ready.wait()
        counts.append(storage.incr(f"new {n}", 60))

    threads = [threading.Thread(target=one, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counts == [1] * 20
    with app.app_context():
        left = db.session().scalar(select(func.count()).select_from(RateLimitCounter))
    assert left == 20
