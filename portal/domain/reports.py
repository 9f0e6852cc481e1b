"""What the dashboard shows a partner: its customers page by page, one customer's story, counts.

Every query here starts from the partner's visible customers; nothing else can be reached.
"""

from __future__ import annotations

import base64
import binascii
import enum
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, or_, select, tuple_, union_all
from sqlalchemy.orm import Session

from portal.core import validate
from portal.core.errors import InvalidParameter
from portal.core.models import (
    AcceptanceMethod,
    AgreementAcceptance,
    Customer,
    CustomerRelationship,
    DeliveryStatus,
    Event,
    EventKind,
    InvitationStatus,
    OutboxMessage,
    Partner,
    Progress,
    is_id,
    iso,
    utcnow,
)
from portal.domain import acceptance, relationships

#: The states a partner filters by: the progress steps, and "expired" (invited, but no link
#: that still works).
EXPIRED = InvitationStatus.EXPIRED
STATES: list[str] = [*Progress, EXPIRED]
_WAITING = (Progress.INVITED, Progress.OPENED, Progress.SIGNED_IN)
PAGE_SIZE = 50


R = CustomerRelationship


def _visible(partner_id: str, group: Sequence[str]) -> ColumnElement[bool]:
    """The active relationships of the partners in ``group`` that ``partner_id`` sees (one of
    its own, or of its resellers, see ``relationships.shown_to``)."""
    return relationships.shown_to(partner_id, group)


def _joined(*columns: Any) -> Select[Any]:
    return select(*columns).select_from(R).join(Customer, Customer.id == R.customer_id)


#: At most this many ordered index scans are merged for one page (see ``customer_page``); a
#: provider with more resellers gets one scan of them all, sorted.
MAX_MERGED_SCANS = 64


def _link_works() -> ColumnElement[bool]:
    """The partner's current invitation link still works (``invitation_expires_at`` is kept
    by the invitations: set when one is issued, cleared when it is withdrawn)."""
    return R.invitation_expires_at > utcnow()


def _state_filter(state: str) -> ColumnElement[bool]:
    if state == EXPIRED:
        return and_(
            R.progress.in_(_WAITING),
            or_(R.invitation_expires_at.is_(None), ~_link_works()),
        )
    progress = Progress(state)
    if progress in _WAITING:
        return and_(R.progress == progress, _link_works())
    return R.progress == progress


def _search(text: str) -> ColumnElement[bool]:
    """``text`` anywhere in the company name, domain or emails, any case, taken literally.
    ILIKE, not lower() LIKE lower(): PostgreSQL's trigram indexes serve ILIKE."""
    pattern = "%" + text.replace("/", "//").replace("%", "/%").replace("_", "/_") + "%"
    columns = (Customer.company_name, Customer.domain, Customer.email, Customer.contact_email)
    return or_(*(column.ilike(pattern, escape="/") for column in columns))


@dataclass(frozen=True)
class Row:
    customer: Customer
    #: The progress step, or "expired".
    state: str
    #: The partner whose relationship it is: the partner's own, or a provider's reseller.
    served_by: str = ""
    #: When that relationship began.
    since: datetime | None = None


@dataclass
class CustomerPage:
    rows: list[Row]
    #: Cursor of the next page; None on the last page.
    next_cursor: str | None
    query: str = ""
    state: str = ""
    partner_names: dict[str, str] = field(default_factory=dict)


def encode_cursor(relationship: CustomerRelationship) -> str:
    raw = f"{relationship.began_at.isoformat()}|{relationship.customer_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The (began_at, customer id) a cursor points after; InvalidParameter for anything
    else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        moment, customer_id = raw.split("|")
        created = datetime.fromisoformat(moment)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidParameter("The page link is damaged; start from the first page.") from exc
    if created.tzinfo is None or not is_id(customer_id):
        raise InvalidParameter("The page link is damaged; start from the first page.")
    return created, customer_id


