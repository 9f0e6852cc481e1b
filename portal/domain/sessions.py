"""Server-side sessions, the same for customers and dashboard users: the cookie's token, idle
expiry, and the credential generation each session is tied to.

A session lives while it is not ended, not idle too long, and opened with the credentials the
account has now: every change of password (a new choice, a new invitation, a withdrawal), role
or standing increments the account's ``generation``, and the sessions of an older generation are
over at once, in every browser and worker (ASVS 7.4.3).
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from sqlalchemy import update
from sqlalchemy.orm import Session

from portal.core.errors import PortalError
from portal.core.models import CustomerSession, PartnerUserSession

#: A page view writes the session's last-seen time only when it is older than this: most views
#: then write nothing, and idle expiry is late by at most this much.
TOUCH_INTERVAL = timedelta(minutes=1)

AnySession = type[CustomerSession] | type[PartnerUserSession]
Record = TypeVar("Record", CustomerSession, PartnerUserSession)


class SignInFailed(PortalError):
    """One answer for an unknown account, a wrong password, an expired temporary password and a
    removed user: which it was is nobody's business."""

    status = 401
    error_name = "SignInFailed"
    description = "The sign-in name or password is not right."


@dataclass(frozen=True)
class Started(Generic[Record]):
    """A session just opened."""

    record: Record
    #: Goes into the cookie; only its hash is stored.
    token: str


def new_token() -> tuple[str, str]:
    """A new session token for the cookie, and the hash that alone is stored."""
    token = secrets.token_urlsafe(32)
    return token, token_hash(token)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def readable_token(token: str | None) -> bool:
    """Whether a cookie's token is worth a look-up at all."""
    return bool(token) and len(token or "") <= 100


class State(enum.Enum):
    LIVE = "live"
    #: Live, and its last-seen time is due to be written.
    TOUCH = "touch"
    #: Unused for longer than the idle timeout: ended now.
    IDLE = "idle"
    #: Signed out, or opened with credentials that have changed since.
    OVER = "over"


def state(
    *,
    ended_at: datetime | None,
    last_seen_at: datetime,
    generation: int,
    current_generation: int,
    idle: timedelta,
    now: datetime,
) -> State:
    if ended_at is not None or generation != current_generation:
        return State.OVER
    if last_seen_at + idle < now:
        return State.IDLE
    if now - last_seen_at > TOUCH_INTERVAL:
        return State.TOUCH
    return State.LIVE


def write(session: Session, model: AnySession, session_id: str, **values: Any) -> None:
    """Set ``values`` on one session record (an end, a last-seen time)."""
    session.execute(update(model).where(model.id == session_id).values(**values))


def end_all(session: Session, model: AnySession, owner: Any, owner_id: str, now: datetime) -> None:
    """Mark every live session of one account ended (``owner``: the account's column).

    The generation alone already ends them; this keeps the records truthful for whoever reads
    them."""
    session.execute(
        update(model).where(owner == owner_id, model.ended_at.is_(None)).values(ended_at=now)
    )
