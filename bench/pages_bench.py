"""Throughput and latency of two customer pages, against a bare Flask app under the same gunicorn.

Run by hand from the project folder (about two minutes with the defaults):

    .venv/bin/python bench/pages_bench.py [--clients 16] [--seconds 10] [--rounds 2] [--profile]
                                          [--database-url postgresql://root@127.0.0.1:5432/test]

The pages:

* ``agreement``: ``GET /agreement`` of a signed-in customer with a German culture (``de-DE``,
  country ``DE``): the page with the localised agreement links and the acceptance form;
* ``landing``: ``GET /invite/<token>``, the page an invitation link opens (check the link, show the
  sign-in form). Sent without a cookie, like a first visit from the email: the first GET (made
  while seeding) records the opening, the measured ones change nothing.

What it does, in one run:

1. makes a temporary instance folder with a SQLite database (or a throwaway schema in the
   PostgreSQL database given by ``--database-url``), runs ``portal db upgrade`` and
   ``portal partners create --json``, starts ``portal serve`` and creates a German customer and
   an invitation through the API (``POST /v1/customers``, ``POST .../invitations``);
2. signs in over HTTP like a browser: opens the link, posts ``/signin`` with the CSRF token, the
   user name and the temporary password, chooses a password on
   ``/password``; then every other client signs in with that password (one session per client;
   ``--shared-session``: all clients reuse the first cookie);
3. starts ``bench/baseline_server.py`` (constant HTML pages of the portal's sizes for the same
   paths, served by ``portal.server.run`` with the same settings) and drives each server in turn
   with ``--clients`` keep-alive HTTP/1.1 connections (the load generator of ``_common.py``),
   ABBA for each page;
4. checks every response (status 200 and ``name="accept"`` / ``name="user_name"`` in the body),
   and prints requests/s, p50/p95/p99, server CPU per request and the portal/baseline ratios
   next to the target (at least 0.40 of the baseline's rate for each page).

``--profile`` then stops the servers and profiles both pages in-process (Flask test client on the
same database and cookie; cProfile), beside the baseline app in-process.

Exit status: 0 when all responses were right (targets met or not), 1 on any wrong response or
failure. Only 127.0.0.1 is used; every subprocess and temporary file is removed at the end.
``PORTAL_SERVE_WORKERS`` / ``PORTAL_SERVE_THREADS`` reach both servers; every other ``PORTAL_*``
variable of the shell is ignored. Not a test: pytest collects only ``tests/``.
"""

from __future__ import annotations

import argparse
import cProfile
import http.client
import io
import json
import os
import pstats
import re
import sys
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from _common import (  # bench/ is on sys.path
    BENCH,
    HOST,
    OTHER_LOAD_WARNING,
    REQUEST_TIMEOUT,
    VENV_BIN,
    Cleanup,
    Phase,
    german_customer,
    machine,
    measure,
    percentile,
    request_once,
    run_guarded,
    seed_instance,
    start_server,
    stop_server,
    wait_until_answers,
)

TARGET_RATIO = 0.40
TARGET_CLIENTS = 16

AGREEMENT_MARKER = b'name="accept"'
LANDING_MARKER = b'name="user_name"'
#: What a German customer's browser sends; the page's language comes from the customer record.
ACCEPT_LANGUAGE = "de-DE,de;q=0.9,en;q=0.8"
USER_AGENT = "pages-bench/1.0"
NEW_PASSWORD = "bench: correct horse battery staple"  # noqa: S105 - a throwaway test account
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


# --- a browser over HTTP -----------------------------------------------------------------------


