"""How long a failed sign-in takes, by the state of the account it names.

A failed sign-in must cost the same whatever the account's state, or its timing tells who exists
and who still waits for a first sign-in (user names are ``admin@<domain>``, easy to guess). This
drives a real ``portal serve`` (gunicorn, SQLite in a temporary instance folder, or a throwaway
PostgreSQL schema) over HTTP: for every account state, fresh connections post a wrong password,
rounds interleaved in a shuffled order; the sign-in limits are raised so that none is refused.

The baseline, measured in the same run, is the unknown account: each state's median is printed as
a ratio to it. Equal work means ratios near 1.00 (the slow hash itself varies by some percent).

    .venv/bin/python bench/signin_timing.py                  # 40 rounds: about a minute
    .venv/bin/python bench/signin_timing.py --rounds 100
    .venv/bin/python bench/signin_timing.py --database-url postgresql://root@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
import uuid

from _common import (  # bench/ is on sys.path
    VENV_BIN,
    Cleanup,
    machine,
    request_once,
    run_cli,
    run_guarded,
    seed_instance,
    start_server,
    wait_until_answers,
)
from pages_bench import _CSRF, Browser, first_sign_in, found, invite_customer

DASHBOARD_PASSWORD = "bench: a dashboard password"  # noqa: S105 - a throwaway account


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40, help="attempts per account state")
    parser.add_argument("--database-url", help="PostgreSQL admin URL (a throwaway schema)")
    return parser.parse_args()


def failed_attempt(port: int, path: str, field: str, account: str) -> float:
    """Seconds the POST of a wrong password took (the form fetched first, not timed)."""
    browser = Browser(port)
    try:
        status, _, page = browser.go("GET", path)
        if status != 200:
            raise RuntimeError(f"GET {path}: {status}")
        form = {"csrf_token": found(_CSRF, page, "CSRF token"), field: account, "password": "wrong"}
        start = time.perf_counter()
        status, _, _ = browser.go("POST", path, form)
        took = time.perf_counter() - start
        if status != 401:
            raise RuntimeError(f"POST {path} for {account}: {status}, not 401")
        return took
    finally:
        browser.close()


def run(args: argparse.Namespace, cleanup: Cleanup) -> int:
    seeded = seed_instance(args.database_url, cleanup)
    env = {
        **seeded.env,
        "PORTAL_SIGNIN_LIMIT_ACCOUNT": "1000000 per hour",
        "PORTAL_SIGNIN_LIMIT_ADDRESS": "1000000 per hour",
    }
    key = seeded.api_key
    portal = start_server(
        "portal", [str(VENV_BIN / "portal"), "serve"], env, seeded.tempdir, cleanup
    )
    auth = {"Authorization": f"Bearer {key}"}
    wait_until_answers(portal, "/v1/agreements", auth)
    port = portal.port

    waiting = invite_customer(port, key)
    activated = invite_customer(port, key)
    first_sign_in(port, activated)
    withdrawn = invite_customer(port, key)
    path = f"/v1/customers/{withdrawn['customerId']}/invitations/{withdrawn['id']}"
    status, _ = request_once(port, "DELETE", path, auth)
    if status != 200:
        raise RuntimeError(f"DELETE {path}: {status}")
    partner_id = json.loads(run_cli(env, "partners", "list", "--json"))["items"][0]["id"]
    users_env = {**env, "PORTAL_NEW_USER_PASSWORD": DASHBOARD_PASSWORD}
    for email in ("avery@bench.example.test", "gone@bench.example.test"):
        run_cli(users_env, "partners", "users", "create", partner_id, email)
    run_cli(env, "partners", "users", "remove", "gone@bench.example.test")

    cases = {
        "customer, unknown (baseline)": ("/signin", "user_name", f"admin@{uuid.uuid4().hex}.test"),
        "customer, temporary password": ("/signin", "user_name", waiting["userName"]),
        "customer, own password": ("/signin", "user_name", activated["userName"]),
        "customer, invitation withdrawn": ("/signin", "user_name", withdrawn["userName"]),
        "dashboard, unknown (baseline)": (
            "/dashboard/signin",
            "email",
            "nobody@bench.example.test",
        ),
        "dashboard, user": ("/dashboard/signin", "email", "avery@bench.example.test"),
        "dashboard, removed user": ("/dashboard/signin", "email", "gone@bench.example.test"),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for case in cases.values():  # a warm-up each
        failed_attempt(port, *case)
    order = list(cases)
    for _ in range(args.rounds):
        random.shuffle(order)
        for name in order:
            times[name].append(failed_attempt(port, *cases[name]))

    print(f"\nmachine: {machine()}\nserved:  {seeded.served}\ndatabase: {seeded.db_label}")
    print(f"{args.rounds} failed sign-ins per state, fresh connection each, interleaved\n")
    print(f"{'account state':36} {'median':>9} {'p10':>9} {'p90':>9} {'vs baseline':>12}")
    baselines = {
        "customer": statistics.median(times["customer, unknown (baseline)"]),
        "dashboard": statistics.median(times["dashboard, unknown (baseline)"]),
    }
    for name, measured in times.items():
        ordered = sorted(measured)
        median = statistics.median(ordered)
        p10, p90 = ordered[len(ordered) // 10], ordered[(len(ordered) * 9) // 10]
        ratio = median / baselines[name.split(",")[0]]
        print(
            f"{name:36} {median * 1000:7.1f}ms {p10 * 1000:7.1f}ms {p90 * 1000:7.1f}ms "
            f"{ratio:11.2f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(run_guarded(run, parse_args()))
