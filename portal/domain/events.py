"""The append-only event log: what happened to whom, by whom, when."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, case, exists, literal, or_, select, update
from sqlalchemy.orm import Session

from portal.core import fastsql
from portal.core.models import (
    CustomerRelationship,
    Event,
    EventKind,
    Invitation,
    Progress,
    RelationshipState,
    utcnow,
)

# Every event is chained as its transaction commits: ``audit`` listens for the inserts (those of
# ``write_now`` too), and importing it here puts its listeners in place for every writer.
from portal.domain import (
    audit,  # noqa: F401 - imported for its listeners
    webhooks,
)

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
        _advance(session, kind, customer_id, partner_id, write_now)
    if kind in webhooks.FROM_EVENTS:
        webhooks.notify(
            session, kind, partner_id=partner_id, customer_id=customer_id, data=event.data
        )
    return event


#: Events about the customer itself, which every partner's relationship follows; every other step
#: belongs to the partner whose dealing it is (the inviting or attesting partner, and through its
#: reseller's relationships, a provider).
CUSTOMERS_OWN = frozenset({EventKind.CUSTOMER_SIGNED_IN, EventKind.AGREEMENT_ACCEPTED})


def _scope(kind: EventKind) -> ColumnElement[bool]:
    """The relationships an event of ``kind`` moves on (parameters ``of_customer``,
    ``of_partner``; not the columns' names, which an UPDATE reserves)."""
    of_customer = and_(
        CustomerRelationship.customer_id == bindparam("of_customer"),
        CustomerRelationship.state == RelationshipState.ACTIVE,
    )
    if kind in CUSTOMERS_OWN:
        return of_customer
    partner_id: Any = bindparam("of_partner")
    return and_(
        of_customer,
        or_(
            CustomerRelationship.partner_id == partner_id,
            CustomerRelationship.provider_id == partner_id,
        ),
    )


def _advance(
    session: Session, kind: EventKind, customer_id: str, partner_id: str | None, write_now: bool
) -> None:
    """Keep the relationships' ``progress`` in step with the event just recorded: one guarded
    UPDATE, written at once, or at flush (a page that only notes an opening, a GET, must not
    write before it commits)."""
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
    params = {"of_customer": customer_id, "of_partner": partner_id}
    if write_now:
        _ADVANCE[kind].run(session.connection(), {**params, "now": now})
        for loaded in list(session.identity_map.values()):
            if isinstance(loaded, CustomerRelationship) and loaded.customer_id == customer_id:
                session.expire(loaded, ["progress", "progress_at"])
        return
    applies = CustomerRelationship.progress.in_(moves_from)
    with session.no_autoflush:  # the event waits for the flush too
        found = list(session.scalars(select(CustomerRelationship).where(_scope(kind)), params))
    for relationship in found:
        relationship.progress = case(
            (applies, literal(step, CustomerRelationship.progress.type)),
            else_=CustomerRelationship.progress,
        )
        relationship.progress_at = case(
            (applies, literal(now, CustomerRelationship.progress_at.type)),
            else_=CustomerRelationship.progress_at,
        )


#: Each step's guarded UPDATE, for events written at once.
_ADVANCE = {
    kind: fastsql.CompiledWrite(
        update(CustomerRelationship)
        .where(
            _scope(kind),
            # Not IN: its list would be expanded at every execution.
            or_(*(CustomerRelationship.progress == value for value in sorted(moves_from))),
        )
        .values(progress=step, progress_at=bindparam("now"))
    )
    for kind, (step, moves_from) in STEPS.items()
}
