"""Serving with gunicorn (threaded workers), the production WSGI server."""

from __future__ import annotations

import logging
import queue
import socket
import sys
import threading
import time
import traceback
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger

from portal.core import metrics
from portal.web import logs, ops

#: Seconds between GIL hand-overs in the workers (Python's default is 0.005).
SWITCH_INTERVAL = 0.001


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, app: Flask, options: dict[str, Any]) -> None:
        self.application = app
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return self.application


def _post_fork(_server: Any, _worker: Any) -> None:
    app: Flask = _post_fork.app  # type: ignore[attr-defined]
    engine = app.extensions.get("portal.engine")
    if engine is not None:
        # Connections opened before the fork must not be shared by the workers.
        engine.dispose(close=False)
    # Hand the GIL between a worker's threads more often than every 5 ms: a request waiting
    # behind another thread's work is answered sooner, which keeps the latency tail short.
    sys.setswitchinterval(SWITCH_INTERVAL)
    _write_in_background(_worker.log.access_log)


class LineWriter(threading.Thread):
    """Writes a worker's access lines from a thread of its own: a request thread hands its line
    to a queue (well under a microsecond) and goes on; this thread writes whatever has queued
    up as one record through the access log's handlers, so under load one write carries many
    lines, and no request waits for the log's pipe or disk."""

    #: Lines written at most in one go.
    BATCH = 256

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__(name="access-log", daemon=True)
        self.logger = logger
        self.handlers = list(logger.handlers)
        self.lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()

    def run(self) -> None:
        get, get_nowait = self.lines.get, self.lines.get_nowait
        running = True
        while running:
            batch: list[str] = []
            line = get()
            while True:
                if line is None:
                    running = False
                else:
                    batch.append(line)
                if len(batch) >= self.BATCH:
                    break
                try:
                    line = get_nowait()
                except queue.Empty:
                    break
            if batch:
                self.write("\n".join(batch))

    def write(self, text: str) -> None:
        record = self.logger.makeRecord(self.logger.name, logging.INFO, __file__, 0, text, (), None)
        for handler in self.handlers:
            if record.levelno >= handler.level:
                handler.handle(record)

    def stop(self) -> None:
        """Write what is queued, then end."""
        self.lines.put(None)
        self.join(timeout=10)


#: The thread writing this worker's access lines (stopped, and so flushed, at its exit).
_writer: LineWriter | None = None


def _write_in_background(logger: logging.Logger) -> None:
    global _writer
    if logger.handlers:
        _writer = LineWriter(logger)
        _writer.start()


def _worker_exit(_server: Any, _worker: Any) -> None:
    global _writer
    ops.TALLY.flush()  # the last requests' counts
    if _writer is not None:
        _writer.stop()
        _writer = None


def _child_exit(_server: Any, worker: Any) -> None:
    metrics.process_exited(worker.pid)


class AccessLog(Logger):  # type: ignore[misc]
    """gunicorn's logger, whose access lines show no link token, key or session (request line,
    path, referrer, the tracking ids, error reports), as text or as JSON lines.

    gunicorn's own ``access`` gathers some forty atoms for any format (every request and
    response header, every environ variable) and sends each line through ``logging``; the
    portal's line is fixed (``ACCESS_LOG_FORMAT``), so this makes just its atoms, and hands the
    line to the worker's ``LineWriter``. That took the status poll from 0.93 to 0.62 ms of CPU
    (``bench/wrk_bench.py``)."""

    #: Set by ``run`` from ``LOG_FORMAT`` before the workers start.
    json_lines = False

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for handler in self.error_log.handlers:
            handler.setFormatter(logs.formatter(self.json_lines, self.error_fmt))

    def info(self, msg: str, *args: Any, **kwargs: Any) -> None:
        # With a socket per worker the arbiter listens on none itself, and would log
        # "Listening at:  (PID)"; the portal logs the address when ready instead.
        if msg.startswith("Listening at:") and args and not args[0]:
            return
        super().info(msg, *args, **kwargs)

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        if not self.access_log_enabled:
            return
        try:
            line = self.line(resp, environ, request_time)
        except Exception:
            self.error(traceback.format_exc())
            return
        if _writer is not None:
            _writer.lines.put(line)
        else:
            self.access_log.info(line)

    def line(self, resp: Any, environ: Any, request_time: Any) -> str:
        """The access line of one answered request (free text redacted)."""
        request_id = correlation_id = "-"
        for name, value in resp.headers:
            lowered = name.lower()
            if lowered == "ms-requestid":
                request_id = logs.redact(value)
            elif lowered == "ms-correlationid":
                correlation_id = logs.redact(value)
        status = resp.status.split(None, 1)[0] if isinstance(resp.status, str) else resp.status
        sent = getattr(resp, "sent", None)
        referer = logs.redact(environ.get("HTTP_REFERER", "-"))
        agent = logs.redact(environ.get("HTTP_USER_AGENT", "-"))
        if self.json_lines:
            atoms = {
                "h": environ.get("REMOTE_ADDR", "-"),
                "m": environ.get("REQUEST_METHOD"),
                "U": logs.redact(environ.get("PATH_INFO", "")),
                "q": logs.redact(environ.get("QUERY_STRING", "")),
                "s": status,
                "B": sent,
                "D": request_time.seconds * 1_000_000 + request_time.microseconds,
                "a": agent,
                "f": referer,
                "{ms-correlationid}o": None if correlation_id == "-" else correlation_id,
            }
            if request_id == "-":
                request_id = environ.get(ops.REQUEST_ID) or "-"
            return logs.access_line(atoms, request_id)
        requested = logs.redact(
            f"{environ['REQUEST_METHOD']} {environ['RAW_URI']} {environ['SERVER_PROTOCOL']}"
        )
        user = self._get_user(environ)
        return ACCESS_LOG_FORMAT % {
            "h": environ.get("REMOTE_ADDR", "-"),
            "l": "-",
            "u": _quoted(logs.redact(user)) if user else "-",
            "t": _now(),
            "r": _quoted(requested),
            "s": status,
            "b": str(sent) if sent is not None else "-",
            "f": _quoted(referer),
            "a": _quoted(agent),
            "{ms-requestid}o": _quoted(request_id),
            "{ms-correlationid}o": _quoted(correlation_id),
        }