def customer_page(
    session: Session,
    partner_id: str,
    *,
    query: str = "",
    state: str = "",
    cursor: str = "",
    size: int = PAGE_SIZE,
) -> CustomerPage:
    """The partner's customers, the newest relationships first, ``size`` at a time after
    ``cursor`` (keyset pagination: as fast on the last page as on the first). ``query``
    searches company, domain and emails."""
    if state and state not in STATES:
        raise InvalidParameter(f"Unknown state {state[:40]!r}.", state=state[:40])
    query = query.strip()[:200]
    if validate.has_control(query):  # NUL would end the pattern early on SQLite: match all
        raise InvalidParameter("A search cannot contain control characters.", q=query[:40])
    partner_ids = relationships.partner_ids(session, partner_id)
    filters: list[ColumnElement[bool]] = []
    if query:
        filters.append(_search(query))
    if cursor:
        began_at, customer_id = decode_cursor(cursor)
        # A row-value comparison, not "began_at < x OR (began_at = x AND id < y)": PostgreSQL
        # makes it a bound of the index scan (partner_id, state, [progress,] began_at,
        # customer_id), so a deep page starts where the cursor points instead of filtering
        # every newer row (at 1,000,000 customers, half-way down: 0.2 ms instead of 1.6-2.8 s;
        # dashboard_bench.py).
        filters.append(tuple_(R.began_at, R.customer_id) < (began_at, customer_id))
    newest_first = (R.began_at.desc(), R.customer_id.desc())
    on_postgresql = session.get_bind().dialect.name == "postgresql"
    # PostgreSQL reads those indexes in began_at order for one partner and one progress step
    # only; across several (a provider's resellers, the waiting steps of "expired") it would
    # sort every matching relationship. So: one ordered index scan per partner and step, each
    # stopping after a page, merged.
    per_step = on_postgresql and state == EXPIRED
    per_partner = (
        on_postgresql
        and not query  # a search reads the trigram indexes, in no order anyway
        and 1 < len(partner_ids) <= MAX_MERGED_SCANS // (len(_WAITING) if per_step else 1)
    )
    if per_partner or per_step:
        partner_groups = [[p] for p in partner_ids] if per_partner else [list(partner_ids)]
        steps: list[Progress | None] = list(_WAITING) if per_step else [None]
        if state and not per_step:
            filters.append(_state_filter(state))
        parts = [
            _joined(R.customer_id, R.partner_id, R.began_at)
            .where(
                *filters,
                _visible(partner_id, group if per_partner else partner_ids),
                *([] if step is None else [_state_filter(EXPIRED), R.progress == step]),
            )
            .order_by(*newest_first)
            .limit(size + 1)
            .subquery()
            .select()
            for group in partner_groups
            for step in steps
        ]
        merged = union_all(*parts).subquery()
        picked = (
            select(merged.c.customer_id, merged.c.partner_id)
            .order_by(merged.c.began_at.desc(), merged.c.customer_id.desc())
            .limit(size + 1)
            .subquery()
        )
        statement = (
            select(Customer, R)
            .join(R, R.customer_id == Customer.id)
            .join(
                picked,
                and_(picked.c.customer_id == R.customer_id, picked.c.partner_id == R.partner_id),
            )
        )
    else:
        if state:
            filters.append(_state_filter(state))
        statement = (
            select(Customer, R)
            .join(R, R.customer_id == Customer.id)
            .where(_visible(partner_id, partner_ids), *filters)
        )
    statement = statement.order_by(*newest_first).limit(size + 1)
    found = list(session.execute(statement))
    more = len(found) > size
    found = found[:size]
    rows = [Row(c, display_state(r), r.partner_id, r.began_at) for c, r in found]
    names = (
        {
            row.id: row.name
            for row in session.execute(
                select(Partner.id, Partner.name).where(Partner.id.in_(partner_ids))
            )
        }
        if len(partner_ids) > 1
        else {}
    )
    return CustomerPage(
        rows=rows,
        next_cursor=encode_cursor(found[-1][1]) if more and found else None,
        query=query,
        state=state,
        partner_names={str(k): str(v) for k, v in names.items()},
    )


def display_state(relationship: CustomerRelationship) -> str:
    """The partner's progress with the customer, or "expired" when it waits on a link that no
    longer works (the same rule as the "expired" filter)."""
    if relationship.progress in _WAITING and (
        relationship.invitation_expires_at is None or relationship.invitation_expires_at <= utcnow()
    ):
        return EXPIRED
    return relationship.progress.value


