"""dashboard: invitation expiry on customers, trigram search indexes

Revision ID: 0006
Revises: 0005

``customers.invitation_expires_at`` (the current invitation's expiry) lets the dashboard list
"invitation expired" customers from the customers index alone; it is filled in here from the
invitations. On PostgreSQL the search gets trigram indexes (pg_trgm) when the extension can be
created; without them search still works, only slower on large partners.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

SEARCHED = ("company_name", "domain", "email", "contact_email")
BACKFILL = """UPDATE customers SET invitation_expires_at = (
    SELECT max(i.expires_at) FROM invitations i WHERE i.customer_id = customers.id
    AND i.revoked_at IS NULL AND i.superseded_at IS NULL)"""


def upgrade() -> None:
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("invitation_expires_at", sa.DateTime(), nullable=True))
        batch_op.drop_index("ix_customers_partner_progress")
    op.execute(BACKFILL)
    op.create_index(
        "ix_customers_partner_progress",
        "customers",
        ["partner_id", "progress", "created_at", "id"],
        postgresql_include=["invitation_expires_at"],
    )
    if postgres:
        trigram_schema = _trigram_schema(bind)
        if trigram_schema is not None:
            for column in SEARCHED:
                op.create_index(
                    f"ix_customers_{column}_trgm",
                    "customers",
                    [column],
                    postgresql_using="gin",
                    postgresql_ops={column: f'"{trigram_schema}".gin_trgm_ops'},
                )


def _trigram_schema(bind: sa.engine.Connection) -> str | None:
    """The schema pg_trgm lives in, installing it (in public) if it can; None if it cannot."""
    find = "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'pg_trgm'"
    found = bind.execute(sa.text(find)).scalar()
    if found is None:
        try:
            with bind.begin_nested():
                bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public"))
        except sa.exc.DBAPIError as exc:
            print(f"pg_trgm is not available ({exc.orig}): the dashboard search stays unindexed")
            return None
        found = bind.execute(sa.text(find)).scalar()
    return str(found).strip('"') if found else None


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for column in SEARCHED:
            op.drop_index(f"ix_customers_{column}_trgm", table_name="customers", if_exists=True)
    op.drop_index("ix_customers_partner_progress", table_name="customers")
    op.create_index(
        "ix_customers_partner_progress", "customers", ["partner_id", "progress", "created_at", "id"]
    )
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_column("invitation_expires_at")
