"""What operators and their tools ask the portal: is the process alive (``/healthz``), can it
serve (``/readyz``), and what has it been doing (``/metrics``, Prometheus' text format).

Every request is counted by endpoint, method and status and timed (``Instrumented``, the
outermost WSGI layer), and carries a request id: the client's ``MS-RequestId`` under /v1, else
an ``X-Request-Id`` (the proxy's, if it is a plain token, or a new one) that the answer echoes and
the access log shows.
"""

from __future__ import annotations

import hmac
import os
import re
import threading
import time
import uuid
from bisect import bisect_left
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError

from portal.core import db
from portal.core import metrics as counts
from portal.core.models import DeliveryStatus, OutboxMessage, utcnow

bp = Blueprint("ops", __name__)

#: The environ key under which the view's endpoint name is left for ``Instrumented``.
ENDPOINT = "portal.endpoint"
#: The environ key of the request's id (``X-Request-Id``), for the access log.
REQUEST_ID = "portal.request_id"
_TOKEN = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: Endpoints that are not counted: the scrape itself, and the probes a balancer sends every
#: few seconds, would outnumber what partners and customers do.
_UNCOUNTED = frozenset({"ops.metrics", "ops.healthz", "ops.readyz"})


@bp.get("/healthz")
def healthz() -> Response:
    """The process answers. Nothing else is checked: a restart cannot cure a database outage."""
    return jsonify(status="alive")


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """The process can serve: its database answers, its migrations are current, its agreement
    catalog is loaded. 503 naming what is not, so a balancer sends requests elsewhere."""
    checks = {"database": "ok", "migrations": "ok", "catalog": "ok"}
    try:
        with db.engine().connect() as connection:
            connection.execute(text("SELECT 1"))
        if _migrations_pending():
            checks["migrations"] = "pending: run `portal db upgrade`"
    except SQLAlchemyError as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
        checks["migrations"] = "unknown"
    if not current_app.extensions.get("portal.catalog"):
        checks["catalog"] = "not loaded"
    ready = all(value == "ok" for value in checks.values())
    return jsonify(status="ready" if ready else "not ready", checks=checks), 200 if ready else 503


#: Seconds a "migrations are current" answer is believed: the check reads the migration
#: scripts, too slow for every probe; a deployment that upgrades the schema is seen within it.
_MIGRATIONS_CHECKED_FOR = 30.0
_migrations_checked: dict[str, float] = {}


def _migrations_pending() -> bool:
    key = str(db.engine().url)
    checked = _migrations_checked.get(key)
    if checked is not None and time.monotonic() - checked < _MIGRATIONS_CHECKED_FOR:
        return False
    if db.pending_migrations(db.engine()):
        return True
    _migrations_checked[key] = time.monotonic()
    return False


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus' text format, for a scraper bearing ``METRICS_TOKEN``; 404 when it is unset."""
    token = current_app.config.get("METRICS_TOKEN")
    if not token:
        return Response("Not found\n", 404, mimetype="text/plain")
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        return Response(
            "Bearer token required\n",
            401,
            {"WWW-Authenticate": 'Bearer realm="metrics"'},
            mimetype="text/plain",
        )
    TALLY.flush()  # this process's latest; the others' are at most Tally.EVERY late
    counted = REGISTRY  # one process: its own counts
    if counts.multiprocess():
        from prometheus_client import multiprocess

        counted = CollectorRegistry()
        multiprocess.MultiProcessCollector(counted)  # type: ignore[no-untyped-call]
    asked = CollectorRegistry()
    asked.register(_Outbox())
    body = generate_latest(counted) + generate_latest(asked)
    return Response(body, 200, {"Cache-Control": "no-store"}, content_type=CONTENT_TYPE_LATEST)


class _Outbox(Collector):
    """The outbox as the database has it at scrape time, whichever process sends it."""

    def collect(self) -> Iterable[GaugeMetricFamily]:
        waiting = OutboxMessage.status.in_([DeliveryStatus.QUEUED, DeliveryStatus.SENDING])
        try:
            depth, oldest = (
                db.session()
                .execute(select(func.count(), func.min(OutboxMessage.created_at)).where(waiting))
                .one()
            )
            failed = db.session().scalar(
                select(func.count()).where(OutboxMessage.status == DeliveryStatus.FAILED)
            )
        except SQLAlchemyError:
            return
        finally:
            db.session().rollback()
        yield GaugeMetricFamily(
            "portal_outbox_depth", "Messages waiting to be sent (queued or being sent).", depth
        )
        yield GaugeMetricFamily(
            "portal_outbox_oldest_age_seconds",
            "Age of the oldest message waiting to be sent; 0 when none waits.",
            _age(oldest),
        )
        yield GaugeMetricFamily(
            "portal_outbox_failed", "Messages given up on after their last attempt.", failed or 0
        )


