"""Throughput and latency of the status poll, against a bare Flask app under the same gunicorn.

Run by hand from the project folder (about a minute with the defaults):

    .venv/bin/python bench/status_bench.py [--clients 16] [--seconds 10] [--rounds 2]
                                           [--database-url postgresql://root@127.0.0.1:5432/test]

What it does, in one run:

1. makes a temporary instance folder with a SQLite database (or a throwaway schema in the
   PostgreSQL database given by ``--database-url``) and seeds it with the real CLI and API:
   ``portal db upgrade``, ``portal partners create --json``, then customers created (and some
   attested) through ``POST /v1/customers``;
2. starts ``portal serve`` (gunicorn, gthread, its default workers and threads) and
   ``bench/baseline_server.py`` (a Flask app answering a constant ``{"isSigned": true}``, served by
   ``portal.server.run`` with the same settings);
3. drives each in turn with ``--clients`` keep-alive HTTP/1.1 connections, spread over a few
   load-generator processes (epoll and raw sockets: little client CPU taken from the 2 cores),
   each polling ``GET /v1/customers/<id>/directSignedMicrosoftCustomerAgreementStatus`` with the
   partner's bearer key; the two targets alternate (ABBA) so machine noise hits both alike;
4. checks every response (status 200, exact body), records every latency, and prints
   requests/s, the portal/baseline ratio and p50/p95/p99 next to the targets.

Exit status: 0 when all responses were right (targets met or not), 1 on any wrong response or
failure. Only 127.0.0.1 is used; every subprocess and temporary file is removed at the end, also
on Ctrl-C. ``PORTAL_SERVE_WORKERS`` / ``PORTAL_SERVE_THREADS`` in the environment reach both
servers (to try other settings); every other ``PORTAL_*`` variable is ignored.

Not a test: pytest collects only ``tests/``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import time
import uuid
from typing import Any

from _common import (  # bench/ is on sys.path
    BENCH,
    HOST,
    OTHER_LOAD_WARNING,
    REQUEST_TIMEOUT,
    VENV_BIN,
    Cleanup,
    Phase,
    machine,
    measure,
    percentile,
    request_once,
    run_guarded,
    seed_instance,
    start_server,
    wait_until_answers,
)

STATUS_PATH = "/v1/customers/{}/directSignedMicrosoftCustomerAgreementStatus"
MCA = "MicrosoftCustomerAgreement"

TARGET_RATIO = 0.70
TARGET_P99_MS = 15.0
TARGET_CLIENTS = 16


# --- seeding -----------------------------------------------------------------------------------


def customer_body(n: int) -> dict[str, Any]:
    return {
        "companyProfile": {"domain": f"bench{n:05d}-{uuid.uuid4().hex[:8]}.example.test"},
        "billingProfile": {
            "email": f"billing{n}@bench.example.test",
            "culture": "en-US",
            "language": "en",
            "companyName": f"Bench Customer {n}",
            "defaultAddress": {
                "country": "US",
                "firstName": "Tania",
                "lastName": "Carr",
                "addressLine1": "1 Main Street",
                "city": "Redmond",
                "state": "WA",
                "postalCode": "98052",
                "phoneNumber": "1234567890",
            },
        },
    }


def seed_customers(port: int, key: str, count: int) -> str:
    """Create ``count`` customers through the API, attest every other one; return one id."""
    auth = {"Authorization": f"Bearer {key}"}
    conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT)
    try:
        status, raw = request_once(
            port, "GET", f"/v1/agreements?agreementType={MCA}", auth, connection=conn
        )
        if status != 200:
            raise RuntimeError(f"GET /v1/agreements: {status} {raw[:300]!r}")
        template_id = json.loads(raw)["items"][0]["templateId"]
        ids = []
        for n in range(count):
            status, raw = request_once(
                port, "POST", "/v1/customers", auth, customer_body(n), connection=conn
            )
            if status != 201:
                raise RuntimeError(f"POST /v1/customers: {status} {raw[:300]!r}")
            customer_id = str(json.loads(raw)["id"])
            ids.append(customer_id)
            if n % 2 == 0:
                attestation = {
                    "primaryContact": {
                        "firstName": "Tania",
                        "lastName": "Carr",
                        "email": f"contact{n}@bench.example.test",
                    },
                    "templateId": template_id,
                    "type": MCA,
                    "dateAgreed": "2024-06-14T00:00:00Z",
                }
                status, raw = request_once(
                    port,
                    "POST",
                    f"/v1/customers/{customer_id}/agreements",
                    auth,
                    attestation,
                    connection=conn,
                )
                if status != 201:
                    raise RuntimeError(f"POST .../agreements: {status} {raw[:300]!r}")
    finally:
        conn.close()
    # One from the middle, with an attestation (so the EXISTS has a row to look at).
    return ids[(count // 2) & ~1]


def build_request(path: str, key: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\n"
        f"Host: {HOST}\r\n"
        f"Authorization: Bearer {key}\r\n"
        "Accept: application/json\r\n"
        "\r\n"
    ).encode()


# --- main --------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark GET .../directSignedMicrosoftCustomerAgreementStatus against a "
        "bare Flask app under the same gunicorn settings."
    )
    parser.add_argument("--clients", type=int, default=16, help="concurrent keep-alive clients")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per phase")
    parser.add_argument("--warmup", type=float, default=1.5, help="unmeasured seconds per phase")
    parser.add_argument(
        "--rounds", type=int, default=2, help="rounds; each measures baseline and portal (ABBA)"
    )
    parser.add_argument(
        "--database-url",
        help="PostgreSQL URL (e.g. postgresql://root@127.0.0.1:5432/test); a throwaway schema "
        "is made and dropped. Default: SQLite in a temporary instance folder.",
    )
    parser.add_argument("--customers", type=int, default=200, help="customers to seed")
    parser.add_argument(
        "--client-procs", type=int, default=2, help="load-generator processes (clients spread)"
    )
    args = parser.parse_args()
    if not (1 <= args.clients <= 1024 and 1 <= args.rounds <= 20 and args.customers >= 2):
        parser.error("need 1 <= --clients <= 1024, 1 <= --rounds <= 20, --customers >= 2")
    if not (0 < args.seconds <= 600 and 0 <= args.warmup <= 60 and args.client_procs >= 1):
        parser.error("need 0 < --seconds <= 600, 0 <= --warmup <= 60, --client-procs >= 1")
    if args.database_url and not args.database_url.startswith(("postgresql", "postgres://")):
        parser.error("--database-url must be a PostgreSQL URL")
    return args


def main() -> int:
    return run_guarded(run, parse_args())


def run(args: argparse.Namespace, cleanup: Cleanup) -> int:
    from baseline_server import serve_settings  # bench/ is on sys.path

    seeded = seed_instance(args.database_url, cleanup)
    tempdir, env, key = seeded.tempdir, seeded.env, seeded.api_key
    served, db_label = seeded.served, seeded.db_label
    auth = {"Authorization": f"Bearer {key}"}

    portal = start_server("portal", [str(VENV_BIN / "portal"), "serve"], env, tempdir, cleanup)
    baseline = start_server(
        "baseline",
        [sys.executable, str(BENCH / "baseline_server.py")],
        env,
        tempdir,
        cleanup,
    )
    wait_until_answers(portal, "/v1/agreements", auth)
    seeded_at = time.monotonic()
    customer_id = seed_customers(portal.port, key, args.customers)
    print(
        f"seeded {args.customers} customers ({args.customers // 2 + args.customers % 2} "
        f"attested) in {time.monotonic() - seeded_at:.1f} s; polling {customer_id}",
        flush=True,
    )
    path = STATUS_PATH.format(customer_id)
    wait_until_answers(baseline, path, auth)

    expected = {}
    for server, want in ((portal, {"isSigned": False}), (baseline, {"isSigned": True})):
        status, body = request_once(server.port, "GET", path, auth)
        if status != 200 or json.loads(body) != want:
            raise RuntimeError(f"{server.name} answered {status} {body[:300]!r}, want {want}")
        expected[server.name] = body
    request = build_request(path, key)

    workers, threads = serve_settings()
    per_phase = args.warmup + args.seconds
    print(
        f"gunicorn: gthread, {workers} workers x {threads} threads (portal serve defaults), "
        f"keepalive 5 s, access log on\nload: {args.clients} keep-alive clients in "
        f"{min(args.client_procs, args.clients)} processes, {args.rounds} rounds x 2 phases x "
        f"({args.warmup:g} s warm-up + {args.seconds:g} s) = ~{args.rounds * 2 * per_phase:.0f} s",
        flush=True,
    )
    phases: list[Phase] = []
    order = []
    for r in range(args.rounds):
        pair = [baseline, portal] if r % 2 == 0 else [portal, baseline]  # ABBA
        order += pair
    for i, server in enumerate(order, 1):
        phase = measure(
            server,
            [portal, baseline],
            bool(args.database_url),
            request,
            expected[server.name],
            args.clients,
            args.client_procs,
            args.warmup,
            args.seconds,
            cleanup,
        )
        phases.append(phase)
        ordered = sorted(phase.latencies)
        p50, p99 = percentile(ordered, 50) * 1e3, percentile(ordered, 99) * 1e3
        print(
            f"  {i}/{len(order)} {server.name:<8} {phase.rps:6.0f} req/s  p50 {p50:6.2f} ms  "
            f"p99 {p99:6.2f} ms  server {phase.server_cpu_per_request:5.2f} ms CPU/req  "
            f"cores: client {phase.client_cpu / phase.seconds:.2f} "
            + (f"postgres {phase.database_cpu / phase.seconds:.2f} " if args.database_url else "")
            + f"other {phase.other_cpu / phase.seconds:.2f}  errors {phase.errors}",
            flush=True,
        )
    return report(args, phases, workers, threads, db_label, served)


def report(
    args: argparse.Namespace,
    phases: list[Phase],
    workers: int,
    threads: int,
    db_label: str,
    served: str,
) -> int:
    figures: dict[str, dict[str, float]] = {}
    errors = 0
    samples: list[str] = []
    for name in ("baseline", "portal"):
        mine = [p for p in phases if p.target == name]
        ordered = sorted(x for p in mine for x in p.latencies)
        figures[name] = {
            "rps": sum(p.completed for p in mine) / sum(p.seconds for p in mine),
            "requests": sum(p.completed for p in mine),
            "p50": percentile(ordered, 50) * 1e3,
            "p95": percentile(ordered, 95) * 1e3,
            "p99": percentile(ordered, 99) * 1e3,
            "max": (ordered[-1] if ordered else float("nan")) * 1e3,
            "cpu": sum(p.server_cpu for p in mine) / max(1, sum(p.completed for p in mine)) * 1e3,
            "db": sum(p.database_cpu for p in mine) / max(1, sum(p.completed for p in mine)) * 1e3,
        }
        errors += sum(p.errors for p in mine)
        samples += [f"{name}: {s}" for s in (s for p in mine for s in p.error_samples)]
    ratio = figures["portal"]["rps"] / figures["baseline"]["rps"]
    p99 = figures["portal"]["p99"]
    ratio_ok = ratio >= TARGET_RATIO
    p99_ok = p99 <= TARGET_P99_MS

    print()
    print(f"machine:  {machine()}")
    print(f"portal:   {served}")
    print(f"database: {db_label}")
    print(f"server:   gunicorn gthread, {workers} workers x {threads} threads")
    print(f"load:     {args.clients} clients, {args.rounds} x {args.seconds:g} s per target")
    print()
    print(
        f"{'':10}{'req/s':>8}{'requests':>10}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}"
        f"{'max ms':>8}  server CPU ms/req"
    )
    for name, f in figures.items():
        db_cpu = f" (+ {f['db']:.3f} in PostgreSQL)" if args.database_url else ""
        print(
            f"{name:10}{f['rps']:8.0f}{f['requests']:10.0f}{f['p50']:8.2f}{f['p95']:8.2f}"
            f"{f['p99']:8.2f}{f['max']:8.2f}  {f['cpu']:.3f}{db_cpu}"
        )
    print()
    note = "" if args.clients == TARGET_CLIENTS else f" (targets are for {TARGET_CLIENTS} clients)"
    print(
        f"ratio portal/baseline: {ratio:.2f}   target >= {TARGET_RATIO:.2f}   "
        f"{'MET' if ratio_ok else 'MISSED'}{note}"
    )
    cpu_ratio = figures["baseline"]["cpu"] / figures["portal"]["cpu"]
    print(f"  (server CPU per request, baseline/portal: {cpu_ratio:.2f}, less sensitive to noise)")
    print(
        f"portal p99:            {p99:.2f} ms   target <= {TARGET_P99_MS:g} ms  "
        f"{'MET' if p99_ok else 'MISSED'}{note}"
    )
    other = sum(p.other_cpu for p in phases) / sum(p.seconds for p in phases)
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
    print("\nall responses were 200 with the expected body")
    return 0


if __name__ == "__main__":
    sys.exit(main())
