"""The status poll under wrk: the portal as run in production against what a user would run
instead (``bench/minimal_app.py`` on stock gunicorn), and what its metrics cost.

Run by hand from the project folder (about two minutes; ``apt-get install wrk`` first):

    .venv/bin/python bench/wrk_bench.py [--seconds 10] [--rounds 2] [--connections 16]
                                        [--database-url postgresql://root@127.0.0.1:5432/test]

Three targets, each driven by ``wrk -t2 -c16 --latency`` (a C load generator: it takes little
CPU from the two cores the servers share) polling ``GET .../directSignedMicrosoftCustomerAgree
mentStatus`` of one attested customer (``isSigned`` false) with the partner's bearer key:

- ``baseline``: the minimal app on stock gunicorn (``-k gthread -w 2 --threads 8``, no access
  log), answering the same body;
- ``portal``: ``portal serve`` with its defaults, access log on (to /dev/null) and metrics on
  (``PORTAL_METRICS_TOKEN`` set), as in production;
- ``portal-no-metrics``: the same without ``PORTAL_METRICS_TOKEN`` (no request is counted).

Rounds alternate the order (ABC, CBA, ...) so machine noise hits all alike. Each target's answer
is checked once (status and exact body) before it is measured, and wrk's non-2xx count must be
0. Printed: requests/s, p50 and p99 per target, the portal/baseline throughput ratio and p99
ratio against the targets (>= 0.70, <= 1.5x), and the metrics' cost (under 5 % wanted).
Exit status 1 on any wrong answer.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field

from _common import (  # bench/ is on sys.path
    BENCH,
    HOST,
    VENV_BIN,
    Cleanup,
    Server,
    free_port,
    german_customer,
    machine,
    request_once,
    run_guarded,
    seed_instance,
    start_server,
    wait_until_answers,
)

STATUS_PATH = "/v1/customers/{}/directSignedMicrosoftCustomerAgreementStatus"
TARGET_RATIO = 0.70
TARGET_P99_RATIO = 1.5
TARGET_METRICS_COST = 0.05
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


@dataclass
class Result:
    rps: list[float] = field(default_factory=list)
    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)


def wrk(
    port: int, path: str, key: str, seconds: float, connections: int
) -> tuple[float, float, float]:
    """Requests/s, p50 and p99 (ms) of one wrk run; RuntimeError on any non-2xx answer."""
    output = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds:g}s",
            "--latency",
            "-H",
            f"Authorization: Bearer {key}",
            f"http://{HOST}:{port}{path}",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    if "Non-2xx" in output or "Socket errors" in output:
        raise RuntimeError(f"wrk saw errors:\n{output}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]

    def latency(p: str) -> float:
        value, unit = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M).groups()  # type: ignore[union-attr]
        return float(value) * _UNITS[unit]

    return rps, latency("50"), latency("99")


def start_gunicorn(seeded_env: dict[str, str], tempdir, cleanup: Cleanup) -> Server:
    port = free_port()
    log = tempdir / "baseline.log"
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            [
                str(VENV_BIN / "gunicorn"),
                "-k",
                "gthread",
                "-w",
                "2",
                "--threads",
                "8",
                "-b",
                f"{HOST}:{port}",
                "--chdir",
                str(BENCH),
                "minimal_app:app",
            ],
            env=seeded_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
            start_new_session=True,
        )
    server = Server("baseline", port, process, log)
    cleanup.servers.append(server)
    return server


def run(args: argparse.Namespace, cleanup: Cleanup) -> int:
    seeded = seed_instance(args.database_url, cleanup)
    key, env = seeded.api_key, seeded.env
    auth = {"Authorization": f"Bearer {key}"}
    metered = {**env, "PORTAL_METRICS_TOKEN": "bench-" + "m" * 32}
    servers = {
        "baseline": start_gunicorn(env, seeded.tempdir, cleanup),
        "portal": start_server(
            "portal", [str(VENV_BIN / "portal"), "serve"], metered, seeded.tempdir, cleanup
        ),
    }
    wait_until_answers(servers["portal"], "/v1/agreements", auth)
    servers["portal-no-metrics"] = start_server(
        "portal-no-metrics", [str(VENV_BIN / "portal"), "serve"], env, seeded.tempdir, cleanup
    )
    created = request_once(servers["portal"].port, "POST", "/v1/customers", auth, german_customer())
    if created[0] != 201:
        raise RuntimeError(f"creating the polled customer: {created}")
    customer_id = json.loads(created[1])["id"]
    attested = request_once(
        servers["portal"].port,
        "POST",
        f"/v1/customers/{customer_id}/agreements",
        auth,
        {
            "primaryContact": {
                "firstName": "Tania",
                "lastName": "Carr",
                "email": "tania@bench.example.test",
            },
            "templateId": "117a77b0-9360-443b-8795-c6dedc750cf9",
            "dateAgreed": "2024-06-14T00:00:00Z",
            "type": "MicrosoftCustomerAgreement",
        },
    )
    if attested[0] != 201:
        raise RuntimeError(f"attesting the polled customer: {attested}")
    path = STATUS_PATH.format(customer_id)
    for server in servers.values():
        wait_until_answers(server, path, auth)
        status, body = request_once(server.port, "GET", path, auth)
        if status != 200 or json.loads(body) != {"isSigned": False}:
            raise RuntimeError(f"{server.name} answered {status} {body[:200]!r}")
    metrics = request_once(
        servers["portal"].port,
        "GET",
        "/metrics",
        {"Authorization": f"Bearer {metered['PORTAL_METRICS_TOKEN']}"},
    )
    if metrics[0] != 200 or b"portal_http_requests_total" not in metrics[1]:
        raise RuntimeError(f"/metrics answered {metrics[0]}")

    names = list(servers)
    results = {name: Result() for name in names}
    print(
        f"wrk -t2 -c{args.connections}, {args.rounds} rounds x {len(names)} targets x "
        f"{args.seconds:g} s (after {args.warmup:g} s warm-up each)",
        flush=True,
    )
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            server = servers[name]
            wrk(server.port, path, key, args.warmup, args.connections)
            rps, p50, p99 = wrk(server.port, path, key, args.seconds, args.connections)
            results[name].rps.append(rps)
            results[name].p50.append(p50)
            results[name].p99.append(p99)
            print(
                f"  round {r + 1} {name:<18} {rps:7.0f} req/s  p50 {p50:6.2f} ms  "
                f"p99 {p99:6.2f} ms",
                flush=True,
            )

    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    base, portal, bare = results["baseline"], results["portal"], results["portal-no-metrics"]
    ratio = mean(portal.rps) / mean(base.rps)
    p99_ratio = mean(portal.p99) / mean(base.p99)
    cost = 1 - mean(portal.rps) / mean(bare.rps)
    print(f"\nmachine:  {machine()}\nportal:   {seeded.served}\ndatabase: {seeded.db_label}\n")
    for name, result in results.items():
        print(
            f"{name:<18} {mean(result.rps):7.0f} req/s  p50 {mean(result.p50):6.2f} ms  "
            f"p99 {mean(result.p99):6.2f} ms"
        )
    print(
        f"\nthroughput portal/baseline: {ratio:.2f}  target >= {TARGET_RATIO:.2f}  "
        f"{'MET' if ratio >= TARGET_RATIO else 'MISSED'}"
    )
    print(
        f"p99 portal/baseline:        {p99_ratio:.2f}  target <= {TARGET_P99_RATIO:.1f}  "
        f"{'MET' if p99_ratio <= TARGET_P99_RATIO else 'MISSED'}"
    )
    print(
        f"metrics cost (throughput):  {cost * 100:+.1f} %  target < "
        f"{TARGET_METRICS_COST * 100:.0f} %  {'MET' if cost < TARGET_METRICS_COST else 'MISSED'}"
    )
    return 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--database-url", help="PostgreSQL URL; default SQLite")
    return parser.parse_args()


if __name__ == "__main__":
    start = time.monotonic()
    code = run_guarded(run, parse_args())
    print(f"({time.monotonic() - start:.0f} s)")
    sys.exit(code)
