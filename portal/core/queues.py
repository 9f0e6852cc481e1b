"""Rows that several senders work through, each row taken by one of them: the mail outbox and
the webhooks' deliveries. Both have a ``status`` that is queued or being sent (among others),
``next_attempt_at``, ``claimed_until`` and ``attempts``."""

from __future__ import annotations

import enum
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

Row = TypeVar("Row")


def due(model: Any, now: datetime, queued: enum.Enum, sending: enum.Enum) -> Any:
    """Queued and due, or claimed by a sender that died mid-send (its claim has lapsed)."""
    return or_(
        and_(model.status == queued, model.next_attempt_at <= now),
        and_(model.status == sending, model.claimed_until < now),
    )


def claim(
    session: Session,
    model: type[Row],
    *,
    queued: enum.Enum,
    sending: enum.Enum,
    lease: timedelta,
    limit: int,
    now: datetime,
) -> list[Row]:
    """Take up to ``limit`` due rows for this sender in one statement, and commit the claim.

    The UPDATE repeats the due test, so of two senders only one can claim a row; on PostgreSQL,
    ``SKIP LOCKED`` lets them take different rows instead of waiting. It returns the claimed rows
    themselves, so nothing is read again. The transaction ends at once: no write lock (SQLite)
    is held while the rows are sent.
    """
    table: Any = model
    # A CTE, run once: as a subquery of the UPDATE, PostgreSQL may run the locking SELECT again
    # for each row it updates (a nested-loop semi-join), claiming far past ``limit``.
    chosen = (
        select(table.id)
        .where(due(table, now, queued, sending))
        .order_by(table.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte("due")
    )
    claimed = list(
        session.scalars(
            update(table)
            .where(table.id.in_(select(chosen.c.id)), due(table, now, queued, sending))
            .values(status=sending, claimed_until=now + lease, attempts=table.attempts + 1)
            .returning(table)
            .execution_options(synchronize_session=False, populate_existing=True)
        )
    )
    session.commit()
    return claimed