def _age(oldest: datetime | None) -> float:
    return max((utcnow() - oldest).total_seconds(), 0.0) if oldest is not None else 0.0


class Instrumented:
    """WSGI middleware: gives each request an id and, with ``counting``, times and counts it."""

    def __init__(self, app: Callable[..., Any], counting: bool) -> None:
        self.app = app
        self.counting = counting

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        started = time.perf_counter()
        given = environ.get("HTTP_X_REQUEST_ID", "")
        request_id = given if _TOKEN.fullmatch(given) else uuid.uuid4().hex
        environ[REQUEST_ID] = request_id
        status = ["500"]

        def start(code: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status[0] = code[:3]
            headers.append(("X-Request-Id", request_id))
            return start_response(code, headers, exc_info)

        if not self.counting:
            return self.app(environ, start)
        try:
            return self.app(environ, start)
        finally:
            endpoint = environ.get(ENDPOINT, "unmatched")
            if endpoint not in _UNCOUNTED:
                method = environ.get("REQUEST_METHOD", "")
                TALLY.record(
                    endpoint,
                    method if method in _METHODS else "other",
                    status[0],
                    time.perf_counter() - started,
                )


class Tally:
    """This process's request counts and durations, kept in plain dicts and added to
    ``prometheus_client``'s counts in one go: by a thread of the process every ``EVERY``
    seconds, before the process answers a scrape, and when a worker exits.

    Adding each request as it ends cost the status poll about 20 µs of its 0.6-0.7 ms of CPU
    (three values, each a lock, a process id check and a write to its memory-mapped file, on
    cold caches), +18 to +26 µs in three runs, measured in-process with counting on and off in
    turns (``bench/wrk_bench.py``); this, -7 to +21 µs in six runs on the same busy machine."""

    #: Seconds between additions: a scrape sees another process's requests this late at most.
    EVERY = 0.5

    def __init__(self) -> None:
        self.forget()

    def forget(self) -> None:
        """Start empty (also in a forked child: the parent's counts and lock are not its own)."""
        self.lock = threading.Lock()
        self.running = False
        self.requests: dict[tuple[str, str, str], int] = {}
        #: Per endpoint: how many durations fell in each bucket, and their sum.
        self.buckets: dict[str, list[int]] = {}
        self.seconds: dict[str, float] = {}

    def record(self, endpoint: str, method: str, status: str, seconds: float) -> None:
        bucket = bisect_left(counts.LATENCY_BOUNDS, seconds)
        with self.lock:
            key = (endpoint, method, status)
            self.requests[key] = self.requests.get(key, 0) + 1
            buckets = self.buckets.get(endpoint)
            if buckets is None:
                buckets = self.buckets[endpoint] = [0] * len(counts.LATENCY_BOUNDS)
            buckets[bucket] += 1
            self.seconds[endpoint] = self.seconds.get(endpoint, 0.0) + seconds
            if not self.running:
                self.running = True
                threading.Thread(target=self._every, name="metrics", daemon=True).start()

    def _every(self) -> None:
        while True:
            time.sleep(self.EVERY)
            self.flush()

    def flush(self) -> None:
        """Add what this process counted since the last time to ``prometheus_client``'s."""
        with self.lock:
            requests, self.requests = self.requests, {}
            buckets, self.buckets = self.buckets, {}
            seconds, self.seconds = self.seconds, {}
        for (endpoint, method, status), count in requests.items():
            counts.REQUESTS.labels(endpoint, method, status).inc(count)
        for endpoint, counted in buckets.items():
            counts.observe_many(counts.LATENCY.labels(endpoint), counted, seconds[endpoint])


TALLY = Tally()
os.register_at_fork(after_in_child=TALLY.forget)


def _note_endpoint() -> None:
    request.environ[ENDPOINT] = request.endpoint or "unmatched"


def init_app(app: Flask) -> None:
    """The probes, and ids for every request; counting only when someone may read the counts
    (``METRICS_TOKEN`` set): it costs each request a few microseconds."""
    app.register_blueprint(bp)
    counting = bool(app.config.get("METRICS_TOKEN"))
    if counting:
        # First of all: a hook before it may answer, and the answer is still counted by view.
        app.before_request_funcs.setdefault(None, []).insert(0, _note_endpoint)
    app.wsgi_app = Instrumented(app.wsgi_app, counting)  # type: ignore[method-assign]
