"""The append-only event log: what happened to whom, by whom, when."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, case, exists, literal, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from portal.core import fastsql
from portal.core.models import Customer, Event, EventKind, Invitation, Progress, utcnow

_BEFORE_ACCEPTANCE = frozenset(
    {Progress.NOT_INVITED, Progress.INVITED, Progress.OPENED, Progress.SIGNED_IN}
)
#: The step an event brings its customer to, and the steps it moves on from. A direct
#: acceptance outranks an attestation; nothing moves a customer back from either.
STEPS: dict[EventKind, tuple[Progress, frozenset[Progress]]] = {
    EventKind.INVITATION_CREATED: (Progress.INVITED, _BEFORE_ACCEPTANCE),
    EventKind.INVITATION_OPENED: (Progress.OPENED, frozenset({Progress.INVITED})),
    EventKind.CUSTOMER_SIGNED_IN: (Progress.SIGNED_IN, _BEFORE_ACCEPTANCE - {Progress.SIGNED_IN}),
    EventKind.INVITATION_REVOKED: (
        Progress.NOT_INVITED,
        frozenset({Progress.INVITED, Progress.OPENED}),
    ),
    EventKind.AGREEMENT_ATTESTED: (Progress.ATTESTED, _BEFORE_ACCEPTANCE),
    EventKind.AGREEMENT_ACCEPTED: (Progress.ACCEPTED, _BEFORE_ACCEPTANCE | {Progress.ATTESTED}),
}


def record(
    session: Session,
    kind: EventKind,
    *,
    actor: str,
    partner_id: str | None = None,
    customer_id: str | None = None,
    data: dict[str, Any] | None = None,
    write_now: bool = False,
) -> Event:
    """Log an event; with ``write_now``, INSERT it (and move its customer on) at once, else at
    flush."""
    event = Event(
        kind=kind, actor=actor, partner_id=partner_id, customer_id=customer_id, data=data or {}
    )
    if write_now:
        fastsql.insert_now(session, event)
    else:
        session.add(event)
    if customer_id is not None and kind in STEPS:
        _advance(session, kind, customer_id, write_now)
    return event


def _advance(session: Session, kind: EventKind, customer_id: str, write_now: bool = False) -> None:
    """Keep ``Customer.progress`` in step with the event just recorded: one guarded UPDATE,
    written at once, or at flush when the customer is loaded and the event waits for the flush
    too (a page that only notes an opening, a GET, must not write before it commits)."""
    step, moves_from = STEPS[kind]
    if kind == EventKind.INVITATION_REVOKED and session.scalar(
        select(
            exists().where(
                Invitation.customer_id == customer_id,
                Invitation.revoked_at.is_(None),
                Invitation.superseded_at.is_(None),
            )
        )
    ):
        return  # an older invitation was withdrawn; the current one still stands
    now = utcnow()
    customer = session.identity_map.get(identity_key(Customer, customer_id))
    if write_now or not isinstance(customer, Customer):
        _ADVANCE[kind].run_for(
            session,
            Customer,
            customer_id,
            ["progress", "progress_at"],
            customer_id=customer_id,
            now=now,
        )
        return
    applies = Customer.progress.in_(moves_from)
    customer.progress = case(
        (applies, literal(step, Customer.progress.type)), else_=Customer.progress
    )
    customer.progress_at = case(
        (applies, literal(now, Customer.progress_at.type)), else_=Customer.progress_at
    )


#: Each step's guarded UPDATE, for events written at once.
_ADVANCE = {
    kind: fastsql.CompiledWrite(
        update(Customer)
        .where(
            Customer.id == bindparam("customer_id"),
            # Not IN: its list would be expanded at every execution.
            or_(*(Customer.progress == value for value in sorted(moves_from))),
        )
        .values(progress=step, progress_at=bindparam("now"))
    )
    for kind, (step, moves_from) in STEPS.items()
}