class Browser:
    """One visitor on one keep-alive connection: follows no redirect, keeps the session cookie."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT)
        self.cookie: str | None = None

    def go(
        self, method: str, path: str, form: dict[str, str] | None = None
    ) -> tuple[int, str, str]:
        """Status, Location header and body text."""
        headers = {
            "Accept": "text/html",
            "Accept-Language": ACCEPT_LANGUAGE,
            "User-Agent": USER_AGENT,
        }
        if self.cookie:
            headers["Cookie"] = f"session={self.cookie}"
        payload = None
        if form is not None:
            payload = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        self.conn.request(method, path, body=payload, headers=headers)
        response = self.conn.getresponse()
        body = response.read().decode()
        for value in response.headers.get_all("Set-Cookie") or []:
            name, _, rest = value.partition("=")
            if name.strip() == "session":
                self.cookie = rest.split(";", 1)[0] or None
        return response.status, response.getheader("Location", ""), body

    def close(self) -> None:
        self.conn.close()


def expect(
    what: str, got: tuple[int, str, str], status: int, location: str = "", marker: str = ""
) -> str:
    """The body, when ``got`` is ``status`` (redirecting to ``location``, holding ``marker``)."""
    code, where, body = got
    if code != status or not where.endswith(location) or marker not in body:
        raise RuntimeError(
            f"{what}: {code} {where!r}, want {status} {location!r} with {marker!r}:\n{body[:500]}"
        )
    return body


def found(pattern: re.Pattern[str], body: str, what: str) -> str:
    match = pattern.search(body)
    if match is None:
        raise RuntimeError(f"no {what} in the page:\n{body[:500]}")
    return match.group(1)


# --- seeding -----------------------------------------------------------------------------------


def invite_customer(port: int, key: str) -> dict[str, Any]:
    """A German customer and its invitation: link, user name, temporary password."""
    auth = {"Authorization": f"Bearer {key}"}
    status, raw = request_once(port, "POST", "/v1/customers", auth, german_customer())
    if status != 201:
        raise RuntimeError(f"POST /v1/customers: {status} {raw[:300]!r}")
    customer_id = json.loads(raw)["id"]
    path = f"/v1/customers/{customer_id}/invitations"
    status, raw = request_once(port, "POST", path, auth, {})
    if status != 201:
        raise RuntimeError(f"POST {path}: {status} {raw[:300]!r}")
    made: dict[str, Any] = json.loads(raw)
    made["customerId"] = customer_id
    return made


def first_sign_in(port: int, made: dict[str, Any]) -> tuple[str, str]:
    """From the link to the agreement page, as the customer does it the first time.

    Returns the signed-in session cookie and the landing page's path."""
    link = urlsplit(made["url"]).path
    browser = Browser(port)
    try:
        page = expect("GET the link", browser.go("GET", link), 200, marker='name="user_name"')
        form = {
            "csrf_token": found(_CSRF, page, "CSRF token"),
            "user_name": made["userName"],
            "password": made["password"],
        }
        expect("POST /signin", browser.go("POST", "/signin", form), 302, "/password")
        page = expect("GET /password", browser.go("GET", "/password"), 200)
        form = {
            "csrf_token": found(_CSRF, page, "CSRF token"),
            "password": NEW_PASSWORD,
            "repeat": NEW_PASSWORD,
        }
        expect("POST /password", browser.go("POST", "/password", form), 302, "/agreement")
        page = expect(
            "GET /agreement", browser.go("GET", "/agreement"), 200, marker='name="accept"'
        )
        for localised in ("country=DE", "language=de-DE"):
            if localised not in page:
                raise RuntimeError(f"the agreement page has no {localised!r}:\n{page[:1500]}")
        if browser.cookie is None:
            raise RuntimeError("no session cookie after signing in")
        return browser.cookie, link
    finally:
        browser.close()


def sign_in(port: int, user_name: str) -> str:
    """Another session of the customer (the chosen password); its cookie, after one page view."""
    browser = Browser(port)
    try:
        page = expect("GET /signin", browser.go("GET", "/signin"), 200)
        form = {
            "csrf_token": found(_CSRF, page, "CSRF token"),
            "user_name": user_name,
            "password": NEW_PASSWORD,
        }
        expect("POST /signin", browser.go("POST", "/signin", form), 302, "/account")
        expect("GET /agreement", browser.go("GET", "/agreement"), 200, marker='name="accept"')
        if browser.cookie is None:
            raise RuntimeError("no session cookie after signing in")
        return browser.cookie
    finally:
        browser.close()


