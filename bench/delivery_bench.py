"""Outbox delivery rate against a bare smtplib loop, and customer + invitation creation time.

Run by hand from the project folder (about two minutes with the defaults, more with --profile):

    .venv/bin/python bench/delivery_bench.py [-n 1000] [--rounds 2] [--batch 100] [--threads 4]
        [--database-url postgresql://root@127.0.0.1:5432/test] [--no-serve] [--profile]

What it does, in one run:

A. Delivery. Starts an aiosmtpd server on 127.0.0.1 in a subprocess of its own (so it takes no
   GIL time from the sender; it counts the Message-ID headers of what it receives), makes a
   temporary instance folder with a SQLite database (or a throwaway schema in the PostgreSQL
   database of ``--database-url``, dropped afterwards), seeds it with ``portal db upgrade`` and
   ``portal partners create --json``, warms up, and in each round creates N customers, each with
   an invitation queued for sending (``{"send": true}``), through the Flask test client. It then
   times, in alternating order, (1) ``portal.mail.sending.deliver_due`` passes until all N are sent
   and (2) a bare ``smtplib.SMTP`` loop over one connection sending the same N messages (the
   MIME bytes the outbox stored when each message was queued, read before the clock starts).
   The server must receive every outbox Message-ID exactly once on each side. Besides
   messages/s it prints this process's CPU per message, which other work on the machine
   disturbs less.

B. Creation: N x (``POST /v1/customers`` then ``POST /v1/customers/{id}/invitations``).
   The target's measure is the API as served: a real ``portal serve`` (gunicorn, its default
   workers and threads, no SMTP server so its delivery loop stays idle) on a free loopback port,
   driven over HTTP by ``--threads`` keep-alive ``http.client`` threads, ``--rounds`` times
   after a warm-up, with the server's CPU per pair (all its processes, from ``/proc``).
   ``--no-serve`` skips it. For reference, the seeding of A is timed too: the same requests
   through the Flask test client in-process (no HTTP, no server, one thread).

Targets printed beside the figures: delivery ratio portal/baseline >= 0.7; creating 1000
customers with their invitations through ``portal serve`` <= 10 s (the in-process figure is
shown beside it, marked as not the target's measure). ``--profile`` adds untimed rounds:
``deliver_due`` with a stopwatch on each step (wall and CPU per message), then creation and
delivery under cProfile.
No ``PORTAL_*`` variable of the shell is used. Exit status 1 means a failure (a message missing
or sent twice, an HTTP error), not a missed target.
"""

from __future__ import annotations

import argparse
import cProfile
import http.client
import io
import json
import os
import platform
import pstats
import re
import select
import shutil
import signal
import smtplib
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

RATIO_TARGET = 0.7
CREATE_TARGET_SECONDS = 10.0
CREATE_TARGET_COUNT = 1000
SENDER = "Portal <portal@bench.test>"
BASE_URL = "https://portal.bench.test"
SMTP_HOST = "127.0.0.1"


class BenchError(Exception):
    pass


# --- the SMTP server (runs as ``delivery_bench.py --smtp-server`` in a subprocess) ------------

_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(<[^>\r\n]*>)", re.IGNORECASE | re.MULTILINE)


