"""customer relationships: partners serve customers through relationships

Revision ID: 0009
Revises: 0008

A customer exists once; a partner serves it through a relationship (``customer_relationships``:
which partner, reseller or indirect reseller with its provider, active or removed, how and when it
began). Every existing customer gets the relationship of the partner that created it (its
``customers.partner_id``), began when the customer was created: no row is lost, and each partner
keeps exactly the customers it had.
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

BACKFILL = """
INSERT INTO customer_relationships
    (customer_id, partner_id, kind, provider_id, state, origin, began_at, accepted_by,
     removed_by)
SELECT c.id, c.partner_id,
       CASE WHEN p.kind = 'indirect-reseller' THEN 'indirect-reseller' ELSE 'reseller' END,
       CASE WHEN p.kind = 'indirect-reseller' THEN p.provider_id END,
       'active', 'created', c.created_at, '', ''
FROM customers c JOIN partners p ON p.id = c.partner_id
"""


def upgrade() -> None:
    op.create_table(
        "customer_relationships",
        sa.Column("customer_id", sa.String(length=36), nullable=False),
        sa.Column("partner_id", sa.String(length=36), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "reseller",
                "indirect-reseller",
                name="relationshipkind",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("provider_id", sa.String(length=36), nullable=True),
        sa.Column(
            "state",
            sa.Enum("active", "removed", name="relationshipstate", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column(
            "origin",
            sa.Enum("created", "request", name="relationshiporigin", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("began_at", sa.DateTime(), nullable=False),
        sa.Column("accepted_by", sa.String(length=254), nullable=False),
        sa.Column("removed_at", sa.DateTime(), nullable=True),
        sa.Column("removed_by", sa.String(length=300), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_customer_relationships_customer_id_customers"),
        ),
        sa.ForeignKeyConstraint(
            ["partner_id"],
            ["partners.id"],
            name=op.f("fk_customer_relationships_partner_id_partners"),
        ),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["partners.id"],
            name=op.f("fk_customer_relationships_provider_id_partners"),
        ),
        sa.PrimaryKeyConstraint(
            "customer_id", "partner_id", name=op.f("pk_customer_relationships")
        ),
    )
    with op.batch_alter_table("customer_relationships", schema=None) as batch_op:
        batch_op.create_index(
            "ix_customer_relationships_partner", ["partner_id", "state"], unique=False
        )
        batch_op.create_index(
            "ix_customer_relationships_provider", ["provider_id", "state"], unique=False
        )
    op.execute(BACKFILL)


def downgrade() -> None:
    # customers.partner_id still names each customer's creator: nothing else to restore.
    with op.batch_alter_table("customer_relationships", schema=None) as batch_op:
        batch_op.drop_index("ix_customer_relationships_provider")
        batch_op.drop_index("ix_customer_relationships_partner")
    op.drop_table("customer_relationships")
