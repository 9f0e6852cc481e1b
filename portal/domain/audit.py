"""The evidence chain: every acceptance, attestation and event is chained by hash to the entry
before it and sealed with the audit key, in the transaction that writes it. ``verify`` names the
first row or entry altered, inserted or missing; ``export`` gives a customer's evidence with its
proof; ``erase`` removes a customer's contact data and credentials and keeps the evidence.

An entry (``AuditEntry``, the table ``audit_chain``) of a row holds:

- ``digest``: SHA-256 of the row's evidence columns (``COLUMNS``: every column) as canonical JSON,
  keys sorted, no spaces, UTF-8, times in UTC as ``2024-05-01T09:30:00.123456Z``;
- ``hash``: SHA-256 of ``prev_hash|seq|entry_table|entry_id|digest`` (the first entry's
  ``prev_hash`` is 64 zeros): the public chain, which anyone can recompute from an export;
- ``seal``: HMAC-SHA256 of ``hash`` with the audit key (``db.audit_key``), ``key_id`` naming the
  key: someone who can write SQL but lacks the key cannot chain an edit again.

When: the rows a transaction inserts are noted as they are written (by a flush, or by
``fastsql.insert_now``, which runs the same ``after_insert`` listeners) and chained as the
transaction commits, in the order they were written: one head read and one INSERT per
transaction, however many flushes it made. On PostgreSQL an advisory lock serialises appends; it
is taken last, just before the commit, so it is held for a moment and its holder never waits
for a row lock (taken at the first flush, every transaction that writes evidence would queue
behind the slowest, and one holding it could deadlock with one holding a row it needs). On
SQLite the transaction already holds the write lock, taken by the evidence it inserted, so the
head it reads is the newest. Last guard: the seq is the primary key, so two appends that read
the same head cannot both commit.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import (
    Row,
    String,
    Table,
    bindparam,
    cast,
    delete,
    event,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Mapper, Session, SessionTransaction, object_session

from portal.core import db, fastsql
from portal.core.models import (
    AgreementAcceptance,
    ApiRequest,
    AuditEntry,
    Customer,
    CustomerCredential,
    CustomerSession,
    DeliveryStatus,
    Event,
    EventKind,
    Invitation,
    OutboxMessage,
    PasswordResetRequest,
    PersonalRequest,
    iso,
    utcnow,
)

EVENTS: Final = "events"
ACCEPTANCES: Final = "agreement_acceptances"
#: The ``prev_hash`` of the first entry.
GENESIS: Final = "0" * 64

#: The evidence columns of each table, in the digest under these names: all of them. Written out
#: rather than read from the models, since an entry's digest must not change with the schema: a
#: new column needs a decision here (``tests/test_audit.py`` fails until it is made), and a new
#: digest for the rows chained after it, the entries before keeping theirs.
COLUMNS: Final[Mapping[str, tuple[str, ...]]] = {
    EVENTS: ("id", "occurred_at", "kind", "partner_id", "customer_id", "actor", "data"),
    ACCEPTANCES: (
        "id",
        "customer_id",
        "agreement_type",
        "template_id",
        "version_rank",
        "method",
        "dedupe_key",
        "first_name",
        "last_name",
        "email",
        "phone",
        "date_agreed",
        "recorded_at",
        "recorded_by",
        "country",
        "language",
        "document_uri",
        "ip_address",
        "user_agent",
        "partner_id",
    ),
}


def _table(model: Any) -> Table:
    table: Table = model.__table__
    return table


_TABLES: Final[Mapping[str, Table]] = {
    EVENTS: _table(Event),
    ACCEPTANCES: _table(AgreementAcceptance),
}
_CHAIN: Final = _table(AuditEntry)

#: Entries read at a time by ``verify``, with their rows.
BATCH = 5000


# --- the format ---------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A column's value as the digest (and an export) writes it."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, enum.Enum):
        return value.value
    return value


def evidence(table: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """The evidence columns of a row of ``table``, as its digest covers them."""
    return {name: _plain(values[name]) for name in COLUMNS[table]}


def canonical(data: Mapping[str, Any]) -> bytes:
    """Canonical JSON: keys sorted, no spaces, UTF-8 (no ``\\u`` escapes for non-ASCII)."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode()


