"""partners get a country: relationships form only within the partner's country or region

Revision ID: 0011
Revises: 0010

Existing partners get an empty country: they can do everything as before except hand out
relationship request links, which ask for the country first (``portal partners country``).
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("partners", sa.Column("country", sa.String(2), nullable=False, server_default=""))


def downgrade() -> None:
    op.drop_column("partners", "country")  # plain: a batch copy trips on the tables naming it
