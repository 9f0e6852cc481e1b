"""the evidence chain: acceptances, attestations and events, chained by hash and sealed

Revision ID: 0016
Revises: 0015

Every row of ``events`` and ``agreement_acceptances`` gets an entry in ``audit_chain`` (see
``portal.domain.audit``). The rows already there are chained here, the events by id, then the
acceptances by the time they were recorded, so that an upgraded database verifies. The entries
are sealed with the app's audit key, which ``portal db upgrade`` (any upgrade inside the app's
context) passes in; an upgrade run outside the app leaves their seals empty, and ``portal audit
verify`` names the first of them.

The chain's format is copied here as it was at this revision, as migrations keep what they
relied on: a later change to the code must not change what this wrote. ``tests/test_audit.py``
checks that ``audit.verify`` accepts the chain it makes.
"""

import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import context, op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

BATCH = 2000
GENESIS = "0" * 64

_EVENTS = sa.table(
    "events",
    sa.column("id", sa.Integer()),
    sa.column("occurred_at", sa.DateTime()),
    sa.column("kind", sa.String()),
    sa.column("partner_id", sa.String()),
    sa.column("customer_id", sa.String()),
    sa.column("actor", sa.String()),
    sa.column("data", sa.JSON()),
)
_ACCEPTANCES = sa.table(
    "agreement_acceptances",
    sa.column("id", sa.String()),
    sa.column("customer_id", sa.String()),
    sa.column("agreement_type", sa.String()),
    sa.column("template_id", sa.String()),
    sa.column("version_rank", sa.Integer()),
    sa.column("method", sa.String()),
    sa.column("dedupe_key", sa.String()),
    sa.column("first_name", sa.String()),
    sa.column("last_name", sa.String()),
    sa.column("email", sa.String()),
    sa.column("phone", sa.String()),
    sa.column("date_agreed", sa.DateTime()),
    sa.column("recorded_at", sa.DateTime()),
    sa.column("recorded_by", sa.String()),
    sa.column("country", sa.String()),
    sa.column("language", sa.String()),
    sa.column("document_uri", sa.String()),
    sa.column("ip_address", sa.String()),
    sa.column("user_agent", sa.String()),
    sa.column("partner_id", sa.String()),
)
_CHAIN = sa.table(
    "audit_chain",
    sa.column("seq"),
    sa.column("entry_table"),
    sa.column("entry_id"),
    sa.column("digest"),
    sa.column("prev_hash"),
    sa.column("hash"),
    sa.column("seal"),
    sa.column("key_id"),
)


def upgrade() -> None:
    op.create_table(
        "audit_chain",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("entry_table", sa.String(length=32), nullable=False),
        sa.Column("entry_id", sa.String(length=36), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("seal", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=12), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_chain")),
        sa.UniqueConstraint("entry_table", "entry_id", name=op.f("uq_audit_chain_entry_table")),
    )
    _append_only()
    _chain_existing_rows(op.get_bind(), context.config.attributes.get("portal.audit_key"))


def _append_only() -> None:
    """As the event log: the database itself refuses to change or delete an entry."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION audit_chain_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'audit_chain is append-only'; END $$"
        )
        op.execute(
            "CREATE TRIGGER audit_chain_append_only BEFORE UPDATE OR DELETE ON audit_chain "
            "FOR EACH ROW EXECUTE FUNCTION audit_chain_append_only()"
        )
    else:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_chain_no_{action.lower()} BEFORE {action} ON audit_chain "
                "BEGIN SELECT RAISE(ABORT, 'audit_chain is append-only'); END"
            )


def _rows(connection: sa.Connection, table: Any, order: list[Any]) -> Iterator[sa.Row[Any]]:
    """The rows of ``table`` in ``order`` (unique), a batch at a time: by the last one's key."""
    query = sa.select(table).order_by(*order).limit(BATCH)
    after: tuple[Any, ...] | None = None
    while True:
        page = query if after is None else query.where(sa.tuple_(*order) > sa.tuple_(*after))
        rows = list(connection.execute(page))
        yield from rows
        if len(rows) < BATCH:
            return
        after = tuple(getattr(rows[-1], column.name) for column in order)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value


def _digest(row: sa.Row[Any]) -> str:
    evidence = {name: _plain(value) for name, value in row._mapping.items()}
    text = json.dumps(evidence, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _chain_existing_rows(connection: sa.Connection, key: bytes | None) -> None:
    key_id = hashlib.sha256(key).hexdigest()[:12] if key else ""
    sources = [
        ("events", _rows(connection, _EVENTS, [_EVENTS.c.id])),
        (
            "agreement_acceptances",
            _rows(connection, _ACCEPTANCES, [_ACCEPTANCES.c.recorded_at, _ACCEPTANCES.c.id]),
        ),
    ]
    seq, prev = 0, GENESIS
    entries: list[dict[str, Any]] = []
    for table, rows in sources:
        for row in rows:
            seq += 1
            digest = _digest(row)
            chained = hashlib.sha256(f"{prev}|{seq}|{table}|{row.id}|{digest}".encode()).hexdigest()
            entries.append(
                {
                    "seq": seq,
                    "entry_table": table,
                    "entry_id": str(row.id),
                    "digest": digest,
                    "prev_hash": prev,
                    "hash": chained,
                    "seal": hmac.new(key, chained.encode(), hashlib.sha256).hexdigest()
                    if key
                    else "",
                    "key_id": key_id,
                }
            )
            prev = chained
            if len(entries) == BATCH:
                connection.execute(_CHAIN.insert(), entries)
                entries.clear()
    if entries:
        connection.execute(_CHAIN.insert(), entries)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_chain_append_only ON audit_chain")
        op.execute("DROP FUNCTION audit_chain_append_only()")
    op.drop_table("audit_chain")
