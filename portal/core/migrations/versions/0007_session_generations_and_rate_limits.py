"""sessions tied to credential generations; failed sign-ins counted in the database

Revision ID: 0007
Revises: 0006

Customer credentials and dashboard users get a ``generation``, which every change of password,
role or standing increments; each session records the generation it was opened with and lives
only while the two agree. Existing sessions begin at generation 0, as their credentials do.
``rate_limit_counters`` holds the failed sign-in counts of the default limit storage, where
every worker and process sees them.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

GENERATIONS = (
    "customer_credentials",
    "customer_sessions",
    "partner_users",
    "partner_user_sessions",
)


def upgrade() -> None:
    for table in GENERATIONS:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column("generation", sa.Integer(), server_default="0", nullable=False)
            )
    op.create_table(
        "rate_limit_counters",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_rate_limit_counters")),
    )
    with op.batch_alter_table("rate_limit_counters", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_rate_limit_counters_expires_at"), ["expires_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("rate_limit_counters", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rate_limit_counters_expires_at"))
    op.drop_table("rate_limit_counters")
    for table in reversed(GENERATIONS):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("generation")
