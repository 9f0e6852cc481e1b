"""password reset requests: "forgot password" asks, the sender answers

Revision ID: 0012
Revises: 0011

A request for a reset link is stored as typed, whether or not the account exists, so that the
page does the same work for everyone (no account can be found out by the answer or its time);
the mail sender looks the account up and queues the link.
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "password_reset_requests",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("user_name", sa.String(length=254), nullable=False),
        sa.Column("locale", sa.String(length=16), nullable=False),
        sa.Column("requested_at", sa.DateTime(), nullable=False),
        sa.Column("handled_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_password_reset_requests")),
    )
    op.create_index(
        "ix_password_reset_requests_waiting",
        "password_reset_requests",
        ["handled_at", "requested_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_password_reset_requests_waiting", table_name="password_reset_requests")
    op.drop_table("password_reset_requests")
