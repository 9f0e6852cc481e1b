"""Shared by the benchmarks run by hand: servers, load generator, CPU accounting, the machine.

``status_bench.py`` and ``pages_bench.py`` import it (the script's folder, ``bench/``, is on
``sys.path``). Standard library only, but for the PostgreSQL schema helpers (SQLAlchemy and
``portal.config``, imported when used).
"""

from __future__ import annotations

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
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

HOST = "127.0.0.1"
BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
VENV_BIN = Path(sys.executable).parent

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
    requests: list[bytes],
    expected: bytes,
    exact: bool,
    connections: int,
    warmup: float,
    seconds: float,
) -> None:
    """Keep ``connections`` keep-alive connections busy; report latencies of one window.

    One request in flight per connection (a closed loop, like a polling client); connection ``i``
    sends ``requests[i % len(requests)]``, the same one every time (a reconnection keeps it).
    A right response is status 200 with a body equal to ``expected`` (``exact``) or containing
    it. Latencies are recorded for responses completed in [start + warmup, start + warmup +
    seconds).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent cleans up on Ctrl-C
    monotonic = time.monotonic
    socks: dict[int, socket.socket] = {}
    bufs: dict[int, bytes] = {}
    sent: dict[int, float] = {}
    mine: dict[int, bytes] = {}  # the request each connection sends
    errors: list[str] = []
    error_count = 0
    reconnects = 0
    latencies = array.array("d")
    completed = 0
    ep = select.epoll()

    def connect(request: bytes) -> socket.socket:
        sock = socket.create_connection((HOST, port), timeout=REQUEST_TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        socks[sock.fileno()] = sock
        bufs[sock.fileno()] = b""
        mine[sock.fileno()] = request
        ep.register(sock.fileno(), select.EPOLLIN)
        return sock

    def drop(fd: int) -> bytes:
        ep.unregister(fd)
        socks.pop(fd).close()
        bufs.pop(fd, None)
        sent.pop(fd, None)
        return mine.pop(fd)

    try:
        for i in range(connections):
            connect(requests[i % len(requests)])
        pipe.send("ready")
        start = pipe.recv()
        measure_from = start + warmup
        measure_to = measure_from + seconds
        while monotonic() < start:
            time.sleep(min(0.01, max(0.0, start - monotonic())))
        for fd, sock in list(socks.items()):
            sent[fd] = monotonic()
            sock.send(mine[fd])
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
                    request = drop(fd)
                    reconnects += 1
                    if reconnects > 10 * connections:
                        raise ConnectionError("the server keeps closing connections")
                    new = connect(request)
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
                if not buf.startswith(b"HTTP/1.1 200 ") or (
                    body != expected if exact else expected not in body
                ):
                    error_count += 1
                    if len(errors) < 5:
                        errors.append(repr(buf[:400]))
                elif done >= measure_from:
                    latencies.append(done - sent[fd])
                    completed += 1
                if total != len(buf):
                    raise ValueError(f"unexpected bytes after a response: {buf[total:]!r}")
                if b"\r\nconnection: close" in head:
                    request = drop(fd)
                    reconnects += 1
                    sock = connect(request)
                    fd = sock.fileno()
                sent[fd] = monotonic()
                sock.send(mine[fd])
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

    from portal.core.config import normalise_database_url

    engine = create_engine(normalise_database_url(admin_url))
    try:
        with engine.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    finally:
        engine.dispose()


def drop_schema(admin_url: str, schema: str) -> None:
    from sqlalchemy import create_engine, text

    from portal.core.config import normalise_database_url

    engine = create_engine(normalise_database_url(admin_url))
    try:
        with engine.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        engine.dispose()


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
    request: bytes | list[bytes],
    expected_body: bytes,
    clients: int,
    procs: int,
    warmup: float,
    seconds: float,
    cleanup: Cleanup,
    exact: bool = True,
) -> Phase:
    """Drive ``server`` with ``clients`` connections over ``procs`` load-generator processes.

    ``request``: the request every client sends, or one per client (client ``i`` sends
    ``request[i % len(request)]``). A right response is 200 with a body equal to
    ``expected_body``, or with ``exact=False`` containing it.
    """
    ctx = multiprocessing.get_context("spawn")
    requests = [request] if isinstance(request, bytes) else list(request)
    procs = max(1, min(procs, clients))
    shares = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
    pipes = []
    first = 0
    for share in shares:
        # Each process takes the next ``share`` clients' requests, in order.
        mine = [requests[(first + i) % len(requests)] for i in range(share)]
        first += share
        parent_end, child_end = ctx.Pipe()
        child = ctx.Process(
            target=_drive,
            args=(child_end, server.port, mine, expected_body, exact, share, warmup, seconds),
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


@dataclass
class Seeded:
    """A fresh portal instance with a partner: where it lives and how to reach it."""

    tempdir: Path
    env: dict[str, str]
    api_key: str
    served: str
    db_label: str


def seed_instance(database_url: str | None, cleanup: Cleanup) -> Seeded:
    """A temporary instance folder (SQLite) or a throwaway PostgreSQL schema, migrated, with
    one direct partner made by the real CLI."""
    import tempfile
    import uuid

    tempdir = Path(tempfile.mkdtemp(prefix="portal-bench-"))
    cleanup.tempdir = tempdir
    url = None
    db_label = "SQLite (temporary instance folder)"
    if database_url:
        schema = f"bench_{uuid.uuid4().hex[:12]}"
        create_schema(database_url, schema)
        cleanup.pg_admin_url, cleanup.pg_schema = database_url, schema
        url = with_schema(database_url, schema)
        db_label = f"PostgreSQL, throwaway schema {schema}"
    env = bench_environment(tempdir / "instance", url)
    served = portal_version(env, tempdir)
    print(f"portal:  {served}\nseeding: {db_label}", flush=True)
    run_cli(env, "db", "upgrade")
    partner = json.loads(
        run_cli(env, "partners", "create", "--name", "Bench", "--kind", "direct", "--json")
    )
    return Seeded(tempdir, env, partner["apiKey"], served, db_label)


def run_guarded(run: Callable[[Any, Cleanup], int], args: Any) -> int:
    """``run(args, cleanup)``, then clean up whatever happened: 130 on Ctrl-C or SIGTERM, 1 on
    any failure (reported), else what ``run`` returned."""
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


def german_customer(domain: str = "") -> dict[str, Any]:
    """A Partner Center customer body for a German customer (``de-DE``), the benches' reader;
    a random domain unless one is given."""
    return {
        "companyProfile": {"domain": domain or f"bench-{uuid.uuid4().hex[:8]}.example.test"},
        "billingProfile": {
            "email": "einkauf@bench.example.test",
            "culture": "de-DE",
            "language": "de",
            "companyName": "Bench Praxis GmbH",
            "defaultAddress": {
                "country": "DE",
                "firstName": "Tanja",
                "lastName": "Kerr",
                "addressLine1": "Hauptstraße 1",
                "city": "Berlin",
                "postalCode": "10115",
                "phoneNumber": "+49301234567",
            },
        },
    }
