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
import array
import http.client
import json
import multiprocessing
import os
import platform
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

HOST = "127.0.0.1"
BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
VENV_BIN = Path(sys.executable).parent
STATUS_PATH = "/v1/customers/{}/directSignedMicrosoftCustomerAgreementStatus"
MCA = "MicrosoftCustomerAgreement"

TARGET_RATIO = 0.70
TARGET_P99_MS = 15.0
TARGET_CLIENTS = 16

#: A single response slower than this is an error and ends the run.
REQUEST_TIMEOUT = 10.0
#: Cores' worth of CPU used by other work on the machine above which the figures are flagged.
OTHER_LOAD_WARNING = 0.15
#: How long a server may take to start answering.
START_TIMEOUT = 60.0


# --- load generator (runs in child processes; standard library only) ---------------------------


def _drive(
    pipe: Any,
    port: int,
    request: bytes,
    expected_body: bytes,
    connections: int,
    warmup: float,
    seconds: float,
) -> None:
    """Keep ``connections`` keep-alive connections busy; report latencies of one window.

    One request in flight per connection (a closed loop, like a polling client). Latencies are
    recorded for responses completed in [start + warmup, start + warmup + seconds).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent cleans up on Ctrl-C
    monotonic = time.monotonic
    socks: dict[int, socket.socket] = {}
    bufs: dict[int, bytes] = {}
    sent: dict[int, float] = {}
    errors: list[str] = []
    error_count = 0
    reconnects = 0
    latencies = array.array("d")
    completed = 0
    ep = select.epoll()

    def connect() -> socket.socket:
        sock = socket.create_connection((HOST, port), timeout=REQUEST_TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        socks[sock.fileno()] = sock
        bufs[sock.fileno()] = b""
        ep.register(sock.fileno(), select.EPOLLIN)
        return sock

    def drop(fd: int) -> None:
        ep.unregister(fd)
        socks.pop(fd).close()
        bufs.pop(fd, None)
        sent.pop(fd, None)

    try:
        for _ in range(connections):
            connect()
        pipe.send("ready")
        start = pipe.recv()
        measure_from = start + warmup
        measure_to = measure_from + seconds
        while monotonic() < start:
            time.sleep(min(0.01, max(0.0, start - monotonic())))
        for fd, sock in list(socks.items()):
            sent[fd] = monotonic()
            sock.send(request)
        cpu_from = None
        while True:
            now = monotonic()
            if cpu_from is None and now >= measure_from:
                cpu_from = time.process_time()
            if now >= measure_to:
                break
            events = ep.poll(min(0.5, measure_to - now))
            if not events:
                oldest = min(sent.values(), default=now)
                if now - oldest > REQUEST_TIMEOUT:
                    raise TimeoutError(f"no response within {REQUEST_TIMEOUT} s")
                continue
            for fd, _mask in events:
                sock = socks[fd]
                data = sock.recv(65536)
                done = monotonic()
                if not data:  # the server closed the connection
                    error_count += 1
                    if len(errors) < 5:
                        errors.append("connection closed by the server")
                    drop(fd)
                    reconnects += 1
                    if reconnects > 10 * connections:
                        raise ConnectionError("the server keeps closing connections")
                    new = connect()
                    sent[new.fileno()] = monotonic()
                    new.send(request)
                    continue
                buf = bufs[fd] + data if bufs[fd] else data
                head_end = buf.find(b"\r\n\r\n")
                if head_end < 0:
                    bufs[fd] = buf
                    continue
                head = buf[:head_end].lower()
                cl_at = head.find(b"\r\ncontent-length:")
                if cl_at < 0:
                    raise ValueError(f"response without Content-Length: {buf[:300]!r}")
                cl_end = head.find(b"\r\n", cl_at + 2)
                length = int(head[cl_at + 17 : cl_end if cl_end > 0 else None])
                total = head_end + 4 + length
                if len(buf) < total:
                    bufs[fd] = buf
                    continue
                bufs[fd] = b""
                body = buf[head_end + 4 : total]
                if not buf.startswith(b"HTTP/1.1 200 ") or body != expected_body:
                    error_count += 1
                    if len(errors) < 5:
                        errors.append(repr(buf[:400]))
                elif done >= measure_from:
                    latencies.append(done - sent[fd])
                    completed += 1
                if total != len(buf):
                    raise ValueError(f"unexpected bytes after a response: {buf[total:]!r}")
                if b"\r\nconnection: close" in head:
                    drop(fd)
                    reconnects += 1
                    sock = connect()
                    fd = sock.fileno()
                sent[fd] = monotonic()
                sock.send(request)
        cpu = time.process_time() - (cpu_from if cpu_from is not None else time.process_time())
        pipe.send(("ok", completed, error_count, errors, latencies.tobytes(), cpu))
    except Exception as exc:  # reported to the parent, which fails loudly
        pipe.send(
            ("failed", 0, error_count + 1, [*errors, f"{type(exc).__name__}: {exc}"], b"", 0.0)
        )
    finally:
        for sock in socks.values():
            sock.close()
        ep.close()
        pipe.close()


# --- servers and processes ---------------------------------------------------------------------


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@dataclass
class Cleanup:
    servers: list[Server] = field(default_factory=list)
    children: list[Any] = field(default_factory=list)
    tempdir: Path | None = None
    pg_admin_url: str | None = None
    pg_schema: str | None = None

    def run(self) -> None:
        for child in self.children:
            if child.is_alive():
                child.terminate()
            child.join(5)
            if child.is_alive():
                child.kill()
                child.join(5)
        self.children.clear()
        for server in self.servers:
            stop_server(server)
        self.servers.clear()
        if self.pg_schema and self.pg_admin_url:
            drop_schema(self.pg_admin_url, self.pg_schema)
            self.pg_schema = None
        if self.tempdir is not None:
            shutil.rmtree(self.tempdir, ignore_errors=True)
            self.tempdir = None


def stop_server(server: Server) -> None:
    """Quick shutdown (SIGQUIT) of the gunicorn arbiter we started; then its process group."""
    process = server.process
    if process.poll() is None:
        process.send_signal(signal.SIGQUIT)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            pass
    # The arbiter leads its own process group (start_new_session); take any worker left over.
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if process.poll() is None:
        process.wait(10)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def bench_environment(instance: Path, database_url: str | None) -> dict[str, str]:
    """The environment for the portal and the baseline: no PORTAL_* of this shell but serve's."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PORTAL_") or k in ("PORTAL_SERVE_WORKERS", "PORTAL_SERVE_THREADS")
    }
    env.pop("GUNICORN_CMD_ARGS", None)
    env["PORTAL_INSTANCE_PATH"] = str(instance)
    if database_url:
        env["PORTAL_DATABASE_URL"] = database_url
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_cli(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [str(VENV_BIN / "portal"), *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"portal {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def start_server(
    name: str, command: list[str], env: dict[str, str], tempdir: Path, cleanup: Cleanup
) -> Server:
    port = free_port()
    log = tempdir / f"{name}.log"
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            [*command, "--host", HOST, "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,  # gunicorn's access log ("-"): one line per request
            stderr=log_file,
            start_new_session=True,
        )
    server = Server(name, port, process, log)
    cleanup.servers.append(server)
    return server


def wait_until_answers(server: Server, path: str, headers: dict[str, str]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if not server.alive():
            raise RuntimeError(f"{server.name} exited:\n{server.log_tail()}")
        try:
            status, _ = request_once(server.port, "GET", path, headers=headers, timeout=2)
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(
        f"{server.name} did not answer within {START_TIMEOUT} s:\n{server.log_tail()}"
    )


def request_once(
    port: int,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: Any = None,
    timeout: float = REQUEST_TIMEOUT,
    connection: http.client.HTTPConnection | None = None,
) -> tuple[int, bytes]:
    conn = connection or http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        send_headers = dict(headers or {})
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            send_headers["Content-Type"] = "application/json"
        conn.request(method, path, body=payload, headers=send_headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        if connection is None:
            conn.close()


# --- PostgreSQL: a throwaway schema ------------------------------------------------------------


def with_schema(url: str, schema: str) -> str:
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options={quote(f'-csearch_path={schema}')}"


def create_schema(admin_url: str, schema: str) -> None:
    from sqlalchemy import create_engine, text

    from portal.config import normalise_database_url

    engine = create_engine(normalise_database_url(admin_url))
    try:
        with engine.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    finally:
        engine.dispose()


def drop_schema(admin_url: str, schema: str) -> None:
    from sqlalchemy import create_engine, text

    from portal.config import normalise_database_url

    engine = create_engine(normalise_database_url(admin_url))
    try:
        with engine.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        engine.dispose()


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
            customer_id = json.loads(raw)["id"]
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


# --- measuring ---------------------------------------------------------------------------------


@dataclass
class Phase:
    target: str
    seconds: float
    completed: int
    errors: int
    error_samples: list[str]
    latencies: list[float]
    #: CPU seconds the load generators used in the window (of 2 x seconds on 2 cores).
    client_cpu: float
    #: CPU seconds the target's gunicorn (arbiter and workers) used in the window.
    server_cpu: float
    #: CPU seconds of PostgreSQL's processes in the window (none with SQLite).
    database_cpu: float
    #: CPU seconds the rest of the machine used in the window: other people's work, steal.
    other_cpu: float

    @property
    def rps(self) -> float:
        return self.completed / self.seconds

    @property
    def server_cpu_per_request(self) -> float:
        """Milliseconds of server CPU per answered request."""
        return self.server_cpu / self.completed * 1e3 if self.completed else float("nan")


CLK_TCK = os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent not idle (all cores, steal included), since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = values[3] + values[4]  # idle, iowait
    return (sum(values) - idle) / CLK_TCK


def server_cpu_seconds(servers: list[Server], database: bool) -> dict[str, float]:
    """CPU seconds (user + system) so far of each server's arbiter and workers, and with
    ``database`` of all PostgreSQL processes (with --database-url, part of the portal's cost)."""
    roots = {server.process.pid: server.name for server in servers}
    found = dict.fromkeys([*roots.values(), "database"], 0.0)
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        command = stat[stat.find("(") + 1 : stat.rfind(")")]
        fields = stat.rsplit(")", 1)[1].split()  # state ppid ... utime(12th) stime(13th)
        pid, ppid = int(entry.name), int(fields[1])
        owner = roots.get(pid) or roots.get(ppid)
        if owner is None and database and command == "postgres":
            owner = "database"
        if owner is not None:
            found[owner] += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return found


def measure(
    server: Server,
    servers: list[Server],
    database: bool,
    request: bytes,
    expected_body: bytes,
    clients: int,
    procs: int,
    warmup: float,
    seconds: float,
    cleanup: Cleanup,
) -> Phase:
    ctx = multiprocessing.get_context("spawn")
    procs = max(1, min(procs, clients))
    shares = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
    pipes = []
    for share in shares:
        parent_end, child_end = ctx.Pipe()
        child = ctx.Process(
            target=_drive,
            args=(child_end, server.port, request, expected_body, share, warmup, seconds),
            daemon=True,
        )
        child.start()
        child_end.close()
        cleanup.children.append(child)
        pipes.append(parent_end)
    for pipe in pipes:
        if not pipe.poll(30):
            raise RuntimeError("a load generator did not start")
        reply = pipe.recv()
        if reply != "ready":
            raise RuntimeError(f"a load generator could not connect: {reply}")
    start = time.monotonic() + 0.05
    for pipe in pipes:
        pipe.send(start)
    # CPU accounting over the measured window (the load generators report their own).
    time.sleep(max(0.0, start + warmup - time.monotonic()))
    busy_from, servers_from = machine_busy_seconds(), server_cpu_seconds(servers, database)
    time.sleep(max(0.0, start + warmup + seconds - time.monotonic()))
    busy_to, servers_to = machine_busy_seconds(), server_cpu_seconds(servers, database)
    server_cpu = servers_to[server.name] - servers_from[server.name]
    database_cpu = servers_to["database"] - servers_from["database"]
    ours = sum(servers_to.values()) - sum(servers_from.values())
    completed = errors = 0
    client_cpu = 0.0
    samples: list[str] = []
    latencies: list[float] = []
    for pipe in pipes:
        if not pipe.poll(warmup + seconds + REQUEST_TIMEOUT + 30):
            raise RuntimeError("a load generator did not report")
        state, done, errs, errs_seen, raw, cpu = pipe.recv()
        client_cpu += cpu
        completed += done
        errors += errs
        samples += errs_seen
        chunk = array.array("d")
        chunk.frombytes(raw)
        latencies += chunk.tolist()
        if state != "ok":
            samples.append(f"a load generator failed against {server.name}")
    for child in cleanup.children:
        child.join(10)
    cleanup.children.clear()
    if not server.alive():
        raise RuntimeError(f"{server.name} died during the run:\n{server.log_tail()}")
    other_cpu = max(0.0, busy_to - busy_from - ours - client_cpu)
    return Phase(
        server.name,
        seconds,
        completed,
        errors,
        samples,
        latencies,
        client_cpu=client_cpu,
        server_cpu=server_cpu,
        database_cpu=database_cpu,
        other_cpu=other_cpu,
    )


def percentile(ordered: list[float], p: float) -> float:
    """Nearest-rank percentile of sorted values."""
    if not ordered:
        return float("nan")
    rank = max(1, -(-len(ordered) * p // 100))  # ceil
    return ordered[int(rank) - 1]


def machine() -> str:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"nproc {os.cpu_count()} ({len(os.sched_getaffinity(0))} usable), CPU {model}, "
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.system()} {platform.release()}"
    )


def portal_version(env: dict[str, str], cwd: Path) -> str:
    """Where the served ``portal`` package comes from, and its git commit."""
    found = subprocess.run(
        [sys.executable, "-c", "import portal; print(portal.__file__)"],
        env=env,
        cwd=cwd,  # not ROOT: the script's folder would come first on sys.path
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    package = Path(found.stdout.strip()).parent if found.returncode == 0 else Path("?")
    git = subprocess.run(
        ["git", "-C", str(package), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return f"{package} (git {git.stdout.strip() or 'unknown'})"


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
    args = parse_args()
    cleanup = Cleanup()

    def on_term(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        return run(args, cleanup)
    except KeyboardInterrupt:
        print("\ninterrupted; cleaning up", file=sys.stderr)
        return 130
    except Exception as exc:  # report, clean up, fail
        print(f"\nFAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # finish cleaning up on a second Ctrl-C
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        cleanup.run()


def run(args: argparse.Namespace, cleanup: Cleanup) -> int:
    from baseline_server import serve_settings  # bench/ is on sys.path

    tempdir = Path(tempfile.mkdtemp(prefix="portal-bench-"))
    cleanup.tempdir = tempdir
    database_url = None
    db_label = "SQLite (temporary instance folder)"
    if args.database_url:
        schema = f"bench_{uuid.uuid4().hex[:12]}"
        create_schema(args.database_url, schema)
        cleanup.pg_admin_url, cleanup.pg_schema = args.database_url, schema
        database_url = with_schema(args.database_url, schema)
        db_label = f"PostgreSQL, throwaway schema {schema}"
    env = bench_environment(tempdir / "instance", database_url)

    served = portal_version(env, tempdir)
    print(f"portal:  {served}\nseeding: {db_label}", flush=True)
    run_cli(env, "db", "upgrade")
    partner = json.loads(
        run_cli(env, "partners", "create", "--name", "Bench", "--kind", "direct", "--json")
    )
    key = partner["apiKey"]
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
