"""attestations are the attesting partner's own: their dedupe key names the partner

Revision ID: 0014
Revises: 0013

An attestation's ``dedupe_key`` hashed the contact details only, so a second partner serving the
same customer could not attest with the same contact (and learned that another partner had).
Every attestation's key is computed again with its partner's id in front; direct acceptances
keep theirs. The downgrade computes the old keys back, except where two partners' attestations
would then collide: those keep the new key (no row is lost).
"""

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def _key(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def _rows(connection: sa.Connection) -> list[sa.Row]:
    return list(
        connection.execute(
            sa.text(
                "SELECT id, customer_id, template_id, partner_id, first_name, last_name, email,"
                " phone FROM agreement_acceptances WHERE method = 'attested'"
                " ORDER BY recorded_at, id"
            )
        )
    )


def _contact(row: sa.Row) -> tuple[str, str, str, str]:
    return (row.first_name.lower(), row.last_name.lower(), row.email.lower(), row.phone)


def upgrade() -> None:
    connection = op.get_bind()
    update = sa.text("UPDATE agreement_acceptances SET dedupe_key = :key WHERE id = :id")
    for row in _rows(connection):
        connection.execute(
            update, {"key": _key(row.partner_id or "", *_contact(row)), "id": row.id}
        )


def downgrade() -> None:
    connection = op.get_bind()
    update = sa.text("UPDATE agreement_acceptances SET dedupe_key = :key WHERE id = :id")
    taken: set[tuple[str, str, str]] = set()
    for row in _rows(connection):
        old = _key(*_contact(row))
        if (row.customer_id, row.template_id, old) in taken:
            continue
        taken.add((row.customer_id, row.template_id, old))
        connection.execute(update, {"key": old, "id": row.id})
