"""one name for a customer whose link was opened: ``link-opened``, as the API has always said

Revision ID: 0008
Revises: 0007

``customers.progress`` said ``opened`` where the API's ``state`` said ``link-opened``; the
dashboard now filters by the same word the API answers with. Data only: the column is a plain
string (no database enum or CHECK constraint names the values).
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("UPDATE customers SET progress = 'link-opened' WHERE progress = 'opened'")


def downgrade() -> None:
    op.execute("UPDATE customers SET progress = 'opened' WHERE progress = 'link-opened'")
