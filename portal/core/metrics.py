"""What the portal counts for Prometheus (``/metrics``): requests, deliveries, sign-in failures.

Served by several gunicorn workers, a delivery process and their restarts, the counts live in
``prometheus_client``'s multiprocess mode: each process writes its own memory-mapped files in
the folder ``PROMETHEUS_MULTIPROC_DIR`` names, and a scrape adds them up. That variable must be
set before a process first counts; ``portal serve`` sets it (``prepare_multiprocess``) before
it starts its workers. Without it (tests, one process) the counts are the process's own.

What a scrape reads from the database (the outbox's depth and oldest message) is not counted
here but asked for at scrape time, so that every sender on every machine is seen.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prometheus_client import Counter, Histogram, values

#: Set for ``prometheus_client``: where each process keeps its counts.
MULTIPROC_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

REQUESTS = Counter(
    "portal_http_requests",
    "Requests answered, by endpoint (Flask's name for the view), method and status.",
    ["endpoint", "method", "status"],
)
_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LATENCY = Histogram(
    "portal_http_request_duration_seconds",
    "Time from receiving a request to handing its answer to the server, by endpoint.",
    ["endpoint"],
    buckets=_LATENCY_BUCKETS,
)
#: The latency histogram's upper bounds, ``+Inf`` last as prometheus_client adds it (a duration
#: goes in the first bucket whose bound it does not exceed).
LATENCY_BOUNDS: tuple[float, ...] = (*_LATENCY_BUCKETS, float("inf"))


def observe_many(histogram: Any, buckets: Sequence[int], total: float) -> None:
    """What ``histogram.observe`` does once per duration, for many at once: ``buckets[i]``
    durations in the bucket of ``LATENCY_BOUNDS[i]``, adding up to ``total`` seconds. (A
    labelled child of ``LATENCY``; ``tests/test_library_behaviour.py`` checks that the exposition
    is the same as observing each.)"""
    histogram._sum.inc(total)  # noqa: SLF001 - as observe does
    for bucket, count in zip(histogram._buckets, buckets, strict=True):  # noqa: SLF001
        if count:
            bucket.inc(count)


DELIVERIES = Counter(
    "portal_mail_deliveries",
    "Outbox messages attempted by this portal's senders, by result (sent, retrying, failed).",
    ["result"],
)
SIGNIN_FAILURES = Counter(
    "portal_signin_failures",
    "Sign-ins refused for a wrong user name or password, by who tried (customer, partner_user).",
    ["who"],
)
WEBHOOKS = Counter(
    "portal_webhook_deliveries",
    "Webhook deliveries attempted, by result (delivered, retrying, failed).",
    ["result"],
)


def prepare_multiprocess() -> Path | None:
    """Before ``portal serve`` starts its workers: a fresh folder for the processes' counts
    (the operator's ``PROMETHEUS_MULTIPROC_DIR``, emptied, or a new temporary one), inherited
    by the workers and the delivery process. Returns a folder made here, for the caller to
    remove at exit."""
    made = None
    given = os.environ.get(MULTIPROC_VARIABLE)
    if given:
        folder = Path(given)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):  # a previous run's counts would be added in
            stale.unlink()
    else:
        made = Path(tempfile.mkdtemp(prefix="portal-metrics-"))
        os.environ[MULTIPROC_VARIABLE] = str(made)
    # prometheus_client picks where counts live when it is imported, and each labelled count
    # takes that choice when first used: pick again now (no count has been used yet).
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    return made


def remove(folder: Path | None) -> None:
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROC_VARIABLE))


def process_exited(pid: int) -> None:
    """A worker has gone: its live gauges no longer count (counters and histograms stay)."""
    if multiprocess():
        from prometheus_client import multiprocess as mp

        mp.mark_process_dead(pid)  # type: ignore[no-untyped-call]