def digest(table: str, values: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of a row's evidence as canonical JSON."""
    return hashlib.sha256(canonical(evidence(table, values))).hexdigest()


def chain_hash(prev_hash: str, seq: int, table: str, entry_id: str, row_digest: str) -> str:
    """SHA-256 (hex) of ``prev_hash|seq|entry_table|entry_id|digest``."""
    return hashlib.sha256(f"{prev_hash}|{seq}|{table}|{entry_id}|{row_digest}".encode()).hexdigest()


def seal(key: bytes, entry_hash: str) -> str:
    """HMAC-SHA256 (hex) of an entry's hash with the audit key."""
    return hmac.new(key, entry_hash.encode(), hashlib.sha256).hexdigest()


def key_id(key: bytes) -> str:
    """Which key sealed an entry, without telling the key: its SHA-256's first 12 hex digits."""
    return hashlib.sha256(key).hexdigest()[:12]


# --- appending, as a transaction commits ----------------------------------------------------------


class MissingAuditKey(RuntimeError):
    """Evidence written in a session with no audit key (made outside any app): it could not be
    sealed, so it is not written."""


#: ``Session.info`` key: the evidence rows inserted in the session's transaction, not yet
#: chained, each with the savepoint it was written in (None: outside any).
_PENDING: Final = "portal.audit.pending"
#: PostgreSQL advisory lock serialising appends: a constant of our own (the first 8 bytes of the
#: SHA-256 of ``portal audit chain``, as a signed 64-bit number).
LOCK_ID: Final = int.from_bytes(hashlib.sha256(b"portal audit chain").digest()[:8], signed=True)
_LOCK: Final = f"SELECT pg_advisory_xact_lock({LOCK_ID})"
_HEAD: Final = fastsql.CompiledRead(
    select(_CHAIN.c.seq, _CHAIN.c.hash).order_by(_CHAIN.c.seq.desc()).limit(1)
)
_ENTRY: Final = ("seq", "entry_table", "entry_id", "digest", "prev_hash", "hash", "seal", "key_id")
#: Up to this many entries are written by one multi-row INSERT compiled once (a transaction
#: chains one or two rows as a rule); more, by ``executemany``.
_MULTI_ROW: Final = 16
_INSERTS: dict[int, fastsql.CompiledWrite] = {}


def _noted(_mapper: Mapper[Any], _connection: Any, target: Any) -> None:
    session = object_session(target)
    if session is not None:
        session.info.setdefault(_PENDING, []).append((session.get_nested_transaction(), target))


for _model in (Event, AgreementAcceptance):
    event.listen(_model, "after_insert", _noted)


@event.listens_for(Session, "before_commit")
def _chain_as_it_commits(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint's release: the transaction's own commit chains
    session.flush()  # what the commit would flush: noted now, with its ids
    noted = session.info.pop(_PENDING, None)
    if noted:
        append(session, [row for _savepoint, row in noted])


@event.listens_for(Session, "after_soft_rollback")
def _forget_rolled_back(session: Session, previous: SessionTransaction) -> None:
    noted = session.info.get(_PENDING)
    if not noted:
        return
    undone: SessionTransaction | None = previous  # up to what the rollback really undid
    while undone is not None and not undone.nested and undone.parent is not None:
        undone = undone.parent
    if undone is None or not undone.nested:
        noted.clear()
        return
    noted[:] = [(savepoint, row) for savepoint, row in noted if not _within(savepoint, undone)]


def _within(savepoint: SessionTransaction | None, undone: SessionTransaction) -> bool:
    while savepoint is not None:
        if savepoint is undone:
            return True
        savepoint = savepoint.parent
    return False


@event.listens_for(Session, "after_transaction_end")
def _forget_at_the_end(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(_PENDING, None)  # closed without committing


def append(session: Session, rows: Sequence[Event | AgreementAcceptance]) -> None:
    """Chain ``rows``, inserted in ``session``'s transaction, after the head, in this order,
    sealed with the session's key (``db.sealing_key``). Runs as the transaction commits."""
    key = db.sealing_key(session)
    if key is None:
        raise MissingAuditKey("evidence written outside the app: there is no audit key to seal it")
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(_LOCK)  # until the commit
    head = _HEAD.first(session)
    seq, prev = (int(head["seq"]), str(head["hash"])) if head else (0, GENESIS)
    sealed_by = key_id(key)
    entries = []
    for row in rows:
        table = row.__tablename__
        seq += 1
        entry_id = str(row.id)
        row_digest = digest(table, {name: getattr(row, name) for name in COLUMNS[table]})
        entry_hash = chain_hash(prev, seq, table, entry_id, row_digest)
        entries.append(
            {
                "seq": seq,
                "entry_table": table,
                "entry_id": entry_id,
                "digest": row_digest,
                "prev_hash": prev,
                "hash": entry_hash,
                "seal": seal(key, entry_hash),
                "key_id": sealed_by,
            }
        )
        prev = entry_hash
    _insert(connection, entries)


def _insert(connection: Any, entries: list[dict[str, Any]]) -> None:
    count = len(entries)
    if count > _MULTI_ROW:
        connection.execute(insert(_CHAIN), entries)
        return
    statement = _INSERTS.get(count)
    if statement is None:
        rows: list[dict[str, Any]] = [
            {name: bindparam(f"{name}_{n}") for name in _ENTRY} for n in range(count)
        ]
        statement = _INSERTS[count] = fastsql.CompiledWrite(insert(_CHAIN).values(rows))
    statement.run(
        connection,
        {f"{name}_{n}": entry[name] for n, entry in enumerate(entries) for name in _ENTRY},
    )


# --- verifying ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    """What ``verify`` found."""

    #: Entries checked (every one, when nothing is wrong).
    entries: int
    #: The last entry checked: its seq and hash (0 and ``GENESIS`` before the first).
    head_seq: int
    head_hash: str
    #: The first problem, as a sentence; None when the chain holds.
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


def verify(
    session: Session,
    keys: Iterable[bytes],
    *,
    head: tuple[int, str] | None = None,
    batch: int = BATCH,
) -> Report:
    """Check the whole chain, in order, ``batch`` entries with their rows at a time, then that
    every row is in it; stop at the first problem. ``keys``: every key that may have sealed an
    entry (``db.audit_keys``). ``head``: an entry recorded earlier (seq, hash) that must still be
    there, as it was: the chain alone cannot show that its newest entries were removed with
    their rows."""
    known = {key_id(key): key for key in keys}
    _one_snapshot(session)
    seq, prev, count = 0, GENESIS, 0
    while True:
        entries = session.execute(
            select(_CHAIN).where(_CHAIN.c.seq > seq).order_by(_CHAIN.c.seq).limit(batch)
        ).all()
        if not entries:
            break
        rows = _rows_of(session, entries)
        for entry in entries:
            problem = _problem(entry, seq + 1, prev, known, rows)
            if problem is None and head is not None and entry.seq == head[0]:
                if entry.hash != head[1]:
                    problem = f"entry {entry.seq} is not the one recorded earlier (another hash)"
            if problem is not None:
                return Report(count, seq, prev, problem)
            seq, prev, count = entry.seq, entry.hash, count + 1
    if head is not None and head[0] > seq:
        problem = (
            f"the chain ends at entry {seq}, before entry {head[0]} recorded earlier: entries "
            "were removed from its end"
        )
        return Report(count, seq, prev, problem)
    stray = _first_unchained(session, count)
    return Report(count, seq, prev, stray)


def _one_snapshot(session: Session) -> None:
    """On PostgreSQL, read everything in one snapshot (as SQLite's transactions do): rows and
    entries committed while the check runs are not half seen."""
    if not session.in_transaction() and session.get_bind().dialect.name == "postgresql":
        session.connection(
            execution_options={"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
        )


def _rows_of(session: Session, entries: Sequence[Row[Any]]) -> dict[tuple[str, str], Any]:
    """The rows the entries name, by (table, id as text)."""
    ids: dict[str, list[Any]] = {}
    for entry in entries:
        if entry.entry_table == EVENTS and entry.entry_id.isdigit():
            ids.setdefault(EVENTS, []).append(int(entry.entry_id))
        elif entry.entry_table == ACCEPTANCES:
            ids.setdefault(ACCEPTANCES, []).append(entry.entry_id)
    found: dict[tuple[str, str], Any] = {}
    for table, wanted in ids.items():
        source = _TABLES[table]
        query = select(*(source.c[name] for name in COLUMNS[table])).where(source.c.id.in_(wanted))
        for row in session.execute(query):
            found[(table, str(row.id))] = row._mapping
    return found


def _problem(
    entry: Row[Any],
    expected: int,
    prev: str,
    known: Mapping[str, bytes],
    rows: Mapping[tuple[str, str], Any],
) -> str | None:
    """What is wrong with ``entry``, which should be the ``expected``-th, after ``prev``."""
    if entry.seq != expected:
        gone = (
            f"entry {expected} is missing"
            if entry.seq == expected + 1
            else f"entries {expected} to {entry.seq - 1} are missing"
        )
        return f"{gone} (seq jumps from {expected - 1} to {entry.seq})"
    if entry.prev_hash != prev:
        return (
            f"entry {entry.seq} does not follow entry {expected - 1}: its prev_hash is not that "
            "entry's hash"
        )
    if chain_hash(prev, entry.seq, entry.entry_table, entry.entry_id, entry.digest) != entry.hash:
        return f"entry {entry.seq} was altered: its hash does not match what it holds"
    if not entry.seal:
        return (
            f"entry {entry.seq} has no seal (chained by a migration run outside the portal, "
            "without the audit key)"
        )
    key = known.get(entry.key_id)
    if key is None:
        return (
            f"entry {entry.seq} has a seal that no known key made (its key {entry.key_id} is "
            "none of those tried: an old secret key missing from SECRET_KEY_FALLBACKS?)"
        )
    if not hmac.compare_digest(seal(key, entry.hash), entry.seal):
        return f"entry {entry.seq} has a seal that no known key made"
    name = f"{entry.entry_table} row {entry.entry_id}"
    if entry.entry_table not in COLUMNS:
        return f"entry {entry.seq} names no table of evidence ({entry.entry_table!r})"
    values = rows.get((entry.entry_table, entry.entry_id))
    if values is None:
        return f"entry {entry.seq} ({name}) is missing its row: the row was deleted"
    if digest(entry.entry_table, values) != entry.digest:
        return f"entry {entry.seq} ({name}) was altered"
    return None


def _first_unchained(session: Session, chained: int) -> str | None:
    """The first row in no entry. Every entry has its own row (checked), so the counts tell
    whether there is one; only then is it looked for."""
    rows = sum(
        session.scalar(select(func.count()).select_from(source)) or 0 for source in _TABLES.values()
    )
    if rows == chained:
        return None
    for table, source in _TABLES.items():
        in_chain = exists().where(
            _CHAIN.c.entry_table == table, _CHAIN.c.entry_id == cast(source.c.id, String)
        )
        stray = session.scalar(select(source.c.id).where(~in_chain).order_by(source.c.id).limit(1))
        if stray is not None:
            return f"{table} row {stray} is not in the chain (inserted by hand?)"
    return None


# --- exporting ----------------------------------------------------------------------------------

HOW_TO_CHECK: Final = [
    "Each item is a row of evidence (its table, its columns as 'evidence') with its entry in the "
    "portal's evidence chain.",
    "digest = SHA-256 (hex) of the evidence as canonical JSON: keys sorted, no spaces (',' and "
    "':'), UTF-8 with no \\u escapes for non-ASCII characters, values exactly as given here.",
    "hash = SHA-256 (hex) of the UTF-8 text prevHash|seq|entryTable|entryId|digest; the first "
    "entry's prevHash is 64 zeros. Each entry's prevHash is the hash of the entry before it: "
    "the entries between these ones (other customers') are in the operator's database.",
    "seal = HMAC-SHA256 (hex) of hash with the operator's audit key (keyId: the first 12 hex "
    "digits of the key's SHA-256). Only the key's holder can check it; it shows that the portal "
    "made the entry, not someone writing to the database by hand.",
    "head is the newest entry when this was exported. `portal audit verify --head SEQ:HASH` "
    "checks, later, every entry from the first to the newest, and that this one is still there.",
]


def export(session: Session, customer_id: str) -> dict[str, Any]:
    """The customer's evidence (its acceptances, attestations and events), each row with its
    chain entry, in chain order, and the chain's head: a JSON value."""
    _one_snapshot(session)
    head = _HEAD.first(session)
    items: list[dict[str, Any]] = []
    for table, source in _TABLES.items():
        query = select(*(source.c[name] for name in COLUMNS[table])).where(
            source.c.customer_id == customer_id
        )
        rows: dict[str, Any] = {str(row.id): row._mapping for row in session.execute(query)}
        entries = {
            entry.entry_id: entry
            for entry in session.execute(
                select(_CHAIN).where(
                    _CHAIN.c.entry_table == table, _CHAIN.c.entry_id.in_(list(rows))
                )
            )
        }
        for row_id, values in rows.items():
            entry = entries.get(row_id)
            items.append(
                {
                    "table": table,
                    "id": row_id,
                    "evidence": evidence(table, values),
                    "entry": None
                    if entry is None
                    else {
                        "seq": entry.seq,
                        "entryTable": entry.entry_table,
                        "entryId": entry.entry_id,
                        "digest": entry.digest,
                        "prevHash": entry.prev_hash,
                        "hash": entry.hash,
                        "seal": entry.seal,
                        "keyId": entry.key_id,
                    },
                }
            )
    items.sort(key=lambda item: item["entry"]["seq"] if item["entry"] else float("inf"))
    return {
        "customerId": customer_id,
        "exportedAt": iso(utcnow()),
        "head": {"seq": head["seq"], "hash": head["hash"]} if head else {"seq": 0, "hash": GENESIS},
        "howToCheck": HOW_TO_CHECK,
        "items": items,
    }


# --- erasing ------------------------------------------------------------------------------------

#: What erased contact data reads, where a column must hold something.
ERASED: Final = "[erased]"
#: The event recording an erasure (chained like every event).
ERASED_EVENT: Final = EventKind.CUSTOMER_ERASED


@dataclass(frozen=True)
class Erased:
    """What ``erase`` removed, by kind (rows deleted or emptied)."""

    credentials: int
    sessions: int
    reset_requests: int
    messages: int
    invitations: int
    relationship_requests: int
    api_answers: int


def erase(session: Session, customer: Customer, *, actor: str) -> Erased:
    """Erase the customer's personal data on a data-protection request: its credentials,
    sessions and password-reset requests (deleted); its contact data (names, emails, phones,
    address: ``ERASED`` or empty); the recipients and bodies of its invitations, relationship
    requests and outbox messages (emptied; those not yet sent are cancelled); the API answers
    kept for retries that show it (deleted). The evidence is kept, whole: its acceptances and
    attestations (with the name, email, phone, IP address and user agent recorded as who
    accepted) and the event log, whose entries in the chain would otherwise break. Recorded as
    a ``customer.erased`` event."""
    user_name = session.scalar(
        select(CustomerCredential.user_name).where(CustomerCredential.customer_id == customer.id)
    )
    resets = 0
    if user_name is not None:
        resets = _count(
            session,
            delete(PasswordResetRequest).where(PasswordResetRequest.user_name == user_name.lower()),
        )
    credentials = _count(
        session, delete(CustomerCredential).where(CustomerCredential.customer_id == customer.id)
    )
    sessions = _count(
        session, delete(CustomerSession).where(CustomerSession.customer_id == customer.id)
    )
    invitation_ids = select(Invitation.id).where(Invitation.customer_id == customer.id)
    request_ids = list(
        session.scalars(
            select(PersonalRequest.id).where(
                or_(
                    PersonalRequest.customer_id == customer.id,
                    PersonalRequest.domain == customer.domain,
                )
            )
        )
    )
    of_customer = or_(
        OutboxMessage.customer_id == customer.id,
        OutboxMessage.invitation_id.in_(invitation_ids),
        OutboxMessage.request_id.in_(request_ids),
    )
    _count(  # what was not sent yet never will be: its address and body are gone
        session,
        update(OutboxMessage)
        .where(
            of_customer,
            OutboxMessage.status.in_([DeliveryStatus.QUEUED, DeliveryStatus.SENDING]),
        )
        .values(status=DeliveryStatus.CANCELLED, claimed_until=None),
    )
    messages = _count(
        session,
        update(OutboxMessage)
        .where(of_customer)
        .values(to_address=ERASED, text_body="", html_body="", mime=None, last_error=""),
    )
    invitations = _count(
        session,
        update(Invitation)
        .where(Invitation.customer_id == customer.id)
        .values(recipient=ERASED, text_body="", html_body=""),
    )
    requests = _count(
        session,
        update(PersonalRequest)
        .where(PersonalRequest.id.in_(request_ids))
        .values(recipient=ERASED, text_body="", html_body=""),
    )
    answers = _count(
        session,
        delete(ApiRequest).where(
            ApiRequest.status.is_not(None), ApiRequest.body.contains(customer.id)
        ),
    )
    # Objects loaded before hold what the statements changed or deleted: read again when used.
    for loaded in list(session.identity_map.values()):
        if isinstance(loaded, _ERASED_FROM):
            session.expire(loaded)
    session.expire(customer, ["credential"])
    for name in ("email", "contact_first_name", "contact_last_name", "contact_email"):
        setattr(customer, name, ERASED)
    for name in (
        "address_first_name",
        "address_last_name",
        "address_line1",
        "address_line2",
        "city",
        "state",
        "postal_code",
        "phone",
        "contact_phone",
    ):
        setattr(customer, name, "")
    erased = Erased(
        credentials=credentials,
        sessions=sessions,
        reset_requests=resets,
        messages=messages,
        invitations=invitations,
        relationship_requests=requests,
        api_answers=answers,
    )
    session.add(
        Event(
            kind=ERASED_EVENT,
            actor=actor,
            customer_id=customer.id,
            data={name: getattr(erased, name) for name in erased.__dataclass_fields__},
        )
    )
    session.flush()
    return erased


#: The tables ``erase`` changes or deletes rows of by statements (the customer's, by its object).
_ERASED_FROM: Final = (
    ApiRequest,
    CustomerCredential,
    CustomerSession,
    Invitation,
    OutboxMessage,
    PasswordResetRequest,
    PersonalRequest,
)


def _count(session: Session, statement: Any) -> int:
    result: Any = session.execute(statement.execution_options(synchronize_session=False))
    return int(result.rowcount)
