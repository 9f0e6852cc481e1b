"""customer sessions and secrecy amendment flag

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "customer_sessions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=36), nullable=False),
        sa.Column("must_change_password", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("ip_address", sa.String(length=45), nullable=False),
        sa.Column("user_agent", sa.String(length=500), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_customer_sessions_customer_id_customers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_customer_sessions_token_hash")),
    )
    with op.batch_alter_table("customer_sessions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_customer_sessions_customer_id"), ["customer_id"], unique=False
        )

    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "requires_secrecy_amendment",
                sa.Boolean(),
                nullable=False,
                server_default=sa.false(),
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_column("requires_secrecy_amendment")

    with op.batch_alter_table("customer_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_customer_sessions_customer_id"))

    op.drop_table("customer_sessions")
