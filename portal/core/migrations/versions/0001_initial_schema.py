"""initial schema

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("occurred_at", sa.DateTime(), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("partner_id", sa.String(length=36), nullable=True),
        sa.Column("customer_id", sa.String(length=36), nullable=True),
        sa.Column("actor", sa.String(length=300), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_customer", ["customer_id", "id"], unique=False)

    op.create_table(
        "partners",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "direct",
                "indirect-provider",
                "indirect-reseller",
                name="partnerkind",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("provider_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["provider_id"], ["partners.id"], name=op.f("fk_partners_provider_id_partners")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_partners")),
    )
    with op.batch_alter_table("partners", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_partners_provider_id"), ["provider_id"], unique=False)

    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("partner_id", sa.String(length=36), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name=op.f("fk_api_keys_partner_id_partners")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_keys_partner_id"), ["partner_id"], unique=False)

    op.create_table(
        "customers",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("partner_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("company_name", sa.String(length=200), nullable=False),
        sa.Column("domain", sa.String(length=253), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("culture", sa.String(length=35), nullable=False),
        sa.Column("language", sa.String(length=35), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("address_first_name", sa.String(length=100), nullable=False),
        sa.Column("address_last_name", sa.String(length=100), nullable=False),
        sa.Column("address_line1", sa.String(length=200), nullable=False),
        sa.Column("address_line2", sa.String(length=200), nullable=False),
        sa.Column("city", sa.String(length=100), nullable=False),
        sa.Column("state", sa.String(length=100), nullable=False),
        sa.Column("postal_code", sa.String(length=20), nullable=False),
        sa.Column("phone", sa.String(length=40), nullable=False),
        sa.Column("contact_first_name", sa.String(length=100), nullable=False),
        sa.Column("contact_last_name", sa.String(length=100), nullable=False),
        sa.Column("contact_email", sa.String(length=254), nullable=False),
        sa.Column("contact_phone", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name=op.f("fk_customers_partner_id_partners")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
        sa.UniqueConstraint("domain", name=op.f("uq_customers_domain")),
    )
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_customers_created_at"), ["created_at"], unique=False)
        batch_op.create_index(
            "ix_customers_partner_page", ["partner_id", "created_at", "id"], unique=False
        )

    op.create_table(
        "agreement_acceptances",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("customer_id", sa.String(length=36), nullable=False),
        sa.Column("agreement_type", sa.String(length=64), nullable=False),
        sa.Column("template_id", sa.String(length=64), nullable=False),
        sa.Column("version_rank", sa.Integer(), nullable=False),
        sa.Column(
            "method",
            sa.Enum("direct", "attested", name="acceptancemethod", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("dedupe_key", sa.String(length=64), nullable=False),
        sa.Column("first_name", sa.String(length=100), nullable=False),
        sa.Column("last_name", sa.String(length=100), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("phone", sa.String(length=40), nullable=False),
        sa.Column("date_agreed", sa.DateTime(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(), nullable=False),
        sa.Column("recorded_by", sa.String(length=254), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("language", sa.String(length=35), nullable=False),
        sa.Column("document_uri", sa.String(length=500), nullable=False),
        sa.Column("ip_address", sa.String(length=45), nullable=False),
        sa.Column("user_agent", sa.String(length=500), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_agreement_acceptances_customer_id_customers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agreement_acceptances")),
        sa.UniqueConstraint("customer_id", "template_id", "dedupe_key", name="uq_acceptance_once"),
    )
    with op.batch_alter_table("agreement_acceptances", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_agreement_acceptances_customer_id"), ["customer_id"], unique=False
        )

    op.create_table(
        "customer_credentials",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("customer_id", sa.String(length=36), nullable=False),
        sa.Column("user_name", sa.String(length=254), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("temporary", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_customer_credentials_customer_id_customers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_credentials")),
        sa.UniqueConstraint("customer_id", name=op.f("uq_customer_credentials_customer_id")),
        sa.UniqueConstraint("user_name", name=op.f("uq_customer_credentials_user_name")),
    )
    _events_append_only()


def _events_append_only() -> None:
    """The event log is evidence: the database itself refuses to change or delete a row."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'events are append-only'; END $$"
        )
        op.execute(
            "CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events "
            "FOR EACH ROW EXECUTE FUNCTION events_append_only()"
        )
    else:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER events_no_{action.lower()} BEFORE {action} ON events "
                "BEGIN SELECT RAISE(ABORT, 'events are append-only'); END"
            )


def downgrade() -> None:
    op.drop_table("customer_credentials")
    with op.batch_alter_table("agreement_acceptances", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_agreement_acceptances_customer_id"))

    op.drop_table("agreement_acceptances")
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_index("ix_customers_partner_page")
        batch_op.drop_index(batch_op.f("ix_customers_created_at"))

    op.drop_table("customers")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_keys_partner_id"))

    op.drop_table("api_keys")
    with op.batch_alter_table("partners", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_partners_provider_id"))

    op.drop_table("partners")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_customer")

    op.drop_table("events")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION events_append_only()")