def page_request(path: str, cookie: str | None) -> bytes:
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {HOST}",
        f"User-Agent: {USER_AGENT}",
        "Accept: text/html",
        f"Accept-Language: {ACCEPT_LANGUAGE}",
    ]
    if cookie:
        lines.append(f"Cookie: session={cookie}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@dataclass
class Page:
    name: str
    path: str
    marker: bytes
    #: One request per client, or one for all.
    requests: list[bytes]
    #: Body bytes of the portal's page, and of the baseline's.
    portal_bytes: int = 0
    baseline_bytes: int = 0


def fetch(port: int, request: bytes, marker: bytes, what: str) -> int:
    """Send one raw benchmark request; check it as the load generator will; the body's length."""
    head, _, rest = request.decode().partition("\r\n")
    _, path, _ = head.split(" ")
    headers = dict(
        line.split(": ", 1) for line in rest.split("\r\n") if line and not line.startswith("Host")
    )
    status, body = request_once(port, "GET", path, headers)
    if status != 200 or marker not in body:
        raise RuntimeError(f"{what}: {status}, want 200 with {marker!r}:\n{body[:500]!r}")
    return len(body)


# --- main --------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark GET /agreement (signed in, German) and GET /invite/<token> against "
        "a bare Flask app under the same gunicorn settings."
    )
    parser.add_argument("--clients", type=int, default=16, help="concurrent keep-alive clients")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per phase")
    parser.add_argument("--warmup", type=float, default=1.5, help="unmeasured seconds per phase")
    parser.add_argument(
        "--rounds", type=int, default=2, help="rounds; each measures both servers on both pages"
    )
    parser.add_argument(
        "--pages",
        default="agreement,landing",
        help="comma-separated pages to measure: agreement, landing (default: both)",
    )
    parser.add_argument(
        "--shared-session",
        action="store_true",
        help="all clients reuse one signed-in cookie (default: each client signs in once)",
    )
    parser.add_argument(
        "--database-url",
        help="PostgreSQL URL (e.g. postgresql://root@127.0.0.1:5432/test); a throwaway schema "
        "is made and dropped. Default: SQLite in a temporary instance folder.",
    )
    parser.add_argument(
        "--client-procs", type=int, default=2, help="load-generator processes (clients spread)"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="afterwards, profile both pages in-process (cProfile of the Flask test client)",
    )
    parser.add_argument(
        "--profile-requests", type=int, default=2000, help="requests per page with --profile"
    )
    args = parser.parse_args()
    args.pages = [p.strip() for p in args.pages.split(",") if p.strip()]
    if not args.pages or set(args.pages) - {"agreement", "landing"}:
        parser.error("--pages takes agreement, landing or both")
    if not (1 <= args.clients <= 1024 and 1 <= args.rounds <= 20):
        parser.error("need 1 <= --clients <= 1024, 1 <= --rounds <= 20")
    if not (0 < args.seconds <= 600 and 0 <= args.warmup <= 60 and args.client_procs >= 1):
        parser.error("need 0 < --seconds <= 600, 0 <= --warmup <= 60, --client-procs >= 1")
    if args.database_url and not args.database_url.startswith(("postgresql", "postgres://")):
        parser.error("--database-url must be a PostgreSQL URL")
    if args.profile_requests < 1:
        parser.error("need --profile-requests >= 1")
    return args


def main() -> int:
    return run_guarded(run, parse_args())


