"""A partner's contact address: where customers' replies to its emails go (Reply-To)

Revision ID: 0018
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "partners",
        sa.Column("contact_email", sa.String(length=254), nullable=False, server_default=""),
    )


def downgrade() -> None:
    op.drop_column("partners", "contact_email")  # plain, as 0011's: a batch copy trips
