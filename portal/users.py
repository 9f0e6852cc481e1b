"""A partner's dashboard users: who they are, their roles, sign-in and server-side sessions."""

from __future__ import annotations

import functools
import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from portal import credentials, events, validate
from portal.errors import InvalidFields, PortalError
from portal.models import Partner, PartnerUser, PartnerUserSession, UserRole, utcnow

MIN_PASSWORD_LENGTH = 12
USER_CREATED = "partner_user.created"
USER_SIGNED_IN = "partner_user.signed_in"


class UserExists(PortalError):
    status = 409
    error_name = "UserExists"
    description = "A dashboard user with this email already exists."


class SignInFailed(PortalError):
    """The same answer for an unknown email, a wrong password and a disabled user."""

    status = 401
    error_name = "SignInFailed"
    description = "The email or password is not right."


def create_user(
    session: Session,
    partner: Partner,
    email: str,
    password: str,
    role: UserRole,
    name: str = "",
    actor: str = "cli",
) -> PartnerUser:
    """Add a dashboard user to ``partner``; InvalidFields or UserExists when it cannot."""
    email = email.strip().lower()
    problems = {
        field: problem
        for field, problem in {
            "email": validate.email(email),
            "password": password_problem(password),
            "name": validate.text(name, 200, required=False),
        }.items()
        if problem
    }
    if problems:
        raise InvalidFields(problems)
    user = PartnerUser(
        partner=partner,
        email=email,
        name=name.strip(),
        role=role,
        password_hash=credentials.hash_password(password),
    )
    try:
        with session.begin_nested():
            session.add(user)
            session.flush()
    except IntegrityError as exc:
        raise UserExists(email=email) from exc
    events.record(
        session,
        USER_CREATED,
        actor=actor,
        partner_id=partner.id,
        data={"user_id": user.id, "email": email, "role": role.value},
    )
    return user


def password_problem(password: str) -> str | None:
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"is shorter than {MIN_PASSWORD_LENGTH} characters"
    if len(password) > credentials.MAX_PASSWORD_LENGTH:
        return f"is longer than {credentials.MAX_PASSWORD_LENGTH} characters"
    return None


def list_users(session: Session, partner_id: str | None = None) -> list[PartnerUser]:
    query = select(PartnerUser).order_by(PartnerUser.partner_id, PartnerUser.email)
    if partner_id is not None:
        query = query.where(PartnerUser.partner_id == partner_id)
    return list(session.scalars(query))


def authenticate(session: Session, email: str, password: str) -> PartnerUser:
    """The live user these match, or SignInFailed (spending the same time either way)."""
    if len(password) > credentials.MAX_PASSWORD_LENGTH or len(email) > 254:
        raise SignInFailed()
    user = session.scalars(
        select(PartnerUser).where(PartnerUser.email == email.strip().lower())
    ).first()
    stored = user.password_hash if user is not None else _dummy_hash()
    if not credentials.verify_password(stored, password, []) or user is None:
        raise SignInFailed()
    if user.disabled_at is not None:
        raise SignInFailed()
    return user


@functools.cache
def _dummy_hash() -> str:
    return credentials.hash_password(secrets.token_urlsafe(16))


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Started:
    record: PartnerUserSession
    #: Goes into the cookie; only its hash is stored.
    token: str


def start(session: Session, user: PartnerUser, ip_address: str) -> Started:
    token = secrets.token_urlsafe(32)
    record = PartnerUserSession(token_hash=_token_hash(token), user=user)
    session.add(record)
    events.record(
        session,
        USER_SIGNED_IN,
        actor=f"user:{user.email}",
        partner_id=user.partner_id,
        data={"user_id": user.id, "ip": ip_address[:45]},
    )
    return Started(record, token)


def current(session: Session, token: str | None, idle: timedelta) -> PartnerUserSession | None:
    """The live session for this cookie token; None when absent, ended, idle or disabled."""
    if not token or len(token) > 100:
        return None
    record = session.scalars(
        select(PartnerUserSession).where(PartnerUserSession.token_hash == _token_hash(token))
    ).first()
    now = utcnow()
    if record is None or record.ended_at is not None or record.user.disabled_at is not None:
        return None
    if record.last_seen_at + idle < now:
        record.ended_at = now
        return None
    if now - record.last_seen_at > timedelta(minutes=1):
        record.last_seen_at = now
    return record


def end(record: PartnerUserSession) -> None:
    record.ended_at = utcnow()
