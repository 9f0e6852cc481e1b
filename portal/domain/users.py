"""A partner's dashboard users: who they are, their roles, sign-in and server-side sessions.

A change of password or role, and a removal, end every session of the user at once (see
``sessions.py``): a role taken away is not kept by a browser signed in before.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from portal.core import credentials, metrics, validate
from portal.core.errors import InvalidFields, NotFound, PortalError
from portal.core.models import EventKind, Partner, PartnerUser, PartnerUserSession, UserRole, utcnow
from portal.domain import events, sessions


class UserExists(PortalError):
    status = 409
    error_name = "UserExists"
    description = "A dashboard user with this email already exists."


class UserNotFound(NotFound):
    error_name = "UserNotFound"
    description = "No dashboard user with this email or id was found."


SignInFailed = sessions.SignInFailed
Started = sessions.Started[PartnerUserSession]


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
            "password": credentials.length_problem(password),
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
        EventKind.USER_CREATED,
        actor=actor,
        partner_id=partner.id,
        data={"user_id": user.id, "email": email, "role": role.value},
    )
    return user


def list_users(session: Session, partner_id: str | None = None) -> list[PartnerUser]:
    query = select(PartnerUser).order_by(PartnerUser.partner_id, PartnerUser.email)
    if partner_id is not None:
        query = query.where(PartnerUser.partner_id == partner_id)
    return list(session.scalars(query))


def find(session: Session, email_or_id: str, partner_id: str | None = None) -> PartnerUser:
    """A user by email or id (within ``partner_id`` when given); UserNotFound otherwise."""
    wanted = email_or_id.strip().lower()
    query = select(PartnerUser).where((PartnerUser.email == wanted) | (PartnerUser.id == wanted))
    if partner_id is not None:
        query = query.where(PartnerUser.partner_id == partner_id)
    user = session.scalars(query).first() if len(wanted) <= 254 else None
    if user is None:
        raise UserNotFound(user=email_or_id[:254])
    return user


def _changed(session: Session, user: PartnerUser, kind: EventKind, actor: str, **data: Any) -> None:
    """Record a change to ``user`` that ends all of its sessions."""
    user.generation = user.generation + 1
    sessions.end_all(session, PartnerUserSession, PartnerUserSession.user_id, user.id, utcnow())
    events.record(
        session,
        kind,
        actor=actor,
        partner_id=user.partner_id,
        data={"user_id": user.id, "email": user.email, **data},
    )


def set_role(session: Session, user: PartnerUser, role: UserRole, actor: str) -> None:
    if user.role is role:
        return
    before = user.role
    user.role = role
    _changed(
        session, user, EventKind.USER_ROLE_CHANGED, actor, role=role.value, before=before.value
    )


def set_password(session: Session, user: PartnerUser, password: str, actor: str) -> None:
    problem = credentials.length_problem(password)
    if problem:
        raise InvalidFields({"password": problem})
    user.password_hash = credentials.hash_password(password)
    _changed(session, user, EventKind.USER_PASSWORD_CHANGED, actor)


def remove(session: Session, user: PartnerUser, actor: str) -> None:
    """Take the user off the dashboard: they cannot sign in, and their sessions end."""
    if user.disabled_at is not None:
        return
    user.disabled_at = utcnow()
    _changed(session, user, EventKind.USER_REMOVED, actor)


def authenticate(session: Session, email: str, password: str) -> PartnerUser:
    """The live user these match, or SignInFailed, at the same cost for every failure."""
    user = None
    if len(email) <= 254:
        user = session.scalars(
            select(PartnerUser).where(PartnerUser.email == email.strip().lower())
        ).first()
    stored = user.password_hash if user is not None else None
    if not credentials.verify_password(stored, password, []) or user is None or user.disabled_at:
        metrics.SIGNIN_FAILURES.labels("partner_user").inc()
        raise SignInFailed()
    return user


def start(session: Session, user: PartnerUser, ip_address: str) -> Started:
    token, token_hash = sessions.new_token()
    record = PartnerUserSession(token_hash=token_hash, user=user, generation=user.generation)
    session.add(record)
    events.record(
        session,
        EventKind.USER_SIGNED_IN,
        actor=f"user:{user.email}",
        partner_id=user.partner_id,
        data={"user_id": user.id, "ip": ip_address[:45]},
    )
    return Started(record, token)


def current(session: Session, token: str | None, idle: timedelta) -> PartnerUserSession | None:
    """The live session for this cookie token; None when absent, ended, idle, opened before
    a change of the user's password or role, or of a removed user."""
    if not sessions.readable_token(token):
        return None
    assert token is not None  # noqa: S101 - readable_token says so
    record = session.scalars(
        select(PartnerUserSession).where(
            PartnerUserSession.token_hash == sessions.token_hash(token)
        )
    ).first()
    if record is None or record.user.disabled_at is not None:
        return None
    now = utcnow()
    verdict = sessions.state(
        ended_at=record.ended_at,
        last_seen_at=record.last_seen_at,
        generation=record.generation,
        current_generation=record.user.generation,
        idle=idle,
        now=now,
    )
    if verdict is sessions.State.OVER:
        return None
    if verdict is sessions.State.IDLE:
        record.ended_at = now
        return None
    if verdict is sessions.State.TOUCH:
        record.last_seen_at = now
    return record


def end(record: PartnerUserSession) -> None:
    record.ended_at = utcnow()