# --- one customer -------------------------------------------------------------------------------


class MailOutcome(enum.StrEnum):
    """What became of an email, as a customer's timeline shows it beside the events."""

    SENT = "email.sent"
    FAILED = "email.failed"


@dataclass(frozen=True)
class Moment:
    at: datetime
    #: What happened: an ``EventKind`` or a ``MailOutcome`` value.
    kind: str
    actor: str = ""
    detail: str = ""


#: Events of the customer's own that every partner of it sees (the others are the dealings of
#: the partner they name, which it alone sees).
SHARED_EVENTS = (EventKind.AGREEMENT_ACCEPTED,)


def timeline(session: Session, partner_id: str, customer: Customer) -> list[Moment]:
    """What happened to a customer, oldest first, as the partner sees it: the event log and each
    email's delivery of its own dealings (and its resellers'), and the customer's acceptance."""
    seen_by = relationships.partner_ids(session, partner_id)
    moments = [
        Moment(e.occurred_at, _moment_kind(e), e.actor, _detail(e))
        for e in session.scalars(
            select(Event)
            .where(
                Event.customer_id == customer.id,
                or_(Event.partner_id.in_(seen_by), Event.kind.in_(SHARED_EVENTS)),
            )
            .order_by(Event.id)
        )
    ]
    for message in session.scalars(
        select(OutboxMessage).where(
            OutboxMessage.customer_id == customer.id,
            or_(OutboxMessage.partner_id.in_(seen_by), OutboxMessage.partner_id.is_(None)),
        )
    ):
        if message.status is DeliveryStatus.SENT and message.sent_at is not None:
            moments.append(Moment(message.sent_at, MailOutcome.SENT, "", message.to_address))
        elif message.status is DeliveryStatus.FAILED:
            at = message.next_attempt_at or message.created_at
            moments.append(Moment(at, MailOutcome.FAILED, "", message.last_error[:200]))
    moments.sort(key=lambda m: m.at)
    return moments


#: A timeline kind of its own: an invitation's email queued for the first time on request.
INVITATION_FIRST_SENT = "invitation.sent"


def _moment_kind(event: Event) -> str:
    if event.kind == EventKind.INVITATION_RESENT and (event.data or {}).get("first"):
        return INVITATION_FIRST_SENT
    return event.kind


def _detail(event: Event) -> str:
    data = event.data or {}
    for key in ("agreement_type", "type", "domain", "email", "language"):
        value = data.get(key)
        if isinstance(value, str):
            return value
    return ""


def evidence(session: Session, partner_id: str, customer: Customer) -> list[AgreementAcceptance]:
    """The customer's acceptances as the partner sees them (see ``acceptance.acceptances``)."""
    seen_by = relationships.partner_ids(session, partner_id)
    return acceptance.acceptances(session, customer.id, seen_by=seen_by)


def evidence_json(
    customer: Customer, acceptances: Sequence[AgreementAcceptance]
) -> dict[str, object]:
    """The acceptance evidence as a partner keeps it: who, when, what, from where."""
    return {
        "customer": {
            "id": customer.id,
            "companyName": customer.company_name,
            "domain": customer.domain,
            "country": customer.country,
        },
        "acceptances": [
            {
                "method": a.method.value,
                "agreementType": a.agreement_type,
                "templateId": a.template_id,
                "versionRank": a.version_rank,
                "primaryContact": {
                    "firstName": a.first_name,
                    "lastName": a.last_name,
                    "email": a.email,
                    "phoneNumber": a.phone,
                },
                "dateAgreed": iso(a.date_agreed),
                "recordedAt": iso(a.recorded_at),
                "recordedBy": a.recorded_by,
                "country": a.country,
                "language": a.language,
                "documentLink": a.document_uri,
                "ipAddress": a.ip_address,
                "userAgent": a.user_agent,
            }
            for a in acceptances
        ],
        "generatedAt": iso(utcnow()),
    }