class CountingHandler:
    """Counts messages and the Message-ID headers in them; keeps nothing else."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.messages = 0
            self.ids: Counter[str] = Counter()
            self.with_several_ids = 0
            self.without_id = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        content = envelope.original_content or envelope.content
        head = content.split(b"\r\n\r\n", 1)[0]
        found = _MESSAGE_ID.findall(head)
        with self.lock:
            self.messages += 1
            self.ids.update(i.decode("ascii", "replace") for i in found)
            if len(found) > 1:
                self.with_several_ids += 1
            if not found:
                self.without_id += 1
        return "250 OK"

    def dump(self) -> dict[str, Any]:
        with self.lock:
            return {
                "messages": self.messages,
                "ids": dict(self.ids),
                "with_several_ids": self.with_several_ids,
                "without_id": self.without_id,
            }


def free_port() -> int:
    with socket.socket() as s:
        s.bind((SMTP_HOST, 0))
        return int(s.getsockname()[1])


def smtp_server_main() -> int:
    """Serve SMTP on loopback; answer ``reset`` / ``dump`` / ``quit`` lines on stdin."""
    from aiosmtpd.controller import Controller

    handler = CountingHandler()
    controller = None
    for _ in range(5):
        port = free_port()
        candidate = Controller(
            handler,
            hostname=SMTP_HOST,
            port=port,
            server_hostname="smtp.bench.test",
            ready_timeout=10,
        )
        try:
            candidate.start()
        except (OSError, TimeoutError, RuntimeError):
            continue
        controller = candidate
        break
    if controller is None:
        print("error could not start the SMTP server", flush=True)
        return 1
    print(f"ready {controller.port}", flush=True)
    try:
        for line in sys.stdin:
            command = line.strip()
            if command == "reset":
                handler.reset()
                print(json.dumps({"ok": True}), flush=True)
            elif command == "dump":
                print(json.dumps(handler.dump()), flush=True)
            else:
                break
    finally:
        controller.stop()
    return 0


class SmtpServer:
    """The parent's handle on the SMTP server subprocess."""

    def __init__(self, process: subprocess.Popen[str], port: int) -> None:
        self.process = process
        self.port = port

    def _line(self, timeout: float = 30) -> str:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            raise BenchError("the SMTP server did not answer")
        line = self.process.stdout.readline()
        if not line:
            raise BenchError(f"the SMTP server exited ({self.process.poll()})")
        return line.strip()

    def command(self, name: str) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(name + "\n")
        self.process.stdin.flush()
        result: dict[str, Any] = json.loads(self._line())
        return result


@contextmanager
def smtp_server() -> Iterator[SmtpServer]:
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--smtp-server"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        server = SmtpServer(process, 0)
        first = server._line()
        if not first.startswith("ready "):
            raise BenchError(f"SMTP server: {first}")
        server.port = int(first.split()[1])
        yield server
    finally:
        stop_process(process, close_stdin=True)


def stop_process(process: subprocess.Popen[Any], close_stdin: bool = False) -> None:
    """Stop a subprocess this script started (and its process group if it has its own)."""
    if process.poll() is None:
        if close_stdin and process.stdin is not None:
            try:
                process.stdin.close()
            except OSError:
                pass
        else:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            try:
                stream.close()
            except OSError:
                pass


# --- the machine and the database -------------------------------------------------------------


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor() or model
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"nproc {usable} ({os.cpu_count()} online), CPU {model}, "
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"SQLite {sqlite3.sqlite_version}, {platform.system()} {platform.release()}"
    )


@contextmanager
def database(url: str | None) -> Iterator[str | None]:
    """None (SQLite in the instance folder), or the URL of a throwaway PostgreSQL schema."""
    if not url:
        yield None
        return
    from sqlalchemy import text

    from portal.core import db
    from portal.core.config import normalise_database_url

    schema = f"portal_bench_{uuid.uuid4().hex[:12]}"
    base = normalise_database_url(url)
    admin = db.make_engine(base)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def portal_command() -> list[str]:
    script = Path(sys.executable).with_name("portal")
    return [str(script)] if script.exists() else [sys.executable, "-m", "portal.cli"]