def run(args: argparse.Namespace, cleanup: Cleanup) -> int:
    from baseline_server import serve_settings  # bench/ is on sys.path

    seeded = seed_instance(args.database_url, cleanup)
    tempdir, env, key = seeded.tempdir, seeded.env, seeded.api_key
    served, db_label = seeded.served, seeded.db_label
    portal = start_server("portal", [str(VENV_BIN / "portal"), "serve"], env, tempdir, cleanup)
    wait_until_answers(portal, "/v1/agreements", {"Authorization": f"Bearer {key}"})

    signed_in_at = time.monotonic()
    made = invite_customer(portal.port, key)
    cookie, link = first_sign_in(portal.port, made)
    sessions = 1 if args.shared_session else args.clients
    cookies = [cookie] + [sign_in(portal.port, made["userName"]) for _ in range(sessions - 1)]
    print(
        f"customer {made['customerId']} (de-DE, DE) invited, signed in from the link, password "
        f"changed; {len(cookies)} session(s) in {time.monotonic() - signed_in_at:.1f} s",
        flush=True,
    )
    pages = {
        "agreement": Page(
            "agreement",
            "/agreement",
            AGREEMENT_MARKER,
            [page_request("/agreement", c) for c in cookies],
        ),
        "landing": Page("landing", link, LANDING_MARKER, [page_request(link, None)]),
    }
    pages = {name: pages[name] for name in args.pages}
    for page in pages.values():
        page.portal_bytes = fetch(portal.port, page.requests[0], page.marker, f"portal {page.name}")

    baseline_sizes = {
        "agreement": pages["agreement"].portal_bytes if "agreement" in pages else 0,
        "landing": pages["landing"].portal_bytes if "landing" in pages else 0,
    }
    command = [sys.executable, str(BENCH / "baseline_server.py")]
    for option, size in (
        ("--agreement-bytes", baseline_sizes["agreement"]),
        ("--invite-bytes", baseline_sizes["landing"]),
    ):
        if size:
            command += [option, str(size)]
    baseline = start_server("baseline", command, env, tempdir, cleanup)
    wait_until_answers(baseline, "/agreement", {})
    for page in pages.values():
        page.baseline_bytes = fetch(
            baseline.port, page.requests[0], page.marker, f"baseline {page.name}"
        )

    workers, threads = serve_settings()
    per_phase = args.warmup + args.seconds
    phases_count = args.rounds * len(pages) * 2
    print(
        f"gunicorn: gthread, {workers} workers x {threads} threads (portal serve defaults), "
        f"keepalive 5 s, access log on\nload: {args.clients} keep-alive clients in "
        f"{min(args.client_procs, args.clients)} processes, {args.rounds} rounds x "
        f"{len(pages)} pages x 2 servers x ({args.warmup:g} s warm-up + {args.seconds:g} s) "
        f"= ~{phases_count * per_phase:.0f} s",
        flush=True,
    )
    order: list[tuple[Page, Any]] = []
    for r in range(args.rounds):
        for i, page in enumerate(pages.values()):
            pair = [baseline, portal] if (r + i) % 2 == 0 else [portal, baseline]  # ABBA
            order += [(page, server) for server in pair]
    phases: dict[str, list[Phase]] = {name: [] for name in pages}
    for n, (page, server) in enumerate(order, 1):
        phase = measure(
            server,
            [portal, baseline],
            bool(args.database_url),
            page.requests,
            page.marker,
            args.clients,
            args.client_procs,
            args.warmup,
            args.seconds,
            cleanup,
            exact=False,
        )
        phases[page.name].append(phase)
        ordered = sorted(phase.latencies)
        p50, p99 = percentile(ordered, 50) * 1e3, percentile(ordered, 99) * 1e3
        print(
            f"  {n:2}/{len(order)} {page.name:<9} {server.name:<8} {phase.rps:6.0f} req/s  "
            f"p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  server {phase.server_cpu_per_request:5.2f} "
            f"ms CPU/req  cores: client {phase.client_cpu / phase.seconds:.2f} "
            + (f"postgres {phase.database_cpu / phase.seconds:.2f} " if args.database_url else "")
            + f"other {phase.other_cpu / phase.seconds:.2f}  errors {phase.errors}",
            flush=True,
        )
    status = report(args, pages, phases, workers, threads, db_label, served, len(cookies))
    if args.profile:
        for server in cleanup.servers:
            stop_server(server)
        cleanup.servers.clear()
        profile(args, env, pages, cookies[0])
    return status


