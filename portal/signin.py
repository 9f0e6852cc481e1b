"""Customer sign-in: credentials, server-side sessions, the required password change."""

from __future__ import annotations

import functools
import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from portal import credentials, customers, db, events, invitations
from portal.errors import PortalError
from portal.models import (
    Customer,
    CustomerCredential,
    CustomerSession,
    utcnow,
)

MIN_PASSWORD_LENGTH = 12
#: A page view writes the session's last-seen time only when it is older than this: most views
#: then write nothing, and idle expiry is late by at most this much.
TOUCH_INTERVAL = timedelta(minutes=1)


class SignInFailed(PortalError):
    """The same answer for an unknown user and a wrong password."""

    status = 401
    error_name = "SignInFailed"
    description = "The user name or password is not right."


class WeakPassword(PortalError):
    error_name = "WeakPassword"


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def authenticate(
    session: Session,
    user_name: str,
    password: str,
    peppers: Sequence[bytes],
    temporary_max_age: timedelta,
) -> CustomerCredential:
    """The credential these match, or SignInFailed. A temporary password works until it is
    changed, replaced by a new invitation, or older than ``temporary_max_age``."""
    if len(password) > credentials.MAX_PASSWORD_LENGTH or len(user_name) > 254:
        raise SignInFailed()
    credential = session.scalars(
        select(CustomerCredential).where(CustomerCredential.user_name == user_name.strip().lower())
    ).first()
    if credential is None:
        # Spend about the time a real check costs, so timing does not tell who exists.
        credentials.verify_password(_dummy_hash(), password, peppers)
        raise SignInFailed()
    if not credentials.verify_password(credential.password_hash, password, peppers):
        raise SignInFailed()
    if credential.temporary and credential.updated_at + temporary_max_age < utcnow():
        raise SignInFailed()
    return credential


@functools.cache
def _dummy_hash() -> str:
    return credentials.hash_password(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class Started:
    record: CustomerSession
    #: Goes into the cookie; only its hash is stored.
    token: str


def start(
    session: Session,
    credential: CustomerCredential,
    ip_address: str,
    user_agent: str,
) -> Started:
    token = secrets.token_urlsafe(32)
    record = CustomerSession(
        token_hash=_token_hash(token),
        customer_id=credential.customer_id,
        must_change_password=credential.temporary,
        ip_address=ip_address[:45],
        user_agent=user_agent[:500],
    )
    session.add(record)
    customer = session.get(Customer, credential.customer_id)
    events.record(
        session,
        events.CUSTOMER_SIGNED_IN,
        actor=f"customer:{credential.user_name}",
        customer_id=credential.customer_id,
        partner_id=customer.partner_id if customer else None,
        data={"temporary": credential.temporary},
    )
    return Started(record, token)


@dataclass(frozen=True)
class SignedIn:
    """A live session, with what every page of a signed-in customer needs."""

    session_id: str
    must_change_password: bool
    #: The customer has accepted the customer agreement on the portal (as
    #: ``invitations.has_direct_acceptance`` finds it).
    accepted: bool
    customer: customers.PageCustomer


_SIGNED_IN = db.CompiledRead(
    customers.with_partner_and_credential(
        select(
            CustomerSession.id,
            CustomerSession.must_change_password,
            CustomerSession.last_seen_at,
            CustomerSession.ended_at,
            invitations.direct_acceptance_of(CustomerSession.customer_id).label("accepted"),
            *customers.PAGE_CUSTOMER.values(),
        )
        .select_from(CustomerSession)
        .join(Customer, Customer.id == CustomerSession.customer_id)
    ).where(CustomerSession.token_hash == bindparam("token_hash"))
)


def current(session: Session, token: str | None, idle: timedelta) -> SignedIn | None:
    """The live session for this cookie token; None when absent, ended or idle too long.

    Read in one query apart from ``session``; what this writes (the end of an idle session, the
    last-seen time) goes through ``session``, for the caller to commit.
    """
    if not token or len(token) > 100:
        return None
    row = _SIGNED_IN.first(session, token_hash=_token_hash(token))
    if row is None:
        return None
    session_id, must_change_password, last_seen_at, ended_at, accepted, *customer = row
    if ended_at is not None:
        return None
    now = utcnow()
    if last_seen_at + idle < now:
        _update_session(session, session_id, ended_at=now)
        return None
    if now - last_seen_at > TOUCH_INTERVAL:
        _update_session(session, session_id, last_seen_at=now)
    return SignedIn(
        session_id,
        bool(must_change_password),
        bool(accepted),
        customers.page_customer(customer),
    )


def _update_session(session: Session, session_id: str, **values: Any) -> None:
    session.execute(
        update(CustomerSession).where(CustomerSession.id == session_id).values(**values)
    )


def end(session: Session, signed_in: SignedIn) -> None:
    _update_session(session, signed_in.session_id, ended_at=utcnow())


def password_problem(password: str, repeated: str, user_name: str) -> str | None:
    if password != repeated:
        return "mismatch"
    if len(password) < MIN_PASSWORD_LENGTH:
        return "short"
    if len(password) > credentials.MAX_PASSWORD_LENGTH:
        return "long"
    if password.lower() == user_name.lower():
        return "same-as-user"
    return None


def change_password(
    session: Session,
    signed_in: SignedIn,
    password: str,
    peppers: Sequence[bytes],
) -> None:
    """Set the customer's own password; the temporary one never works again."""
    customer_id = signed_in.customer.id
    credential = session.scalars(
        select(CustomerCredential).where(CustomerCredential.customer_id == customer_id)
    ).one()
    if credentials.verify_password(credential.password_hash, password, peppers):
        raise WeakPassword("The new password must differ from the temporary one.")
    credential.password_hash = credentials.hash_password(password)
    credential.temporary = False
    credential.updated_at = utcnow()
    _update_session(session, signed_in.session_id, must_change_password=False)
    events.record(
        session,
        "customer.password_changed",
        actor=f"customer:{credential.user_name}",
        customer_id=customer_id,
    )
