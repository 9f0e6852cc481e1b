"""Serving with gunicorn (threaded workers), the production WSGI server."""

from __future__ import annotations

import re
import socket
import sys
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger

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


#: An invitation link's token, wherever a path shows one.
_INVITATION_TOKEN = re.compile(r"(/invite/)[^\s?#]+")


def redact(text: str) -> str:
    """``text`` with the token of any invitation link replaced: a link with its token opens
    the customer's sign-in, and access logs are read by more people than its recipient."""
    return _INVITATION_TOKEN.sub(r"\1[redacted]", text)


class AccessLog(Logger):  # type: ignore[misc]
    """gunicorn's logger, whose access log shows no invitation token (request line, path,
    referrer, and every header or environ atom)."""

    def info(self, msg: str, *args: Any, **kwargs: Any) -> None:
        # With a socket per worker the arbiter listens on none itself, and would log
        # "Listening at:  (PID)"; the portal logs the address when ready instead.
        if msg.startswith("Listening at:") and args and not args[0]:
            return
        super().info(msg, *args, **kwargs)

    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        return {
            key: redact(value) if isinstance(value, str) and "/invite/" in value else value
            for key, value in atoms.items()
        }


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
    delivery = DeliveryProcess()

    def when_ready(arbiter: Any) -> None:
        if REUSE_PORT:  # gunicorn's own line names no address: the workers open the sockets
            arbiter.log.info("Listening at: http://%s:%s (a socket per worker)", host, port)
        if deliver and app.config.get("MAIL_SERVER"):
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
        "when_ready": when_ready,
        "on_exit": on_exit,
        # No gunicornc socket: it lives at one path per user, so two servers would collide.
        "control_socket_disable": True,
        "reuse_port": REUSE_PORT,
    }
    _Gunicorn(app, options).run()
