"""The append-only event log: what happened to whom, by whom, when."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from portal.models import Event

PARTNER_CREATED = "partner.created"
API_KEY_CREATED = "api_key.created"
API_KEY_REVOKED = "api_key.revoked"
CUSTOMER_CREATED = "customer.created"
AGREEMENT_ATTESTED = "agreement.attested"
AGREEMENT_ACCEPTED = "agreement.accepted"
# Written by the invitation and customer pages.
INVITATION_CREATED = "invitation.created"
INVITATION_OPENED = "invitation.opened"
CUSTOMER_SIGNED_IN = "customer.signed_in"


def record(
    session: Session,
    kind: str,
    *,
    actor: str,
    partner_id: str | None = None,
    customer_id: str | None = None,
    data: dict[str, Any] | None = None,
) -> Event:
    event = Event(
        kind=kind, actor=actor, partner_id=partner_id, customer_id=customer_id, data=data or {}
    )
    session.add(event)
    return event
