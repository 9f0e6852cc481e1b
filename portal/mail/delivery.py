"""The delivery loop: one outbox pass every few seconds, in a process of its own.

``portal serve`` starts it beside the gunicorn workers (``portal mail send --loop``); it is a
separate process, not a thread of gunicorn's master, because the master forks workers and a
fork copies a thread's half-done database work into every child.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

from flask import Flask
from sqlalchemy.exc import SQLAlchemyError

from portal.core import db, metrics
from portal.mail import sending

log = logging.getLogger(__name__)

#: Set by ``portal serve`` for its delivery process: the server's process id.
PARENT_VARIABLE = "PORTAL_DELIVERY_PARENT"


#: ``app.extensions`` key: what else each pass sends after the mail, called with the app (in
#: its app context) and ``stop``. ``create_app`` fills it (the webhooks).
PASSES = "portal.delivery_passes"

#: ``app.extensions`` key: what writes mail the pages asked the sender for, called before each
#: pass with the app (in its app context). ``create_app`` fills it (the "forgot password" links).
PREPARERS = "portal.mail_preparers"


def prepare(app: Flask) -> None:
    """Queue what the pages asked the sender to write, so that the pass sends it."""
    if not app.config.get("MAIL_SERVER"):
        return  # it waits, as the outbox does, for a server to send it to
    for preparer in app.extensions.get(PREPARERS, []):
        preparer(app)


def run_once(app: Flask, stop: Callable[[], bool] | None = None) -> sending.Report | None:
    """One outbox pass, mail then webhooks; ``stop`` ends it early, between batches."""
    with app.app_context():
        try:
            prepare(app)
            report = sending.deliver_due(app, db.session(), stop=stop)
        except SQLAlchemyError as exc:
            # The database may be restarting: try again on the next pass.
            log.warning("outbox pass skipped: %s", exc)
            return None
        finally:
            db.end_session()
        for extra in app.extensions.get(PASSES, []):
            try:
                extra(app, stop)
            except SQLAlchemyError as exc:
                log.warning("%s skipped: %s", getattr(extra, "__name__", "pass"), exc)
            finally:
                db.end_session()
    if report.attempted:
        for result in ("sent", "retrying", "failed"):
            if getattr(report, result):
                metrics.DELIVERIES.labels(result).inc(getattr(report, result))
        log.info(
            "outbox: %d sent, %d to retry, %d failed", report.sent, report.retrying, report.failed
        )
    return report


def run_forever(app: Flask) -> None:
    """Pass after pass until SIGTERM or SIGINT; the batch in progress (and one claimed while it
    was sent) is finished first."""
    stopping = threading.Event()

    def stop(_signum: int, _frame: Any) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    interval = float(app.config["MAIL_SEND_INTERVAL"])
    # Started by `portal serve`: stop when that server is gone, even if it could not say so.
    parent = os.environ.get(PARENT_VARIABLE)

    def orphaned() -> bool:
        return parent is not None and str(os.getppid()) != parent

    def should_stop() -> bool:
        return stopping.is_set() or orphaned()

    while not stopping.is_set():
        if orphaned():
            log.warning("the server that started this delivery loop is gone; stopping")
            return
        # A long queue goes out batch after batch in one pass, which ends early when asked to.
        run_once(app, should_stop)
        stopping.wait(interval)


class DeliveryProcess:
    """``portal mail send --loop`` as a child of ``portal serve``."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [sys.executable, "-m", "portal.cli", "mail", "send", "--loop"]
        env = {**os.environ, PARENT_VARIABLE: str(os.getpid())}
        self.process = subprocess.Popen(command, env=env)  # noqa: S603

    def stop(self, timeout: float = 20) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
