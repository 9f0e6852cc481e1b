"""A customer's "forgot password": a signed, single-use, expiring link by email.

The page only stores what was typed (``request``): the same work whether or not the account
exists, so neither the answer nor its time says which accounts do. The mail sender answers the
requests (``prepare``): for an account it queues the link to the account's address, for anything
else nothing. The link (``tokens.password_reset_token``) names the account and its credential
generation; setting the password (``reset``) moves the generation on, which ends the link and
every session of the account.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from flask import Flask
from flask_babel import gettext
from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from portal.core import db, tokens
from portal.core.models import (
    Customer,
    CustomerCredential,
    CustomerSession,
    EventKind,
    PasswordResetRequest,
    utcnow,
)
from portal.domain import events, sessions, signin
from portal.i18n import languages, wording
from portal.i18n.languages import best_locale
from portal.mail import emails, outbox

#: Outbox kind of the email with the link.
RESET_EMAIL = "password-reset"


@dataclass(frozen=True)
class ResetLinks:
    secret_key: str
    fallbacks: Sequence[str]
    base_url: str
    max_age: int

    @classmethod
    def from_config(cls, config: Any) -> ResetLinks:
        return cls(
            config["SECRET_KEY"],
            list(config["SECRET_KEY_FALLBACKS"]),
            config["BASE_URL"],
            int(config["PASSWORD_RESET_MAX_AGE"]),
        )


def prepare_for(app: Flask) -> int:
    """The mail sender's preparer (``delivery.PREPARERS``): answer waiting requests."""
    return prepare(db.session(), ResetLinks.from_config(app.config), languages.available_locales())


def request(session: Session, user_name: str, locale: str) -> None:
    """Store a request as typed; the sender answers it."""
    session.add(PasswordResetRequest(user_name=user_name.strip().lower()[:254], locale=locale[:16]))


def prepare(session: Session, links: ResetLinks, locales: list[str], batch: int = 100) -> int:
    """Answer waiting requests: each is claimed by one sender (a guarded UPDATE), and for an
    account, its link is queued to the account's address. Commits; returns how many links."""
    queued = 0
    waiting = session.scalars(
        select(PasswordResetRequest)
        .where(PasswordResetRequest.handled_at.is_(None))
        .order_by(PasswordResetRequest.requested_at)
        .limit(batch)
    ).all()
    for found in waiting:
        claimed = cast(
            CursorResult[Any],
            session.execute(
                update(PasswordResetRequest)
                .where(
                    PasswordResetRequest.id == found.id,
                    PasswordResetRequest.handled_at.is_(None),
                )
                .values(handled_at=utcnow())
                .execution_options(synchronize_session=False)
            ),
        )
        if claimed.rowcount != 1:
            continue  # another sender has it
        credential = session.scalars(
            select(CustomerCredential).where(CustomerCredential.user_name == found.user_name)
        ).first()
        if credential is not None:
            _queue_link(session, links, credential, found.locale, locales)
            queued += 1
        session.commit()
    return queued


def _queue_link(
    session: Session,
    links: ResetLinks,
    credential: CustomerCredential,
    locale: str,
    locales: list[str],
) -> None:
    customer = session.get_one(Customer, credential.customer_id)
    locale = best_locale([locale, customer.culture, customer.language], locales)
    token = tokens.password_reset_token(
        links.secret_key, links.fallbacks, customer.id, credential.generation
    )
    email = emails.render(
        "password_reset",
        locale,
        # Translators: subject of the email with a link to choose a new password.
        subject=lambda: gettext("Choose a new password for the customer portal"),
        contact_name=lambda: wording.person_name(
            customer.contact_first_name, customer.contact_last_name
        ),
        company_name=customer.company_name,
        user_name=credential.user_name,
        url=f"{links.base_url}/password/reset/{token}",
        minutes=links.max_age // 60,
    )
    outbox.queue(
        session,
        RESET_EMAIL,
        customer.contact_email,
        email,
        base_url=links.base_url,
        customer_id=customer.id,
    )


def check(session: Session, links: ResetLinks, token: str) -> CustomerCredential | None:
    """The account a reset link is for, while the link works (signed by us, not too old, and
    the password not changed since)."""
    found = tokens.check_password_reset_token(
        links.secret_key, links.fallbacks, token, links.max_age
    )
    if found is None:
        return None
    customer_id, generation = found
    credential = session.scalars(
        select(CustomerCredential).where(CustomerCredential.customer_id == customer_id)
    ).first()
    if credential is None or credential.generation != generation:
        return None
    return credential


def reset(session: Session, credential: CustomerCredential, password_hash: str) -> bool:
    """Set the new password, once: False when the link was used (or the password changed) in
    between. Every session of the account ends."""
    now = utcnow()
    customer_id, generation = credential.customer_id, credential.generation
    if not signin.replace_password(session, customer_id, generation, password_hash, now):
        return False
    sessions.end_all(
        session, CustomerSession, CustomerSession.customer_id, credential.customer_id, now
    )
    events.record(
        session,
        EventKind.CUSTOMER_PASSWORD_CHANGED,
        actor=f"customer:{credential.user_name}",
        customer_id=credential.customer_id,
        data={"reset": True},
    )
    return True
