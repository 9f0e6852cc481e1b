"""The load-and-fault drill: production's shape under mixed load, through three faults.

Run by hand from the project folder, as root on a machine whose PostgreSQL it may restart (it
restarts the cluster it is given: nothing else should use it meanwhile), with Redis running:

    .venv/bin/python bench/drill.py [--seconds 120] [--database-url postgresql://root@127.0.0.1:5432/test]

What it does:

1. makes a throwaway schema in the PostgreSQL database, a partner (with the CLI), an SMTP server
   on loopback (aiosmtpd, in this process), and starts two ``portal serve --no-delivery`` of two
   workers each and two senders (``portal mail send --watch``), all sharing PostgreSQL and Redis;
2. for ``--seconds`` drives them from concurrent clients over HTTP, spread over both servers:
   status polls, customers created with an invitation the portal sends, and whole customer
   journeys (invitation, link, sign-in, new password, acceptance);
3. midway, in turn: restarts PostgreSQL (``pg_ctlcluster ... restart``), stops the SMTP server
   for 20 s, and kills one gunicorn worker with SIGKILL;
4. then lets the senders catch up and checks: every invitation created got exactly one email
   (by Message-ID), every completed journey reads ``isSigned: true``, ``portal audit verify``
   passes, and every failed request fell inside a fault's window (PostgreSQL's restart, the
   killed worker's requests; the SMTP outage must cost no request).

Prints requests/s, p50 and p99 and errors per window; exit status 1 on any loss or any error
outside a window. Not a test: pytest collects only ``tests/``.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from _common import (  # bench/ is on sys.path
    HOST,
    VENV_BIN,
    Cleanup,
    Server,
    free_port,
    german_customer,
    machine,
    run_guarded,
    seed_instance,
)

REDIS_URL = "redis://127.0.0.1:6379/0"
MCA = "117a77b0-9360-443b-8795-c6dedc750cf9"
STATUS = "/v1/customers/{}/directSignedMicrosoftCustomerAgreementStatus"
#: Seconds after a fault's start during which failed requests are the fault's.
GRACE = {"postgresql restart": 15.0, "worker killed": 5.0, "smtp down": 0.0}


@dataclass
class Call:
    at: float
    kind: str
    ok: bool
    seconds: float
    detail: str = ""


@dataclass
class State:
    started: float = field(default_factory=time.monotonic)
    calls: list[Call] = field(default_factory=list)
    invitations: list[str] = field(default_factory=list)  # invitation ids sent by the portal
    journeys: list[str] = field(default_factory=list)  # customers who completed a journey
    faults: list[tuple[str, float, float]] = field(default_factory=list)  # name, start, end
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def note(self, kind: str, started: float, ok: bool, detail: str = "") -> None:
        with self.lock:
            self.calls.append(
                Call(started - self.started, kind, ok, time.monotonic() - started, detail)
            )


class Mail:
    """An SMTP server on loopback that can be stopped and started again on the same port."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.controller_class = Controller
        self.port = free_port()
        self.received: list[bytes] = []
        self.lock = threading.Lock()
        self.controller: Any = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        with self.lock:
            self.received.append(bytes(envelope.original_content or envelope.content))
        return "250 Message accepted for delivery"

    def start(self) -> None:
        self.controller = self.controller_class(self, hostname=HOST, port=self.port)
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()

    def message_ids(self) -> list[str]:
        with self.lock:
            raw = list(self.received)
        found = []
        for message in raw:
            match = re.search(rb"^Message-ID:\s*(<[^>]+>)", message, re.M | re.I)
            found.append(match.group(1).decode() if match else "")
        return found


