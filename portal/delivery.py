"""The delivery loop that runs inside ``portal serve``: one outbox pass every few seconds."""

from __future__ import annotations

import logging
import threading

from flask import Flask
from sqlalchemy.exc import SQLAlchemyError

from portal import db, outbox

log = logging.getLogger(__name__)


class DeliveryLoop:
    def __init__(self, app: Flask) -> None:
        self.app = app
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="portal-delivery", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 10) -> None:
        self.stopping.set()
        self.thread.join(timeout)

    def _run(self) -> None:
        interval = float(self.app.config["MAIL_SEND_INTERVAL"])
        while not self.stopping.is_set():
            self.run_once()
            self.stopping.wait(interval)

    def run_once(self) -> outbox.Report | None:
        with self.app.app_context():
            try:
                report = outbox.deliver_due(self.app, db.session())
            except SQLAlchemyError as exc:
                # The database may be restarting: try again on the next pass.
                log.warning("outbox pass skipped: %s", exc)
                return None
        if report.attempted:
            log.info(
                "outbox: %d sent, %d to retry, %d failed",
                report.sent,
                report.retrying,
                report.failed,
            )
        return report
