"""progress follows the relationship: each partner sees its own dealings with a shared customer

Revision ID: 0010
Revises: 0009

A customer may have several partners, and each sees only its own dealings with it, and the
customer's acceptance. So what the dashboard lists and filters by moves from the customer to the
partner's relationship: ``progress``, ``progress_at`` and ``invitation_expires_at`` (copied from
each customer to its creator's relationship, the only one there is), indexed for a partner's
pages by when the relationship began. ``customers.partner_id`` stays, naming the customer's
creator (whose invitations issue its first credentials); nothing decides visibility by it now.

Emails and acceptances get the partner whose dealing they are (``partner_id``: the inviting,
attesting or requesting partner; None for mail that belongs to the customer alone), so another
partner of the same customer sees the acceptance and not its evidence or the mail around it.
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

PROGRESS = sa.Enum(
    "not-invited",
    "invited",
    "link-opened",
    "signed-in",
    "accepted",
    "attested",
    name="progress",
    native_enum=False,
    length=32,
)

COPY_PROGRESS = """UPDATE customer_relationships SET
    progress = (SELECT c.progress FROM customers c WHERE c.id = customer_relationships.customer_id),
    progress_at = (SELECT c.progress_at FROM customers c
                   WHERE c.id = customer_relationships.customer_id),
    invitation_expires_at = (SELECT c.invitation_expires_at FROM customers c
                             WHERE c.id = customer_relationships.customer_id)"""
OUTBOX_PARTNER = """UPDATE outbox SET partner_id = (
    SELECT c.partner_id FROM customers c WHERE c.id = outbox.customer_id)
    WHERE kind <> 'acceptance-confirmation'"""
ACCEPTANCE_PARTNER = """UPDATE agreement_acceptances SET partner_id = CASE
    WHEN method = 'attested' THEN (SELECT p.id FROM partners p WHERE p.id = recorded_by)
    ELSE (SELECT c.partner_id FROM customers c WHERE c.id = agreement_acceptances.customer_id)
    END"""
# Attestations recorded in a dashboard user's name: the partner comes from the event.
ATTESTING_PARTNER = """UPDATE agreement_acceptances SET partner_id = (
    SELECT c.partner_id FROM customers c WHERE c.id = agreement_acceptances.customer_id)
    WHERE partner_id IS NULL"""

COPY_BACK = """UPDATE customers SET
    progress = (SELECT r.progress FROM customer_relationships r
                WHERE r.customer_id = customers.id AND r.partner_id = customers.partner_id),
    progress_at = (SELECT r.progress_at FROM customer_relationships r
                   WHERE r.customer_id = customers.id AND r.partner_id = customers.partner_id),
    invitation_expires_at = (SELECT r.invitation_expires_at FROM customer_relationships r
                             WHERE r.customer_id = customers.id
                             AND r.partner_id = customers.partner_id)"""


def upgrade() -> None:
    with op.batch_alter_table("customer_relationships", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("progress", PROGRESS, nullable=False, server_default="not-invited")
        )
        batch_op.add_column(sa.Column("progress_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("invitation_expires_at", sa.DateTime(), nullable=True))
        batch_op.drop_index("ix_customer_relationships_partner")
    op.execute(COPY_PROGRESS)
    op.execute("UPDATE customer_relationships SET progress_at = began_at WHERE progress_at IS NULL")
    with op.batch_alter_table("customer_relationships", schema=None) as batch_op:
        batch_op.alter_column("progress_at", existing_type=sa.DateTime(), nullable=False)
    op.create_index(
        "ix_customer_relationships_page",
        "customer_relationships",
        ["partner_id", "state", "began_at", "customer_id"],
    )
    op.create_index(
        "ix_customer_relationships_progress",
        "customer_relationships",
        ["partner_id", "state", "progress", "began_at", "customer_id"],
        postgresql_include=["invitation_expires_at"],
    )

    op.drop_index("ix_customers_partner_page", table_name="customers")
    op.drop_index("ix_customers_partner_progress", table_name="customers")
    # Not in a batch: on SQLite that would copy the table, and dropping the old one fails while
    # rows of other tables refer to it. SQLite (3.35 and later) drops a column in place.
    for column in ("invitation_expires_at", "progress_at", "progress"):
        op.drop_column("customers", column)

    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("partner_id", sa.String(length=36), nullable=True))
    op.execute(OUTBOX_PARTNER)
    with op.batch_alter_table("agreement_acceptances", schema=None) as batch_op:
        batch_op.add_column(sa.Column("partner_id", sa.String(length=36), nullable=True))
    op.execute(ACCEPTANCE_PARTNER)
    op.execute(ATTESTING_PARTNER)


def downgrade() -> None:
    with op.batch_alter_table("agreement_acceptances", schema=None) as batch_op:
        batch_op.drop_column("partner_id")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("partner_id")

    op.add_column(
        "customers",
        sa.Column("progress", PROGRESS, nullable=False, server_default="not-invited"),
    )
    op.add_column("customers", sa.Column("progress_at", sa.DateTime(), nullable=True))
    op.add_column("customers", sa.Column("invitation_expires_at", sa.DateTime(), nullable=True))
    op.execute(COPY_BACK)
    op.execute("UPDATE customers SET progress_at = created_at WHERE progress_at IS NULL")
    if op.get_bind().dialect.name != "sqlite":  # SQLite would copy the table (see upgrade)
        op.alter_column("customers", "progress_at", existing_type=sa.DateTime(), nullable=False)
    op.create_index("ix_customers_partner_page", "customers", ["partner_id", "created_at", "id"])
    op.create_index(
        "ix_customers_partner_progress",
        "customers",
        ["partner_id", "progress", "created_at", "id"],
        postgresql_include=["invitation_expires_at"],
    )

    op.drop_index("ix_customer_relationships_progress", table_name="customer_relationships")
    op.drop_index("ix_customer_relationships_page", table_name="customer_relationships")
    with op.batch_alter_table("customer_relationships", schema=None) as batch_op:
        batch_op.drop_column("invitation_expires_at")
        batch_op.drop_column("progress_at")
        batch_op.drop_column("progress")
        batch_op.create_index(
            "ix_customer_relationships_partner", ["partner_id", "state"], unique=False
        )