def export_rows(
    session: Session, partner_id: str, batch: int = 1000
) -> Iterator[tuple[Row, AgreementAcceptance | None]]:
    """Every visible customer, newest first, with the acceptance that counts (direct over
    attested) as the partner sees it, a batch at a time: no long transaction, no whole table in
    memory."""
    seen_by = relationships.partner_ids(session, partner_id)
    cursor = ""
    while True:
        page = customer_page(session, partner_id, cursor=cursor, size=batch)
        ids = [row.customer.id for row in page.rows]
        accepted: dict[str, AgreementAcceptance] = {}
        for item in session.scalars(
            select(AgreementAcceptance)
            .where(
                AgreementAcceptance.customer_id.in_(ids),
                or_(
                    AgreementAcceptance.method == AcceptanceMethod.DIRECT,
                    AgreementAcceptance.partner_id.in_(seen_by),
                ),
            )
            .order_by(AgreementAcceptance.recorded_at)
        ):
            current = accepted.get(item.customer_id)
            if current is None or (
                item.method is AcceptanceMethod.DIRECT
                and current.method is not AcceptanceMethod.DIRECT
            ):
                accepted[item.customer_id] = item
        for row in page.rows:
            yield row, accepted.get(row.customer.id)
        session.expunge_all()
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


# --- counts ---------------------------------------------------------------------------------------


def funnel(session: Session, partner_id: str) -> dict[str, int]:
    """How many visible customers have reached each step (each counted at its furthest)."""
    partner_ids = relationships.partner_ids(session, partner_id)
    counts = dict.fromkeys((p.value for p in Progress), 0)
    for progress, count in session.execute(
        select(R.progress, func.count())
        .where(_visible(partner_id, partner_ids))
        .group_by(R.progress)
    ):
        counts[Progress(progress).value] = int(count)
    return counts


def acceptances_by_week(
    session: Session, partner_id: str, weeks: int = 12, now: datetime | None = None
) -> list[tuple[datetime, int]]:
    """(Monday of the week, acceptances recorded that week, of the customers the partner sees)
    for the last ``weeks`` weeks: the customers' own, and the partner's attestations."""
    now = now or utcnow()
    monday = (now - timedelta(days=now.weekday())).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    starts = [monday - timedelta(weeks=n) for n in reversed(range(weeks))]
    counts = dict.fromkeys(starts, 0)
    partner_ids = relationships.partner_ids(session, partner_id)
    recorded = session.scalars(
        select(AgreementAcceptance.recorded_at)
        .join(R, R.customer_id == AgreementAcceptance.customer_id)
        .where(
            _visible(partner_id, partner_ids),
            AgreementAcceptance.recorded_at >= starts[0],
            or_(
                AgreementAcceptance.method == AcceptanceMethod.DIRECT,
                AgreementAcceptance.partner_id.in_(partner_ids),
            ),
        )
    )
    for moment in recorded:
        week = (moment - timedelta(days=moment.weekday())).replace(
            hour=0, minute=0, second=0, microsecond=0
        )
        if week in counts:
            counts[week] += 1
    return list(counts.items())


def waiting_longest(session: Session, partner_id: str, limit: int = 10) -> list[Row]:
    """Invited customers who have not accepted yet, the longest-standing first."""
    partner_ids = relationships.partner_ids(session, partner_id)
    found = session.execute(
        _joined(Customer, R)
        .where(_visible(partner_id, partner_ids), R.progress.in_(_WAITING))
        .order_by(R.began_at, R.customer_id)
        .limit(limit)
    )
    return [Row(c, r.progress.value, r.partner_id, r.began_at) for c, r in found]


def failed_deliveries(
    session: Session, partner_id: str, limit: int = 10
) -> list[tuple[OutboxMessage, Customer]]:
    """The newest emails that could not be delivered, with their customers."""
    partner_ids = relationships.partner_ids(session, partner_id)
    found = session.execute(
        select(OutboxMessage, Customer)
        .join(Customer, Customer.id == OutboxMessage.customer_id)
        .where(
            OutboxMessage.partner_id.in_(partner_ids),
            OutboxMessage.status == DeliveryStatus.FAILED,
            relationships.visible_to(partner_id),
        )
        .order_by(OutboxMessage.created_at.desc())
        .limit(limit)
    )
    return [(row[0], row[1]) for row in found]
