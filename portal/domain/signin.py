"""Customer sign-in: credentials, server-side sessions, the required password change."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, bindparam, select, update
from sqlalchemy.orm import Session

from portal.core import credentials, fastsql, metrics
from portal.core.errors import PortalError, ProblemCode
from portal.core.models import (
    Customer,
    CustomerCredential,
    CustomerSession,
    EventKind,
    utcnow,
)
from portal.domain import customers, events, invitations, sessions

SignInFailed = sessions.SignInFailed
Started = sessions.Started[CustomerSession]


class WeakPassword(PortalError):
    error_name = "WeakPassword"


class WrongCurrentPassword(PortalError):
    """A password change of an activated account, without its current password."""

    status = 401
    error_name = "WrongCurrentPassword"
    description = "The current password is not right."


class SessionOver(PortalError):
    """The session ended (its credentials changed) while the request was under way."""

    status = 409
    error_name = "SessionOver"
    description = "Your session has ended. Sign in again."


def temporary_expired(credential_temporary: bool, updated_at: datetime, max_age: timedelta) -> bool:
    """A temporary password dies with its invitation's link."""
    return credential_temporary and updated_at + max_age < utcnow()


def authenticate(
    session: Session,
    user_name: str,
    password: str,
    peppers: Sequence[bytes],
    temporary_max_age: timedelta,
) -> CustomerCredential:
    """The credential these match, or SignInFailed, at the same cost for every failure. A
    temporary password works until it is changed, replaced by a new invitation, or older than
    ``temporary_max_age``."""
    credential = None
    if len(user_name) <= 254:
        credential = session.scalars(
            select(CustomerCredential).where(
                CustomerCredential.user_name == user_name.strip().lower()
            )
        ).first()
    stored = credential.password_hash if credential is not None else None
    if not credentials.verify_password(stored, password, peppers) or credential is None:
        metrics.SIGNIN_FAILURES.labels("customer").inc()
        raise SignInFailed()
    if temporary_expired(credential.temporary, credential.updated_at, temporary_max_age):
        metrics.SIGNIN_FAILURES.labels("customer").inc()
        raise SignInFailed()
    return credential


def _open(
    session: Session,
    customer_id: str,
    *,
    temporary: bool,
    generation: int,
    ip_address: str,
    user_agent: str,
) -> Started:
    token, token_hash = sessions.new_token()
    record = CustomerSession(
        token_hash=token_hash,
        customer_id=customer_id,
        must_change_password=temporary,
        generation=generation,
        ip_address=ip_address[:45],
        user_agent=user_agent[:500],
    )
    session.add(record)
    return Started(record, token)


def start(
    session: Session,
    credential: CustomerCredential,
    ip_address: str,
    user_agent: str,
) -> Started:
    started = _open(
        session,
        credential.customer_id,
        temporary=credential.temporary,
        generation=credential.generation,
        ip_address=ip_address,
        user_agent=user_agent,
    )
    customer = session.get(Customer, credential.customer_id)
    events.record(
        session,
        EventKind.CUSTOMER_SIGNED_IN,
        actor=f"customer:{credential.user_name}",
        customer_id=credential.customer_id,
        partner_id=customer.creator_id if customer else None,
        data={"temporary": credential.temporary},
    )
    return started


@dataclass(frozen=True)
class SignedIn:
    """A live session, with what every page of a signed-in customer needs."""

    session_id: str
    must_change_password: bool
    #: The customer has accepted the customer agreement on the portal (as
    #: ``invitations.has_direct_acceptance`` finds it).
    accepted: bool
    customer: customers.PageCustomer
    #: The credential generation the session was opened with (see ``sessions.py``).
    generation: int


_SIGNED_IN = fastsql.CompiledRead(
    customers.with_partner_and_credential(
        select(
            CustomerSession.id.label("session_id"),
            CustomerSession.must_change_password,
            CustomerSession.last_seen_at,
            CustomerSession.ended_at,
            CustomerSession.generation,
            CustomerCredential.generation.label("current_generation"),
            CustomerCredential.temporary,
            CustomerCredential.updated_at,
            invitations.direct_acceptance_of(CustomerSession.customer_id).label("accepted"),
            *customers.page_customer_columns(),
        )
        .select_from(CustomerSession)
        .join(Customer, Customer.id == CustomerSession.customer_id)
    ).where(CustomerSession.token_hash == bindparam("token_hash"))
)


