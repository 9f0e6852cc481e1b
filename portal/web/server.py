"""Serving with gunicorn (threaded workers), the production WSGI server."""

from __future__ import annotations

import logging
import logging.handlers
import queue
import socket
import sys
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


#: The threads writing each worker's access lines (stopped, and so flushed, at its exit).
_writers: list[logging.handlers.QueueListener] = []


def _write_in_background(logger: logging.Logger) -> None:
    """A request thread hands its access line to a queue; a thread of the worker's own writes
    it, so no request waits for the log's pipe or disk."""
    handlers = list(logger.handlers)
    if not handlers:
        return
    lines: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    writer = logging.handlers.QueueListener(lines, *handlers, respect_handler_level=True)
    logger.handlers = [logging.handlers.QueueHandler(lines)]
    writer.start()
    _writers.append(writer)


def _worker_exit(_server: Any, _worker: Any) -> None:
    while _writers:
        _writers.pop().stop()  # writes what is queued


def _child_exit(_server: Any, worker: Any) -> None:
    metrics.process_exited(worker.pid)


#: The atoms a line shows (``ACCESS_LOG_FORMAT``, ``logs.access_line``) that a client chooses.
_FREE_TEXT = ("r", "U", "q", "f", "a", "u", "{ms-requestid}o", "{ms-correlationid}o")


class AccessLog(Logger):  # type: ignore[misc]
    """gunicorn's logger, whose lines show no link token, key or session (request line, path,
    referrer, every header or environ atom, and error reports), as text or as JSON lines."""

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

    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        for key in _FREE_TEXT:
            value = atoms.get(key)
            if isinstance(value, str):
                atoms[key] = logs.redact(value)
        return atoms

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        if not self.json_lines or not self.access_log_enabled:
            super().access(resp, req, environ, request_time)
            return
        atoms = self.atoms(resp, req, environ, request_time)
        request_id = atoms.get("{ms-requestid}o")
        if not request_id or request_id == "-":
            request_id = environ.get(ops.REQUEST_ID)
        self.access_log.info(logs.access_line(atoms, request_id))


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
