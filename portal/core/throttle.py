"""Sign-in limits, counted where every worker and process sees them.

Every attempt to prove who one is (a sign-in, customer or dashboard, and the current password a
password change asks for) takes one unit of each limit it falls under, its account's and its
client address's, *before* the password is checked; a success gives them back. So only failures
stay counted, and a burst of parallel attempts cannot all pass a limit they were each checked
against before any of them failed.

The counters live in the portal's own database by default (``database://``: no service beside
it, and the limit holds across every worker and machine sharing the database), or in any
storage of the ``limits`` library (``redis://…``; ``memory://`` counts per process, for a single
process only). A storage that cannot be reached refuses sign-ins with a 503: never a sign-in
that nothing counted.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.errors import StorageError
from limits.storage import Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter
from sqlalchemy import Engine, case, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from portal.core.errors import PortalError
from portal.core.models import RateLimitCounter

#: The default storage: the portal's own database.
DATABASE = "database://"
#: Most expired counters one sweep drops (each failed sign-in sweeps).
SWEEP = 500
log = logging.getLogger(__name__)


class TooManyAttempts(PortalError):
    status = 429
    code = 10429
    error_name = "TooManyAttempts"
    description = "Too many failed sign-in attempts. Wait before you try again."

    def __init__(self, retry_after: int) -> None:
        super().__init__()
        #: Seconds until attempts are counted afresh (the ``Retry-After`` header).
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class SignInUnavailable(PortalError):
    status = 503
    code = 10503
    error_name = "SignInUnavailable"
    description = "Sign-in is unavailable just now: attempts cannot be counted. Try again shortly."
    retryable = True


class DatabaseStorage(Storage):
    """A ``limits`` storage in the portal's database (table ``rate_limit_counters``): fixed
    windows, each counter one row, changed by one atomic statement."""

    STORAGE_SCHEME = None  # made by ``storage_for``, never from a URI alone

    def __init__(self, engine: Engine) -> None:
        super().__init__(wrap_exceptions=True)
        self.engine = engine
        dialect = engine.dialect.name
        if dialect not in ("sqlite", "postgresql"):
            raise ValueError(f"no rate-limit storage for {dialect} databases")
        self._insert = sqlite.insert if dialect == "sqlite" else postgresql.insert

    @property
    def base_exceptions(self) -> type[Exception]:
        return SQLAlchemyError

    @staticmethod
    def _key(key: str) -> str:
        return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()

    def incr(self, key: str, expiry: int | float, amount: int = 1) -> int:
        table = RateLimitCounter
        now = time.time()
        expired = table.expires_at <= now
        added = table.count + amount
        statement = (
            self._insert(table)
            .values(key=self._key(key), count=max(amount, 0), expires_at=now + expiry)
            .on_conflict_do_update(
                index_elements=[table.key],
                set_={
                    # A new window once the old one is over; never below zero (a refund).
                    "count": case((expired, max(amount, 0)), (added < 0, 0), else_=added),
                    "expires_at": case((expired, now + expiry), else_=table.expires_at),
                },
            )
            .returning(table.count)
        )
        with self.engine.begin() as connection:
            count = connection.execute(statement).scalar_one()
        self._sweep(now)
        return int(count)

    def _sweep(self, now: float) -> None:
        """Drop counters whose window is over, apart from the count: rows another sweep holds
        are left to it (PostgreSQL: ``SKIP LOCKED``), so sweeps at once neither wait nor
        deadlock, and a sweep that fails loses nothing that counts."""
        table = RateLimitCounter
        over = select(table.key).where(table.expires_at <= now).limit(SWEEP)
        if self.engine.dialect.name == "postgresql":
            over = over.with_for_update(skip_locked=True)
        try:
            with self.engine.begin() as connection:
                connection.execute(delete(table).where(table.key.in_(over.scalar_subquery())))
        except SQLAlchemyError as exc:
            log.info("rate-limit counters not swept this time: %s", exc)

    def get(self, key: str) -> int:
        table = RateLimitCounter
        with self.engine.connect() as connection:
            count = connection.execute(
                select(table.count).where(
                    table.key == self._key(key), table.expires_at > time.time()
                )
            ).scalar()
        return int(count or 0)

    def get_expiry(self, key: str) -> float:
        table = RateLimitCounter
        with self.engine.connect() as connection:
            expires_at = connection.execute(
                select(table.expires_at).where(table.key == self._key(key))
            ).scalar()
        return float(expires_at) if expires_at is not None else time.time()

    def check(self) -> bool:
        try:
            with self.engine.connect() as connection:
                connection.execute(select(func.count()).select_from(RateLimitCounter))
        except SQLAlchemyError:
            return False
        return True

    def reset(self) -> int | None:
        with self.engine.begin() as connection:
            return int(connection.execute(delete(RateLimitCounter)).rowcount)

    def clear(self, key: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                delete(RateLimitCounter).where(RateLimitCounter.key == self._key(key))
            )


def storage_for(uri: str, engine: Engine) -> Storage:
    """The storage a ``RATELIMIT_STORAGE_URI`` names: ``database://`` for the portal's own."""
    if uri == DATABASE:
        return DatabaseStorage(engine)
    storage = storage_from_string(uri, wrap_exceptions=True)
    if not isinstance(storage, Storage):
        raise ValueError(f"{uri} is an asynchronous storage; the portal needs a synchronous one")
    return storage


@dataclass(frozen=True)
class Reservation:
    """The units one attempt took; ``succeeded`` gives them back."""

    throttle: Throttle
    taken: tuple[tuple[RateLimitItem, tuple[str, ...]], ...]

    def succeeded(self) -> None:
        for item, identifiers in self.taken:
            self.throttle.hit(item, identifiers, cost=-1)


class Throttle:
    """Limits per kind of key (``account``, ``address``), in ``limits`` notation."""

    def __init__(self, storage: Storage, limits: Mapping[str, str], prefix: str = "") -> None:
        self.storage = storage
        self.strategy = FixedWindowRateLimiter(storage)
        self.limits = {kind: parse(text) for kind, text in limits.items()}
        self.prefix = prefix or "portal"

    def hit(self, item: RateLimitItem, identifiers: tuple[str, ...], cost: int = 1) -> bool:
        try:
            return self.strategy.hit(item, *identifiers, cost=cost)
        except StorageError as exc:
            raise SignInUnavailable() from exc

    def reserve(self, **keys: str) -> Reservation:
        """Take one unit of the limit of each ``kind=key``, in the order given, stopping at the
        first that is used up: TooManyAttempts, saying when to come back (a client refused by
        its address's limit so adds no counter for every account name it tries).
        SignInUnavailable if nothing can count."""
        taken = []
        for kind, key in keys.items():
            item = self.limits[kind]
            identifiers = (self.prefix, kind, key)
            if not self.hit(item, identifiers):
                raise TooManyAttempts(self._retry_after(item, identifiers))
            taken.append((item, identifiers))
        return Reservation(self, tuple(taken))

    def _retry_after(self, item: RateLimitItem, identifiers: tuple[str, ...]) -> int:
        try:
            reset = self.strategy.get_window_stats(item, *identifiers).reset_time
        except StorageError as exc:
            raise SignInUnavailable() from exc
        return max(1, math.ceil(reset - time.time()))