def run_cli(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [*portal_command(), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise BenchError(f"portal {' '.join(args)} failed: {result.stderr or result.stdout}")
    return result.stdout


@dataclass
class Timing:
    seconds: float
    cpu_seconds: float
    passes: int = 1


# --- creating customers and invitations -------------------------------------------------------


def customer_body(tag: str, index: int) -> dict[str, Any]:
    domain = f"b{tag}-{index}.bench.test"
    return {
        "companyProfile": {"domain": domain},
        "billingProfile": {
            "email": f"it@{domain}",
            "culture": "en-US",
            "language": "en",
            "companyName": f"Bench Customer {index}",
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


INVITATION_BODY = {"send": True}


def create_with_test_client(client: Any, key: str, count: int, tag: str) -> Timing:
    """``count`` x (create customer, create invitation) through the test client."""
    headers = {"Authorization": f"Bearer {key}"}
    cpu = time.process_time()
    start = time.perf_counter()
    for index in range(count):
        response = client.post("/v1/customers", json=customer_body(tag, index), headers=headers)
        if response.status_code != 201:
            raise BenchError(f"POST /v1/customers: {response.status_code} {response.get_data()}")
        customer_id = response.get_json()["id"]
        response = client.post(
            f"/v1/customers/{customer_id}/invitations", json=INVITATION_BODY, headers=headers
        )
        if response.status_code != 201:
            raise BenchError(f"POST invitations: {response.status_code} {response.get_data()}")
    return Timing(time.perf_counter() - start, time.process_time() - cpu)


def _post(
    connection: http.client.HTTPConnection, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, bytes]:
    # A fresh MS-RequestId on every POST, as Partner Center's SDKs send it: the API claims
    # each one (idempotency), and that cost is part of what is measured.
    headers = {**headers, "MS-RequestId": str(uuid.uuid4())}
    connection.request("POST", path, body=body, headers=headers)
    response = connection.getresponse()
    data = response.read()
    if response.getheader("Connection", "").lower() == "close":
        connection.close()
    return response.status, data


def create_through_serve(port: int, key: str, count: int, tag: str, threads: int) -> float:
    """Seconds for ``count`` customer + invitation pairs over HTTP, from ``threads`` clients."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    errors: list[str] = []
    invitation = json.dumps(INVITATION_BODY).encode()

    def work(indices: range) -> None:
        connection = http.client.HTTPConnection(SMTP_HOST, port, timeout=60)
        try:
            for index in indices:
                if errors:
                    return
                body = json.dumps(customer_body(tag, index)).encode()
                status, data = _post(connection, "/v1/customers", body, headers)
                if status != 201:
                    errors.append(f"POST /v1/customers: {status} {data[:300]!r}")
                    return
                customer_id = json.loads(data)["id"]
                path = f"/v1/customers/{customer_id}/invitations"
                status, data = _post(connection, path, invitation, headers)
                if status != 201:
                    errors.append(f"POST {path}: {status} {data[:300]!r}")
                    return
        except (OSError, http.client.HTTPException, ValueError) as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            connection.close()

    workers = [
        threading.Thread(target=work, args=(range(i, count, threads),), daemon=True)
        for i in range(threads)
    ]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    deadline = start + 900
    for worker in workers:
        worker.join(max(deadline - time.perf_counter(), 0.1))
    elapsed = time.perf_counter() - start
    if any(worker.is_alive() for worker in workers):
        errors.append("client threads did not finish in 900 s")
    if errors:
        raise BenchError("; ".join(errors[:3]))
    return elapsed


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


CLK_TCK = os.sysconf("SC_CLK_TCK")


def group_cpu_seconds(group: int) -> float:
    """CPU seconds (user + system) so far of the processes in a process group (``portal serve``
    leads its own: the gunicorn arbiter, its workers and the idle delivery process)."""
    total = 0.0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # state ppid pgrp ... utime(12th) stime(13th)
        if int(fields[2]) == group:
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


@dataclass
class Serving:
    port: int
    pid: int


@contextmanager
def portal_serve(env: dict[str, str], log_path: Path) -> Iterator[Serving]:
    """``portal serve`` on a free loopback port, in a process group of its own."""
    port = free_port()
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [*portal_command(), "serve", "--host", SMTP_HOST, "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise BenchError(
                    f"portal serve exited ({process.returncode}):\n{_log_tail(log_path)}"
                )
            try:
                connection = http.client.HTTPConnection(SMTP_HOST, port, timeout=2)
                connection.request("GET", "/v1/openapi.json")
                if connection.getresponse().status == 200:
                    connection.close()
                    break
                connection.close()
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise BenchError(f"portal serve did not answer in 60 s:\n{_log_tail(log_path)}")
            time.sleep(0.2)
        yield Serving(port, process.pid)
    finally:
        stop_process(process)
        try:
            # The workers are its children; none should outlive it.
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


# --- delivering -------------------------------------------------------------------------------


@dataclass
class Prepared:
    """The N messages as the baseline sends them: envelope and the MIME bytes."""

    sender: str
    items: list[tuple[str, bytes]] = field(default_factory=list)
    message_ids: list[str] = field(default_factory=list)


def prepare_baseline(app: Any) -> Prepared:
    """The queued outbox rows as the bytes the portal sends (read before the clock starts)."""
    from flask_mail import sanitize_address
    from sqlalchemy import select

    from portal.core import db
    from portal.core.models import DeliveryStatus, OutboxMessage
    from portal.mail import mime

    with app.app_context():
        session = db.session()
        rows = list(
            session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.status == DeliveryStatus.QUEUED)
                .order_by(OutboxMessage.next_attempt_at)
            )
        )
        prepared = Prepared(sanitize_address(app.config["MAIL_DEFAULT_SENDER"]))
        for row in rows:
            # The very bytes the portal sends: built when the message was queued.
            data = row.mime
            if data is None:
                data = mime.build(app.config["MAIL_DEFAULT_SENDER"], row)
            prepared.items.append((row.to_address, data))
        prepared.message_ids = [row.message_id for row in rows]
        session.rollback()
    return prepared


def deliver_with_portal(app: Any, batch: int, expected: int) -> Timing:
    from sqlalchemy import func, select

    from portal.core import db
    from portal.core.models import DeliveryStatus, OutboxMessage
    from portal.mail import sending

    with app.app_context():
        session = db.session()
        sent = passes = 0
        cpu = time.process_time()
        start = time.perf_counter()
        while sent < expected and passes < expected // batch + 5:
            report = sending.deliver_due(app, session, batch=batch)
            passes += 1
            if report.retrying or report.failed:
                raise BenchError(f"delivery trouble: {report.errors[:3]}")
            if not report.attempted:
                break
            sent += report.sent
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu
        left = session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.status != DeliveryStatus.SENT)
        )
        session.rollback()
    if sent != expected or left:
        raise BenchError(f"portal sent {sent} of {expected}; {left} not sent")
    return Timing(elapsed, cpu, passes)


def deliver_with_smtplib(port: int, prepared: Prepared) -> Timing:
    cpu = time.process_time()
    start = time.perf_counter()
    connection = smtplib.SMTP(SMTP_HOST, port, timeout=10)
    try:
        for recipient, data in prepared.items:
            connection.sendmail(prepared.sender, [recipient], data)
    finally:
        connection.quit()
    return Timing(time.perf_counter() - start, time.process_time() - cpu)


def check_received(server: SmtpServer, message_ids: list[str], side: str) -> dict[str, Any]:
    got = server.command("dump")
    ids: dict[str, int] = got["ids"]
    missing = [m for m in message_ids if ids.get(m, 0) == 0]
    twice = [m for m in message_ids if ids.get(m, 0) > 1]
    if got["messages"] != len(message_ids) or missing or twice:
        raise BenchError(
            f"{side}: server got {got['messages']} messages for {len(message_ids)}; "
            f"{len(missing)} Message-IDs missing, {len(twice)} more than once"
        )
    return got


# --- profiling --------------------------------------------------------------------------------


def _group(filename: str) -> str:
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0]
    if "/portal/" in filename:
        return "portal"
    if filename.startswith("~"):
        return "C builtins (sqlite3, sockets, hashing...)"
    if "/lib/python3" in filename:
        return "stdlib " + filename.rsplit("/lib/python3", 1)[1].split("/")[1].split(".")[0]
    return filename.rsplit("/", 1)[-1]


def profile_summary(profile: cProfile.Profile, title: str, per: int, limit: int = 18) -> str:
    """Own time grouped by package, then the slowest calls (cumulative) of portal and below."""
    stats = pstats.Stats(profile)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    groups: Counter[str] = Counter()
    for (filename, _line, _name), (_cc, _nc, own, _cum, _callers) in raw.items():
        groups[_group(filename)] += own
    total = sum(groups.values())
    out = io.StringIO()
    out.write(f"\n--- {title}: {total:.2f} s under cProfile, {1000 * total / per:.2f} ms each\n")
    out.write("    own time by package (ms each under cProfile, about 2x the real cost):\n")
    for name, own in groups.most_common(10):
        out.write(f"      {name:44s} {1000 * own / per:7.2f} ms  {100 * own / total:4.1f} %\n")
    rows = sorted(
        (
            (cum, calls, "/".join(filename.rsplit("/", 2)[-2:]), line, name)
            for (filename, line, name), (_cc, calls, _own, cum, _callers) in raw.items()
            if "/portal/" in filename or name.startswith("<method 'commit'")
        ),
        reverse=True,
    )
    out.write("    slowest calls in portal/ (cumulative ms each, calls each):\n")
    for cum, calls, filename, line, name in rows[:limit]:
        out.write(
            f"      {1000 * cum / per:7.2f} ms  {calls / per:6.2f}x  {filename}:{line}({name})\n"
        )
    return out.getvalue()


def _stopwatch(function: Any, label: str, totals: dict[str, list[float]]) -> Any:
    def timed(*args: Any, **kwargs: Any) -> Any:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return function(*args, **kwargs)
        finally:
            entry = totals.setdefault(label, [0.0, 0.0, 0])
            entry[0] += time.perf_counter() - wall
            entry[1] += time.process_time() - cpu
            entry[2] += 1

    return timed


@contextmanager
def stopwatches(targets: list[tuple[Any, str, str]]) -> Iterator[dict[str, list[float]]]:
    """Wrap ``owner.attr`` with a wall + CPU stopwatch while inside; missing ones are skipped."""
    totals: dict[str, list[float]] = {}
    patched: list[tuple[Any, str, Any]] = []
    try:
        for owner, attr, label in targets:
            original = owner.__dict__.get(attr)
            if original is None:
                continue
            patched.append((owner, attr, original))
            setattr(owner, attr, _stopwatch(original, label, totals))
        yield totals
    finally:
        for owner, attr, original in reversed(patched):
            setattr(owner, attr, original)


def delivery_breakdown(app: Any, server: SmtpServer, key: str, args: argparse.Namespace) -> str:
    """Wall and CPU time per message in the steps of ``deliver_due`` (one untimed round)."""
    from sqlalchemy.orm import Session

    from portal.mail import mime, outbox, sending

    count = args.count
    create_with_test_client(app.test_client(), key, count, f"w{uuid.uuid4().hex[:6]}")
    prepared = prepare_baseline(app)
    server.command("reset")
    targets = [
        (sending.VerifiedConnection, "configure_host", "connect (once per pass)"),
        (outbox, "claim", "outbox.claim (UPDATE ... RETURNING + commit, per batch)"),
        (sending, "_send", "sending._send (header check + sendmail)"),
        (smtplib.SMTP, "sendmail", "  smtplib sendmail (the wire + the server)"),
        (mime, "build", "  mime.build (only rows queued without MIME)"),
        (sending, "_mark_sent", "sending._mark_sent (UPDATE + commit per SENT_GROUP)"),
        (sending, "_finish", "sending._finish (failed attempts only)"),
        (Session, "commit", "Session.commit (in claim and _mark_sent)"),
    ]
    with stopwatches(targets) as totals:
        timing = deliver_with_portal(app, args.batch, count)
    check_received(server, prepared.message_ids, "portal (stopwatches)")
    out = io.StringIO()
    out.write(
        f"\n--- portal delivery, step by step ({count} messages, stopwatches, no profiler): "
        f"{1000 * timing.seconds / count:.2f} ms wall, "
        f"{1000 * timing.cpu_seconds / count:.2f} ms CPU per message\n"
    )
    for _owner, _attr, label in targets:
        if label not in totals:
            continue
        wall, cpu, calls = totals[label]
        out.write(
            f"      {label:56s} {1000 * wall / count:6.2f} ms wall  "
            f"{1000 * cpu / count:6.2f} ms CPU  ({calls:.0f} calls)\n"
        )
    return out.getvalue()


def profile_round(app: Any, server: SmtpServer, key: str, args: argparse.Namespace) -> str:
    """One more round, not counted: creation and delivery under cProfile, and the breakdown."""
    count = args.count
    report = delivery_breakdown(app, server, key, args)
    profiler = cProfile.Profile()
    profiler.enable()
    create_with_test_client(app.test_client(), key, count, f"p{uuid.uuid4().hex[:6]}")
    profiler.disable()
    report += profile_summary(
        profiler, "creation through the test client, per customer + invitation pair", count
    )
    prepared = prepare_baseline(app)
    server.command("reset")
    profiler = cProfile.Profile()
    profiler.enable()
    deliver_with_portal(app, args.batch, count)
    profiler.disable()
    check_received(server, prepared.message_ids, "portal (profiled)")
    report += profile_summary(profiler, "portal delivery, per message", count)
    return report


# --- the run ----------------------------------------------------------------------------------


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def verdict(ok: bool) -> str:
    return "OK" if ok else "MISSED"


def load() -> str:
    try:
        return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "load average unknown"


def clean_env(instance: Path, database_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    env["PORTAL_INSTANCE_PATH"] = str(instance)
    env["PORTAL_BASE_URL"] = BASE_URL
    if database_url:
        env["PORTAL_DATABASE_URL"] = database_url
    return env


@dataclass
class Results:
    portal: list[Timing] = field(default_factory=list)
    baseline: list[Timing] = field(default_factory=list)
    create: list[Timing] = field(default_factory=list)
    several_ids: int = 0
    #: Through ``portal serve``: one timing per round; CPU is the server's (all its processes).
    serve: list[Timing] = field(default_factory=list)
    serve_workers: str = ""
    profile: str = ""


def measure(args: argparse.Namespace) -> Results:
    count: int = args.count
    results = Results()
    with ExitStack() as stack:
        tmp = Path(tempfile.mkdtemp(prefix="portal-delivery-bench-"))
        stack.callback(shutil.rmtree, tmp, ignore_errors=True)
        url = stack.enter_context(database(args.database_url))
        env = clean_env(tmp / "instance", url)
        run_cli(env, "db", "upgrade")
        seeded = run_cli(env, "partners", "create", "--name", "Bench", "--kind", "direct", "--json")
        key: str = json.loads(seeded.strip().splitlines()[-1])["apiKey"]

        server = stack.enter_context(smtp_server())
        saved_env = dict(os.environ)

        def restore_env() -> None:
            os.environ.clear()
            os.environ.update(saved_env)

        stack.callback(restore_env)
        os.environ.clear()
        os.environ.update(
            env,
            PORTAL_MAIL_SERVER=SMTP_HOST,
            PORTAL_MAIL_PORT=str(server.port),
            PORTAL_MAIL_DEFAULT_SENDER=SENDER,
        )
        from portal import create_app
        from portal.core import db

        app = create_app()

        def dispose() -> None:
            with app.app_context():
                db.engine().dispose()

        stack.callback(dispose)
        client = app.test_client()
        # Warm up (imports, template compilation, statement caches); not counted.
        create_with_test_client(client, key, min(20, count), f"warm{uuid.uuid4().hex[:6]}")
        deliver_with_portal(app, args.batch, min(20, count))

        for round_no in range(1, args.rounds + 1):
            created = create_with_test_client(
                client, key, count, f"r{round_no}{uuid.uuid4().hex[:6]}"
            )
            results.create.append(created)
            prepared = prepare_baseline(app)
            if len(prepared.items) != count:
                raise BenchError(f"{len(prepared.items)} messages queued, expected {count}")
            order = ["portal", "baseline"] if round_no % 2 else ["baseline", "portal"]
            timings: dict[str, Timing] = {}
            for side in order:
                server.command("reset")
                if side == "portal":
                    timings[side] = deliver_with_portal(app, args.batch, count)
                else:
                    timings[side] = deliver_with_smtplib(server.port, prepared)
                got = check_received(server, prepared.message_ids, side)
                results.several_ids = max(results.several_ids, got["with_several_ids"])
            results.portal.append(timings["portal"])
            results.baseline.append(timings["baseline"])
            print(
                f"round {round_no}: create {created.seconds:.2f} s; "
                + ", ".join(
                    f"{side} {rate(count, timings[side].seconds):.0f} msg/s" for side in order
                )
                + f"; ratio {timings['baseline'].seconds / timings['portal'].seconds:.2f}"
                + f"; {load()}",
                flush=True,
            )

        if args.profile:
            results.profile = profile_round(app, server, key, args)

        if args.serve:
            with portal_serve(env, tmp / "serve.log") as serving:
                # Warm up (imports, first connections of each worker thread); not counted.
                warm = f"sw{uuid.uuid4().hex[:6]}"
                create_through_serve(serving.port, key, min(50, count), warm, args.threads)
                for round_no in range(1, args.rounds + 1):
                    tag = f"s{round_no}{uuid.uuid4().hex[:6]}"
                    cpu = group_cpu_seconds(serving.pid)
                    seconds = create_through_serve(serving.port, key, count, tag, args.threads)
                    timing = Timing(seconds, group_cpu_seconds(serving.pid) - cpu)
                    results.serve.append(timing)
                    print(
                        f"serve round {round_no}: create {seconds:.2f} s "
                        f"({1000 * timing.cpu_seconds / count:.1f} ms server CPU per pair); "
                        f"{load()}",
                        flush=True,
                    )
    return results


def report(args: argparse.Namespace, results: Results) -> None:
    count = args.count
    total = count * len(results.portal)
    portal_seconds = sum(t.seconds for t in results.portal)
    baseline_seconds = sum(t.seconds for t in results.baseline)
    ratio = baseline_seconds / portal_seconds
    passes = sum(t.passes for t in results.portal) / len(results.portal)
    scale = CREATE_TARGET_COUNT / count
    create_seconds = [t.seconds for t in results.create]
    create_cpu = 1000 * sum(t.cpu_seconds for t in results.create) / (count * len(results.create))
    best_create = min(create_seconds) * scale

    print()
    print("A. delivery, all rounds together (every outbox Message-ID arrived exactly once)")
    print(
        f"   portal deliver_due: {rate(total, portal_seconds):7.0f} msg/s  "
        f"(batch {args.batch}, {passes:.0f} passes per round)"
    )
    print(
        f"   bare smtplib loop:  {rate(total, baseline_seconds):7.0f} msg/s  "
        "(one connection, the same MIME bytes, read beforehand)"
    )
    print(
        f"   ratio portal/baseline: {ratio:.2f}   target >= {RATIO_TARGET}   "
        f"{verdict(ratio >= RATIO_TARGET)}"
    )
    per = 1000 / total
    print(
        "   CPU of this process per message: portal "
        f"{per * sum(t.cpu_seconds for t in results.portal):.2f} ms, baseline "
        f"{per * sum(t.cpu_seconds for t in results.baseline):.2f} ms "
        "(both send the MIME bytes the outbox built when the message was queued)"
    )
    if results.several_ids:
        print(
            f"   note: {results.several_ids} of {count} messages per side carried two Message-ID "
            "headers (Flask-Mail's own, then the outbox's from extra_headers)"
        )
    print()
    print(
        f"B. creation: {count} x (POST /v1/customers, then POST .../invitations {INVITATION_BODY})"
    )
    print(
        "   The target is for the API as served: through `portal serve` (gunicorn, its default "
        "workers and threads)."
    )
    if results.serve:
        serve_seconds = [t.seconds for t in results.serve]
        serve_cpu = 1000 * sum(t.cpu_seconds for t in results.serve) / (count * len(results.serve))
        best_serve = min(serve_seconds) * scale
        print(
            f"   portal serve, {args.threads} keep-alive client threads over HTTP: "
            + ", ".join(f"{s:.2f} s" for s in serve_seconds)
            + f"  ({serve_cpu:.1f} ms server CPU per pair)"
        )
        print(
            f"      best, for {CREATE_TARGET_COUNT}: {best_serve:.2f} s   target <= "
            f"{CREATE_TARGET_SECONDS:.0f} s   {verdict(best_serve <= CREATE_TARGET_SECONDS)}"
        )
    else:
        print("   portal serve: skipped (--no-serve), so the target was not measured")
    print(
        "   in-process, for reference (Flask test client: no HTTP, no server, one thread): "
        + ", ".join(f"{s:.2f} s" for s in create_seconds)
        + f"  ({1000 * min(create_seconds) / count:.1f} ms wall, {create_cpu:.1f} ms CPU per pair)"
    )
    print(
        f"      best, for {CREATE_TARGET_COUNT}: {best_create:.2f} s   "
        f"{'within' if best_create <= CREATE_TARGET_SECONDS else 'over'} "
        f"{CREATE_TARGET_SECONDS:.0f} s (not the target's measure)"
    )
    print(f"   {load()} at the end (other work on the machine slows both sides alike)")
    if results.profile:
        print(results.profile)


def run(args: argparse.Namespace) -> int:
    print(f"machine: {machine()}")
    print(
        f"count {args.count}, rounds {args.rounds}, batch {args.batch}, database "
        f"{'PostgreSQL (throwaway schema)' if args.database_url else 'SQLite (temporary file)'}; "
        f"{load()}",
        flush=True,
    )
    report(args, measure(args))
    return 0


def main() -> int:
    if sys.argv[1:] == ["--smtp-server"]:
        return smtp_server_main()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--count", type=int, default=1000, help="messages / customers")
    parser.add_argument("--rounds", type=int, default=2, help="rounds (sides alternate order)")
    parser.add_argument("--batch", type=int, default=100, help="deliver_due batch size")
    parser.add_argument(
        "--database-url", help="PostgreSQL URL; a throwaway schema is made and dropped"
    )
    parser.add_argument("--threads", type=int, default=4, help="client threads against serve")
    parser.add_argument(
        "--no-serve", dest="serve", action="store_false", help="skip the portal serve part"
    )
    parser.add_argument("--profile", action="store_true", help="add a cProfile round")
    args = parser.parse_args()
    if not 1 <= args.count <= 100_000 or not 1 <= args.rounds <= 20:
        parser.error("--count must be 1..100000 and --rounds 1..20")
    if not 1 <= args.batch <= 10_000 or not 1 <= args.threads <= 64:
        parser.error("--batch must be 1..10000 and --threads 1..64")
    try:
        return run(args)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