def _csrf(text: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', text)
    if not match:
        raise RuntimeError("no form on the page")
    return match.group(1)


def client_loop(state: State, name: str, step: Callable[[], None]) -> None:
    while not state.stop.is_set():
        started = time.monotonic()
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - every failure is a data point
            state.note(name, started, False, f"{type(exc).__name__}: {exc}"[:300])
            time.sleep(0.2)
        else:
            state.note(name, started, True)


def poller(
    state: State, bases: list[str], key: str, customers: list[str], n: int
) -> Callable[[], None]:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {key}"
    counter = [n]

    def step() -> None:
        counter[0] += 1
        base = bases[counter[0] % len(bases)]
        answer = session.get(
            base + STATUS.format(customers[counter[0] % len(customers)]), timeout=10
        )
        if answer.status_code != 200:
            raise RuntimeError(f"status {answer.status_code}: {answer.text[:120]}")

    return step


def creator(state: State, bases: list[str], key: str, n: int) -> Callable[[], None]:
    counter = [n]

    def step() -> None:
        counter[0] += 1
        base = bases[counter[0] % len(bases)]
        headers = {"Authorization": f"Bearer {key}", "MS-RequestId": str(uuid.uuid4())}
        made = requests.post(
            f"{base}/v1/customers", json=german_customer(), headers=headers, timeout=15
        )
        if made.status_code != 201:
            raise RuntimeError(f"customer {made.status_code}: {made.text[:120]}")
        customer_id = made.json()["id"]
        # Retried as the SDKs do, with the same MS-RequestId, after a failure or a retryable
        # answer (a 503; a 409 RequestInProgress while the first attempt's claim stands, which
        # a dead attempt leaves for idempotency.ABANDONED): one invitation, one email.
        headers["MS-RequestId"] = str(uuid.uuid4())
        deadline = time.monotonic() + 180
        while True:
            try:
                sent = requests.post(
                    f"{base}/v1/customers/{customer_id}/invitations",
                    json={"send": True},
                    headers=headers,
                    timeout=15,
                )
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
                continue
            if sent.status_code == 201:
                with state.lock:
                    state.invitations.append(sent.json()["id"])
                return
            retryable = sent.status_code >= 500 or sent.json().get("isRetryable") is True
            if not retryable or time.monotonic() > deadline:
                raise RuntimeError(f"invitation {sent.status_code}: {sent.text[:120]}")
            time.sleep(float(sent.headers.get("Retry-After", 1)))

    return step


def journey(state: State, bases: list[str], key: str, n: int) -> Callable[[], None]:
    counter = [n]

    def step() -> None:
        counter[0] += 1
        base = bases[counter[0] % len(bases)]
        other = bases[(counter[0] + 1) % len(bases)]  # the customer lands on either server
        partner = {"Authorization": f"Bearer {key}"}
        made = requests.post(
            f"{base}/v1/customers", json=german_customer(), headers=partner, timeout=15
        )
        if made.status_code != 201:
            raise RuntimeError(f"customer {made.status_code}")
        customer_id = made.json()["id"]
        invitation = requests.post(
            f"{base}/v1/customers/{customer_id}/invitations", json={}, headers=partner, timeout=15
        ).json()
        browser = requests.Session()
        page = browser.get(
            other + "/invite/" + invitation["url"].rsplit("/invite/", 1)[1], timeout=15
        )
        signed_in = browser.post(
            f"{other}/signin",
            data={
                "csrf_token": _csrf(page.text),
                "user_name": invitation["userName"],
                "password": invitation["password"],
            },
            timeout=15,
        )
        if not signed_in.url.endswith("/password"):
            raise RuntimeError(f"sign-in ended at {signed_in.url} ({signed_in.status_code})")
        password = "drill " + uuid.uuid4().hex
        changed = browser.post(
            f"{other}/password",
            data={"csrf_token": _csrf(signed_in.text), "password": password, "repeat": password},
            timeout=15,
        )
        accepted = browser.post(
            f"{other}/agreement",
            data={
                "csrf_token": _csrf(changed.text),
                "first_name": "Ana",
                "last_name": "Silva",
                "email": "ana@drill.example.test",
                "phone": "",
                "accept": "yes",
            },
            timeout=15,
        )
        if "accepted=1" not in accepted.url:
            raise RuntimeError(f"acceptance ended at {accepted.url} ({accepted.status_code})")
        with state.lock:
            state.journeys.append(customer_id)

    return step


def gunicorn_workers(arbiter: int) -> list[int]:
    found = subprocess.run(
        ["pgrep", "-P", str(arbiter)], capture_output=True, text=True, check=False
    )
    return [int(pid) for pid in found.stdout.split()]


def start(
    name: str, command: list[str], env: dict[str, str], tempdir: Path, cleanup: Cleanup
) -> Server:
    log = tempdir / f"{name}.log"
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(name, 0, process, log)
    cleanup.servers.append(server)
    return server


def run(args: argparse.Namespace, cleanup: Cleanup) -> int:
    seeded = seed_instance(args.database_url, cleanup)
    key = seeded.api_key
    mail = Mail()
    mail.start()
    env = {
        **seeded.env,
        "PORTAL_REDIS_URL": REDIS_URL,
        "PORTAL_RATELIMIT_KEY_PREFIX": f"drill-{uuid.uuid4().hex[:8]}",
        "PORTAL_MAIL_SERVER": HOST,
        "PORTAL_MAIL_PORT": str(mail.port),
        "PORTAL_MAIL_SEND_INTERVAL": "0.5",
        "PORTAL_MAIL_RETRY_BASE_SECONDS": "2",
        "PORTAL_MAIL_RETRY_MAX_SECONDS": "10",
        "PORTAL_MAIL_MAX_ATTEMPTS": "30",
        "PORTAL_SIGNIN_LIMIT_ADDRESS": "100000 per hour",
    }
    ports = [free_port(), free_port()]
    servers = [
        start(
            f"serve{i}",
            [
                str(VENV_BIN / "portal"),
                "serve",
                "--port",
                str(port),
                "--workers",
                "2",
                "--no-delivery",
            ],
            env,
            seeded.tempdir,
            cleanup,
        )
        for i, port in enumerate(ports)
    ]
    senders = [
        start(
            f"sender{i}",
            [str(VENV_BIN / "portal"), "mail", "send", "--watch"],
            env,
            seeded.tempdir,
            cleanup,
        )
        for i in range(2)
    ]
    bases = [f"http://{HOST}:{port}" for port in ports]
    for base in bases:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(base + "/readyz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{base} did not become ready")
            time.sleep(0.3)
    polled = []
    for _ in range(8):
        made = requests.post(
            f"{bases[0]}/v1/customers",
            json=german_customer(),
            headers={"Authorization": f"Bearer {key}"},
            timeout=15,
        )
        polled.append(made.json()["id"])

    state = State()
    clients = (
        [("status", poller(state, bases, key, polled, n)) for n in range(6)]
        + [("create+invite", creator(state, bases, key, n)) for n in range(2)]
        + [("journey", journey(state, bases, key, n)) for n in range(2)]
    )
    threads = [
        threading.Thread(target=client_loop, args=(state, name, step), daemon=True)
        for name, step in clients
    ]
    print(
        f"drill: {args.seconds:g} s, {len(threads)} clients over 2 servers x 2 workers, "
        "2 senders, PostgreSQL and Redis",
        flush=True,
    )
    for thread in threads:
        thread.start()

    def at(fraction: float) -> None:
        state.stop.wait(max(0.0, state.started + args.seconds * fraction - time.monotonic()))

    at(0.3)
    began = time.monotonic() - state.started
    print(f"  {began:5.1f} s: restarting PostgreSQL", flush=True)
    subprocess.run(args.restart_command, shell=True, check=True)  # noqa: S602 - the operator's command
    state.faults.append(("postgresql restart", began, time.monotonic() - state.started))
    at(0.5)
    began = time.monotonic() - state.started
    print(f"  {began:5.1f} s: SMTP server down for 20 s", flush=True)
    mail.stop()
    state.stop.wait(20)
    mail.start()
    state.faults.append(("smtp down", began, time.monotonic() - state.started))
    at(0.75)
    victim = gunicorn_workers(servers[0].process.pid)[0]
    began = time.monotonic() - state.started
    print(f"  {began:5.1f} s: SIGKILL to worker {victim} of serve0", flush=True)
    os.kill(victim, signal.SIGKILL)
    state.faults.append(("worker killed", began, began + 1))
    at(1.0)
    state.stop.set()
    for thread in threads:
        thread.join(30)
    ended = time.monotonic() - state.started
    print(f"  {ended:5.1f} s: load stopped; waiting for the senders to catch up", flush=True)

    return check(args, state, mail, env, bases, key, servers + senders, ended)


def check(
    args: argparse.Namespace,
    state: State,
    mail: Mail,
    env: dict[str, str],
    bases: list[str],
    key: str,
    processes: list[Server],
    ended: float,
) -> int:
    from sqlalchemy import create_engine, text

    from portal.core.config import normalise_database_url

    engine = create_engine(normalise_database_url(env["PORTAL_DATABASE_URL"]))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with engine.connect() as connection:
            waiting = connection.execute(
                text("SELECT count(*) FROM outbox WHERE status IN ('queued', 'sending')")
            ).scalar()
        if waiting == 0:
            break
        time.sleep(1)
    time.sleep(3)  # a doubled send would arrive by now
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT invitation_id, message_id, status FROM outbox WHERE kind = 'invitation'")
        ).all()
    engine.dispose()
    received = Counter(mail.message_ids())
    by_invitation: dict[str, list[tuple[str, str]]] = {}
    for invitation_id, message_id, status in rows:
        by_invitation.setdefault(invitation_id, []).append((message_id, status))
    problems = []
    for invitation_id in state.invitations:
        messages = by_invitation.get(invitation_id, [])
        got = sum(received[message_id] for message_id, _ in messages)
        if got != 1:
            problems.append(f"invitation {invitation_id}: {got} emails ({messages})")
    doubled = {message_id: n for message_id, n in received.items() if n > 1}
    if doubled:
        problems.append(f"{len(doubled)} messages received more than once: {list(doubled)[:5]}")
    signed = 0
    for customer_id in state.journeys:
        answer = requests.get(
            bases[0] + STATUS.format(customer_id),
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        )
        if answer.status_code == 200 and answer.json() == {"isSigned": True}:
            signed += 1
        else:
            problems.append(f"journey {customer_id}: {answer.status_code} {answer.text[:100]}")
    audit = subprocess.run(
        [str(VENV_BIN / "portal"), "audit", "verify"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if audit.returncode != 0:
        problems.append(f"portal audit verify: {audit.stdout.strip()} {audit.stderr.strip()}")

    def window_of(call: Call) -> str:
        """The fault a call overlapped (it began before, or during, the fault's window)."""
        for name, start, end in state.faults:
            if call.at <= end + GRACE[name] and call.at + call.seconds >= start:
                return name
        return "outside faults"

    outside = [c for c in state.calls if not c.ok and window_of(c) == "outside faults"]
    for call in outside[:10]:
        problems.append(f"error outside a fault at {call.at:.1f} s ({call.kind}): {call.detail}")
    if len(outside) > 10:
        problems.append(f"... {len(outside) - 10} more errors outside the faults")
    for process in processes:
        if process.process.poll() is not None:
            problems.append(f"{process.name} exited with {process.process.returncode}")

    print(f"\nmachine: {machine()}\n")
    edges = [0.0]
    for _name, start, end in state.faults:
        edges += [start, end + 5]
    edges.append(ended)
    edges = sorted(set(edges))
    print(
        f"{'window':>16} {'requests':>9} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'errors':>7}  faults"
    )
    for low, high in zip(edges, edges[1:], strict=False):
        inside = [c for c in state.calls if low <= c.at < high]
        if not inside:
            continue
        latencies = sorted(c.seconds * 1e3 for c in inside if c.ok) or [float("nan")]
        errors = sum(1 for c in inside if not c.ok)
        during = ", ".join(n for n, s, e in state.faults if s < high and e + GRACE[n] > low)
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        print(
            f"{low:6.1f}-{high:6.1f} s {len(inside):9d} {len(inside) / (high - low):7.1f} "
            f"{statistics.median(latencies):8.1f} {p99:8.1f} {errors:7d}  {during}"
        )
    kinds = Counter(c.kind for c in state.calls)
    print(
        f"\ncalls by kind: {dict(kinds)}; errors by kind: "
        f"{dict(Counter(c.kind for c in state.calls if not c.ok))}"
    )
    print(
        f"invitations sent by the portal: {len(state.invitations)}; emails received: "
        f"{sum(received.values())}; journeys completed: {len(state.journeys)} "
        f"({signed} read isSigned true); audit verify: {audit.stdout.strip()[:120]}"
    )
    if problems:
        print("\nLOSS OR UNEXPECTED ERRORS:")
        for problem in problems:
            print(f"  {problem}")
        return 1
    print(
        "\nno loss: every invitation got exactly one email, every journey reads isSigned true, "
        "the evidence chain verifies, and errors fell only inside the faults' windows"
    )
    return 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--database-url", default="postgresql://root@127.0.0.1:5432/test")
    parser.add_argument(
        "--restart-command",
        default="pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main restart",
        help="how PostgreSQL is restarted midway",
    )
    args = parser.parse_args()
    if args.seconds < 60:
        parser.error("--seconds must be at least 60 (the SMTP outage alone is 20 s)")
    return args


if __name__ == "__main__":
    sys.exit(run_guarded(run, parse_args()))
