"""MS-RequestId: the partners' requests, claimed and answered, so a retry gets the first answer

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_requests",
        sa.Column("partner_id", sa.String(length=36), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("claimed_at", sa.DateTime(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("sealed", sa.Text(), nullable=True),
        sa.Column("location", sa.String(length=300), nullable=True),
        sa.ForeignKeyConstraint(
            ["partner_id"],
            ["partners.id"],
            name=op.f("fk_api_requests_partner_id_partners"),
        ),
        sa.PrimaryKeyConstraint("partner_id", "request_id", name=op.f("pk_api_requests")),
    )
    op.create_index("ix_api_requests_claimed_at", "api_requests", ["claimed_at"])


def downgrade() -> None:
    op.drop_index("ix_api_requests_claimed_at", table_name="api_requests")
    op.drop_table("api_requests")
