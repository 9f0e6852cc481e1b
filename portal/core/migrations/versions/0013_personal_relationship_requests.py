"""personal relationship requests: one company, one person, one email, tracked

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "personal_requests",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("partner_id", sa.String(length=36), nullable=False),
        sa.Column("created_by", sa.String(length=300), nullable=False),
        sa.Column("domain", sa.String(length=255), nullable=False),
        sa.Column("recipient", sa.String(length=254), nullable=False),
        sa.Column("language", sa.String(length=35), nullable=False),
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("text_body", sa.Text(), nullable=False),
        sa.Column("html_body", sa.Text(), nullable=False),
        sa.Column("opened_at", sa.DateTime(), nullable=True),
        sa.Column("answer", sa.String(length=16), nullable=False),
        sa.Column("answered_at", sa.DateTime(), nullable=True),
        sa.Column("customer_id", sa.String(length=36), nullable=True),
        sa.Column("withdrawn_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name=op.f("fk_personal_requests_partner_id_partners")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_personal_requests_customer_id_customers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_personal_requests")),
        sa.UniqueConstraint("nonce", name=op.f("uq_personal_requests_nonce")),
    )
    op.create_index(
        "ix_personal_requests_partner", "personal_requests", ["partner_id", "created_at"]
    )
    op.add_column("outbox", sa.Column("request_id", sa.String(length=36), nullable=True))
    op.create_index(op.f("ix_outbox_request_id"), "outbox", ["request_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_outbox_request_id"), table_name="outbox")
    op.drop_column("outbox", "request_id")
    op.drop_index("ix_personal_requests_partner", table_name="personal_requests")
    op.drop_table("personal_requests")