def report(
    args: argparse.Namespace,
    pages: dict[str, Page],
    phases: dict[str, list[Phase]],
    workers: int,
    threads: int,
    db_label: str,
    served: str,
    sessions: int,
) -> int:
    errors = 0
    samples: list[str] = []
    figures: dict[str, dict[str, dict[str, float]]] = {}
    for page_name, page_phases in phases.items():
        figures[page_name] = {}
        for name in ("baseline", "portal"):
            mine = [p for p in page_phases if p.target == name]
            ordered = sorted(x for p in mine for x in p.latencies)
            done = sum(p.completed for p in mine)
            figures[page_name][name] = {
                "rps": done / sum(p.seconds for p in mine),
                "requests": done,
                "p50": percentile(ordered, 50) * 1e3,
                "p95": percentile(ordered, 95) * 1e3,
                "p99": percentile(ordered, 99) * 1e3,
                "max": (ordered[-1] if ordered else float("nan")) * 1e3,
                "cpu": sum(p.server_cpu for p in mine) / max(1, done) * 1e3,
                "db": sum(p.database_cpu for p in mine) / max(1, done) * 1e3,
            }
            errors += sum(p.errors for p in mine)
            samples += [
                f"{page_name} {name}: {s}" for s in (s for p in mine for s in p.error_samples)
            ]

    print()
    print(f"machine:  {machine()}")
    print(f"portal:   {served}")
    print(f"database: {db_label}")
    print(f"server:   gunicorn gthread, {workers} workers x {threads} threads")
    print(
        f"load:     {args.clients} clients, {args.rounds} x {args.seconds:g} s per target and "
        f"page; agreement: {sessions} signed-in session(s); landing: no cookie"
    )
    print()
    print(
        f"{'page':10}{'server':9}{'req/s':>8}{'requests':>10}{'p50 ms':>8}{'p95 ms':>8}"
        f"{'p99 ms':>8}{'max ms':>8}{'body B':>8}  server CPU ms/req"
    )
    for page_name, by_server in figures.items():
        for name, f in by_server.items():
            size = getattr(pages[page_name], f"{name}_bytes")
            db_cpu = f" (+ {f['db']:.3f} in PostgreSQL)" if args.database_url else ""
            print(
                f"{page_name:10}{name:9}{f['rps']:8.0f}{f['requests']:10.0f}{f['p50']:8.2f}"
                f"{f['p95']:8.2f}{f['p99']:8.2f}{f['max']:8.2f}{size:8d}  {f['cpu']:.3f}{db_cpu}"
            )
    print()
    note = "" if args.clients == TARGET_CLIENTS else f" (targets are for {TARGET_CLIENTS} clients)"
    for page_name, by_server in figures.items():
        ratio = by_server["portal"]["rps"] / by_server["baseline"]["rps"]
        cpu_ratio = by_server["baseline"]["cpu"] / by_server["portal"]["cpu"]
        print(
            f"{page_name + ':':11}ratio portal/baseline {ratio:.2f}   target >= {TARGET_RATIO:.2f}"
            f"   {'MET' if ratio >= TARGET_RATIO else 'MISSED'}{note}"
        )
        print(
            f"{'':11}(server CPU per request, baseline/portal: {cpu_ratio:.2f}, less sensitive "
            "to noise)"
        )
    every = [p for page_phases in phases.values() for p in page_phases]
    other = sum(p.other_cpu for p in every) / sum(p.seconds for p in every)
    if other > OTHER_LOAD_WARNING:
        print(
            f"\nWARNING: other work used {other:.2f} cores on average while measuring (other "
            "processes, CPU steal): the figures are depressed and noisy; run again on a quiet "
            "machine. The server CPU per request is the least affected figure."
        )
    if errors:
        print(f"\nERRORS: {errors} wrong or failed responses; the figures are not valid.")
        for sample in samples[:10]:
            print(f"  {sample}")
        return 1
    print("\nall responses were 200 with the page's form field")
    return 0


# --- profiling in-process ----------------------------------------------------------------------


def profile(
    args: argparse.Namespace, env: dict[str, str], pages: dict[str, Page], cookie: str
) -> None:
    """Time and cProfile each page through the Flask test client, beside the baseline app."""
    from baseline_server import create_baseline_app

    for name in [k for k in os.environ if k.startswith("PORTAL_")]:
        del os.environ[name]
    os.environ.update({k: v for k, v in env.items() if k.startswith("PORTAL_")})
    from portal import create_app

    portal_app = create_app()
    baseline_app = create_baseline_app()
    count = args.profile_requests
    headers = {"Accept-Language": ACCEPT_LANGUAGE, "User-Agent": USER_AGENT}
    print(f"\nin-process profile: {count} GETs per page through the Flask test client")
    for page in pages.values():
        for label, app in (("baseline", baseline_app), ("portal", portal_app)):
            client = app.test_client(use_cookies=page.name == "agreement")
            if page.name == "agreement":
                client.set_cookie("session", cookie)

            def get(client: Any = client, page: Page = page) -> None:
                response = client.get(page.path, headers=headers)
                if response.status_code != 200 or page.marker not in response.data:
                    raise RuntimeError(f"in-process {page.name}: {response.status}")

            for _ in range(min(200, count)):
                get()
            started, cpu = time.perf_counter(), time.process_time()
            for _ in range(count):
                get()
            wall = (time.perf_counter() - started) / count * 1e3
            cpu = (time.process_time() - cpu) / count * 1e3
            print(f"  {page.name:9} {label:8} {wall:6.3f} ms/req wall, {cpu:6.3f} ms/req CPU")
            if label != "portal":
                continue
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(count):
                get()
            profiler.disable()
            for order, lines in (("tottime", 25), ("cumulative", 45)):
                out = io.StringIO()
                stats = pstats.Stats(profiler, stream=out)
                stats.sort_stats(order).print_stats(lines)
                text = out.getvalue()
                print(f"\n--- portal {page.name}: by {order} ---")
                print(text[text.find("   ncalls") :].rstrip())
            print()


if __name__ == "__main__":
    sys.exit(main())
