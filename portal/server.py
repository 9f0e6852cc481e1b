"""Serving with gunicorn (threaded workers), the production WSGI server."""

from __future__ import annotations

import sys
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

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


def run(app: Flask, host: str, port: int, workers: int, threads: int, deliver: bool = True) -> None:
    """Serve ``app``; with ``deliver`` and an SMTP server configured, a delivery process beside
    the workers sends the outbox."""
    from portal.delivery import DeliveryProcess

    _post_fork.app = app  # type: ignore[attr-defined]
    delivery = DeliveryProcess()

    def when_ready(_server: Any) -> None:
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
        "post_fork": _post_fork,
        "when_ready": when_ready,
        "on_exit": on_exit,
        # No gunicornc socket: it lives at one path per user, so two servers would collide.
        "control_socket_disable": True,
    }
    _Gunicorn(app, options).run()