def current(
    session: Session, token: str | None, idle: timedelta, temporary_max_age: timedelta
) -> SignedIn | None:
    """The live session for this cookie token; None when absent, ended, idle too long, opened
    with credentials that have changed since, or on a temporary password that has expired.

    Read in one query apart from ``session``; what this writes (the end of an idle session, the
    last-seen time) goes through ``session``, for the caller to commit.
    """
    if not sessions.readable_token(token):
        return None
    assert token is not None  # noqa: S101 - readable_token says so
    row = _SIGNED_IN.first(session, token_hash=sessions.token_hash(token))
    if row is None:
        return None
    session_id = row["session_id"]
    must_change_password = bool(row["must_change_password"])
    now = utcnow()
    current_generation = row["current_generation"]
    verdict = sessions.state(
        ended_at=row["ended_at"],
        last_seen_at=row["last_seen_at"],
        generation=row["generation"],
        current_generation=current_generation if current_generation is not None else -1,
        idle=idle,
        now=now,
    )
    if verdict is sessions.State.OVER:
        return None
    if verdict is sessions.State.IDLE or (
        must_change_password
        and temporary_expired(bool(row["temporary"]), row["updated_at"], temporary_max_age)
    ):
        sessions.write(session, CustomerSession, session_id, ended_at=now)
        return None
    if verdict is sessions.State.TOUCH:
        sessions.write(session, CustomerSession, session_id, last_seen_at=now)
    return SignedIn(
        session_id,
        must_change_password,
        bool(row["accepted"]),
        customers.page_customer(row),
        row["generation"],
    )


def end(session: Session, signed_in: SignedIn) -> None:
    sessions.write(session, CustomerSession, signed_in.session_id, ended_at=utcnow())


def password_problem(password: str, repeated: str, user_name: str) -> ProblemCode | None:
    """What is wrong with a new password the customer typed twice."""
    if password != repeated:
        return ProblemCode.MISMATCH
    length = credentials.length_problem(password)
    if length is not None:
        return length.code
    if password.lower() == user_name.lower():
        return ProblemCode.SAME_AS_USER
    return None


def new_password_hash(
    session: Session,
    signed_in: SignedIn,
    password: str,
    current: str | None,
    peppers: Sequence[bytes],
) -> str:
    """The hash of the customer's new password, once the change may be made (reads only, so
    that the slow hashing is done before the write begins).

    An activated account needs its ``current`` password (WrongCurrentPassword); the new one must
    differ from the password in use, temporary or not (WeakPassword). SessionOver when the
    credentials changed since the session began.
    """
    credential = session.scalars(
        select(CustomerCredential).where(CustomerCredential.customer_id == signed_in.customer.id)
    ).one()
    if credential.generation != signed_in.generation:
        raise SessionOver()
    if not credential.temporary and not credentials.verify_password(
        credential.password_hash, current or "", peppers
    ):
        raise WrongCurrentPassword()
    if credentials.verify_password(credential.password_hash, password, peppers):
        raise WeakPassword("The new password must differ from the current one.")
    return credentials.hash_password(password)


def replace_password(
    session: Session, customer_id: str, generation: int, password_hash: str, now: datetime
) -> bool:
    """Make ``password_hash`` the account's own password, if its credentials are still at
    ``generation`` (else False: of two changes at once only the first wins), and move the
    generation on, which ends the sessions and links made before."""
    changed = cast(
        CursorResult[Any],
        session.execute(
            update(CustomerCredential)
            .where(
                CustomerCredential.customer_id == customer_id,
                CustomerCredential.generation == generation,
            )
            .values(
                password_hash=password_hash,
                temporary=False,
                updated_at=now,
                generation=CustomerCredential.generation + 1,
            )
            .execution_options(synchronize_session=False),
        ),
    )
    return changed.rowcount == 1


def change_password(
    session: Session,
    signed_in: SignedIn,
    password_hash: str,
    *,
    ip_address: str,
    user_agent: str,
) -> Started:
    """Set the customer's own password (``new_password_hash`` made ``password_hash``) and end
    every session of the account; the one it was changed in goes on under a new token, returned
    for the cookie. The temporary password never works again.

    Raises SessionOver when the credentials changed since the session began: of two changes
    made at once, only the first wins.
    """
    customer_id = signed_in.customer.id
    now = utcnow()
    if not replace_password(session, customer_id, signed_in.generation, password_hash, now):
        raise SessionOver()
    sessions.end_all(session, CustomerSession, CustomerSession.customer_id, customer_id, now)
    events.record(
        session,
        EventKind.CUSTOMER_PASSWORD_CHANGED,
        actor=f"customer:{signed_in.customer.user_name}",
        customer_id=customer_id,
    )
    return _open(
        session,
        customer_id,
        temporary=False,
        generation=signed_in.generation + 1,
        ip_address=ip_address,
        user_agent=user_agent,
    )