def _quoted(text: str) -> str:
    """As gunicorn escapes an atom: its double quotes backslashed."""
    return text.replace('"', '\\"') if '"' in text else text


_clock: tuple[int, str] = (0, "")


def _now() -> str:
    """gunicorn's ``now`` (Apache's common log format), made once a second."""
    global _clock
    second = int(time.time())
    if _clock[0] != second:
        _clock = (second, time.strftime("[%d/%b/%Y:%H:%M:%S %z]", time.localtime(second)))
    return _clock[1]


#: gunicorn's default line, then the API's tracking ids as answered (the client's, or those made
#: for it): a partner quoting MS-RequestId or MS-CorrelationId finds its request. "-" elsewhere.
ACCESS_LOG_FORMAT = (
    '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" '
    "ms-requestid=%({ms-requestid}o)s ms-correlationid=%({ms-correlationid}o)s"
)


class CannotListen(Exception):
    """The address ``portal serve`` was asked to use is taken, or is not one of this machine."""


#: Each worker listens on a socket of its own, and the kernel spreads new connections over them.
#: With one shared socket, whichever worker woke first took connections arriving together (a
#: proxy's pool, a batch of pollers): seen here, all 16 of a benchmark's keep-alive connections
#: on one of two workers, which then served half as many requests at twice the CPU each.
REUSE_PORT = hasattr(socket, "SO_REUSEPORT")


def ensure_free(host: str, port: int) -> None:
    """Raise ``CannotListen`` unless the address is free here. Sockets with SO_REUSEPORT would
    otherwise share a taken port, without an error, with another server started the same way."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET  # as gunicorn picks it
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds
            probe.bind((host, port))
    except OSError as exc:
        raise CannotListen(f"cannot listen on {host}:{port}: {exc.strerror}") from exc


def run(app: Flask, host: str, port: int, workers: int, threads: int, deliver: bool = True) -> None:
    """Serve ``app``; with ``deliver`` and an SMTP server configured, a delivery process beside
    the workers sends the outbox. Raises ``CannotListen`` before starting if the address is
    taken or not this machine's."""
    from portal.mail.delivery import DeliveryProcess

    ensure_free(host, port)

    _post_fork.app = app  # type: ignore[attr-defined]
    AccessLog.json_lines = app.config.get("LOG_FORMAT") == "json"
    delivery = DeliveryProcess()

    def when_ready(arbiter: Any) -> None:
        if REUSE_PORT:  # gunicorn's own line names no address: the workers open the sockets
            arbiter.log.info("Listening at: http://%s:%s (a socket per worker)", host, port)
        if deliver:  # mail (when an SMTP server is set) and webhooks
            delivery.start()

    def on_exit(_server: Any) -> None:
        delivery.stop()

    options = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": "gthread",
        "threads": threads,
        "keepalive": 5,
        "timeout": 60,
        "graceful_timeout": 20,
        "accesslog": "-",
        "access_log_format": ACCESS_LOG_FORMAT,
        "logger_class": AccessLog,
        "post_fork": _post_fork,
        "worker_exit": _worker_exit,
        "child_exit": _child_exit,
        "when_ready": when_ready,
        "on_exit": on_exit,
        # No gunicornc socket: it lives at one path per user, so two servers would collide.
        "control_socket_disable": True,
        "reuse_port": REUSE_PORT,
    }
    _Gunicorn(app, options).run()
