"""Partners serve customers through relationships (issue 16, first step): the migration that
makes one for every existing customer, and the one each new customer begins with."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from alembic import command
from sqlalchemy import select, text

from portal.core import db
from portal.core.models import (
    Customer,
    CustomerRelationship,
    PartnerKind,
    RelationshipKind,
    RelationshipOrigin,
    RelationshipState,
    new_id,
)
from tests.test_pages import accept, change_password, invited, sign_in_from_link

# --- the migration, on a database built at the head before it --------------------------------


def _partner(connection, name: str, kind: PartnerKind, provider_id: str | None = None) -> str:
    partner_id = new_id()
    connection.execute(  # the columns of the schema before 0011 (no country)
        text(
            "INSERT INTO partners (id, name, kind, provider_id, created_at)"
            " VALUES (:id, :name, :kind, :provider_id, :at)"
        ),
        {
            "id": partner_id,
            "name": name,
            "kind": kind.value,
            "provider_id": provider_id,
            "at": datetime(2025, 1, 1),
        },
    )
    return partner_id


#: A customer row as the schema before 0010 had it (with its progress).
OLD_CUSTOMER = text(
    """INSERT INTO customers (id, partner_id, created_at, company_name, domain, email, culture,
    language, country, address_first_name, address_last_name, address_line1, address_line2,
    city, state, postal_code, phone, contact_first_name, contact_last_name, contact_email,
    contact_phone, requires_secrecy_amendment, progress, progress_at, invitation_expires_at)
    VALUES (:id, :partner_id, :created_at, :domain, :domain, :email, 'en-US', 'en', 'US', '', '',
    '', '', '', '', '', '', 'Tania', 'Carr', :email, '', :false, :progress, :progress_at,
    :expires)"""
)


def _customer(
    connection,
    partner_id: str,
    domain: str,
    created_at: datetime,
    progress: str = "not-invited",
    progress_at: datetime | None = None,
    expires: datetime | None = None,
) -> str:
    customer_id = new_id()
    naive = lambda moment: moment and moment.replace(tzinfo=None)  # noqa: E731 - as stored
    connection.execute(
        OLD_CUSTOMER,
        {
            "id": customer_id,
            "partner_id": partner_id,
            "created_at": naive(created_at),
            "domain": domain,
            "email": f"billing@{domain}",
            "false": False,
            "progress": progress,
            "progress_at": naive(progress_at or created_at),
            "expires": naive(expires),
        },
    )
    return customer_id


def test_0009_gives_every_customer_its_creators_relationship(empty_database):
    engine = db.make_engine(empty_database)
    db.upgrade(engine, "0008")
    when = datetime(2025, 5, 4, 3, 2, 1, tzinfo=UTC)
    with engine.begin() as connection:
        direct = _partner(connection, "Direct", PartnerKind.DIRECT)
        provider = _partner(connection, "Provider", PartnerKind.INDIRECT_PROVIDER)
        reseller = _partner(connection, "Reseller", PartnerKind.INDIRECT_RESELLER, provider)
        customers = {
            _customer(connection, direct, "a.example.test", when): (direct, "reseller", None),
            _customer(connection, provider, "b.example.test", when): (provider, "reseller", None),
            _customer(connection, reseller, "c.example.test", when): (
                reseller,
                "indirect-reseller",
                provider,
            ),
        }
    db.upgrade(engine)
    with engine.connect() as connection:
        table = CustomerRelationship.__table__
        rows = connection.execute(
            select(
                table.c.customer_id,
                table.c.partner_id,
                table.c.kind,
                table.c.provider_id,
                table.c.state,
                table.c.origin,
                table.c.began_at,
                table.c.accepted_by,
                table.c.removed_at,
                table.c.removed_by,
            )
        ).all()
        count = connection.scalar(text("SELECT count(*) FROM customers"))
    assert count == 3
    assert {r[0]: (r[1], r[2], r[3]) for r in rows} == customers
    assert len(rows) == 3  # one each, no more
    for row in rows:
        assert row[4:6] == ("active", "created")
        assert row[6] == when
        assert row[7:] == ("", None, "")

    command.downgrade(db.alembic_config(engine), "0008")
    with engine.connect() as connection:
        assert connection.scalar(text("SELECT count(*) FROM customers")) == 3
        names = engine.dialect.get_table_names(connection)
    assert "customer_relationships" not in names
    engine.dispose()


OLD_OUTBOX = text(
    """INSERT INTO outbox (id, kind, customer_id, to_address, subject, text_body, html_body,
    message_id, status, attempts, next_attempt_at, last_error, created_at)
    VALUES (:id, :kind, :customer_id, 'x@example.test', 's', '', '', :id, 'sent', 1, :at, '',
    :at)"""
)
OLD_ACCEPTANCE = text(
    """INSERT INTO agreement_acceptances (id, customer_id, agreement_type, template_id,
    version_rank, method, dedupe_key, first_name, last_name, email, phone, date_agreed,
    recorded_at, recorded_by, country, language, document_uri, ip_address, user_agent)
    VALUES (:id, :customer_id, 'MicrosoftCustomerAgreement', 't', 0, :method, :key, 'A', 'B',
    'a@example.test', '', :at, :at, :by, 'US', 'en-US', '', '192.0.2.1', 'test')"""
)


def _moment(value: datetime | str | None) -> datetime | None:
    """A moment read with plain SQL, as UTC: SQLite gives text, PostgreSQL a datetime."""
    if value is None:
        return None
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def test_0010_moves_progress_to_the_relationships_and_names_whose_dealing_mail_is(
    empty_database,
):
    engine = db.make_engine(empty_database)
    db.upgrade(engine, "0008")
    when = datetime(2025, 5, 4, 3, 2, 1, tzinfo=UTC)
    later = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    naive = later.replace(tzinfo=None)
    with engine.begin() as connection:
        partner = _partner(connection, "Direct", PartnerKind.DIRECT)
        invited = _customer(connection, partner, "a.example.test", when, "invited", later, later)
        accepted = _customer(connection, partner, "b.example.test", when, "accepted", later)
        fresh = _customer(connection, partner, "c.example.test", when)
    db.upgrade(engine, "0009")  # the relationships made by 0009
    with engine.begin() as connection:
        for kind in ("invitation", "acceptance-confirmation"):
            connection.execute(
                OLD_OUTBOX, {"id": new_id(), "kind": kind, "customer_id": invited, "at": naive}
            )
        for method, key, by in (("direct", "direct", "admin@b"), ("attested", "k", partner)):
            values = {"method": method, "key": key, "by": by, "at": naive}
            connection.execute(OLD_ACCEPTANCE, {"id": new_id(), "customer_id": accepted, **values})
    db.upgrade(engine)
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT customer_id, progress, progress_at, invitation_expires_at"
                " FROM customer_relationships"
            )
        ).all()
        mail = dict(connection.execute(text("SELECT kind, partner_id FROM outbox")).all())
        acceptances = connection.execute(
            text("SELECT method, partner_id FROM agreement_acceptances")
        ).all()
    found = {r[0]: (r[1], _moment(r[2]), _moment(r[3])) for r in rows}
    assert found == {
        invited: ("invited", later, later),
        accepted: ("accepted", later, None),
        fresh: ("not-invited", when, None),
    }
    assert mail == {"invitation": partner, "acceptance-confirmation": None}
    assert sorted(acceptances) == [("attested", partner), ("direct", partner)]

    command.downgrade(db.alembic_config(engine), "0009")
    with engine.connect() as connection:
        back = connection.execute(
            text("SELECT id, progress, progress_at, invitation_expires_at FROM customers")
        ).all()
    assert {r[0]: (r[1], _moment(r[2]), _moment(r[3])) for r in back} == found
    engine.dispose()


# --- a new customer's relationship -------------------------------------------------------------


def _relationships(app) -> list[CustomerRelationship]:
    with app.app_context():
        session = db.session()
        found = list(session.scalars(select(CustomerRelationship)))
        session.expunge_all()
        return found


def test_a_created_customer_begins_its_creators_relationship(app, api):
    before = datetime.now(UTC)
    made = api.create_customer()
    (relationship,) = _relationships(app)
    assert (relationship.customer_id, relationship.partner_id) == (made["id"], api.partner_id)
    assert relationship.kind is RelationshipKind.RESELLER
    assert relationship.provider_id is None
    assert relationship.state is RelationshipState.ACTIVE
    assert relationship.origin is RelationshipOrigin.CREATED
    assert relationship.accepted_by == ""
    assert relationship.removed_at is None
    assert before <= relationship.began_at <= datetime.now(UTC)
    with app.app_context():
        created_at = db.session().get_one(Customer, made["id"]).created_at
    assert relationship.began_at == created_at


def test_an_indirect_resellers_customer_names_its_provider(app, make_api):
    provider = make_api(PartnerKind.INDIRECT_PROVIDER, name="Provider")
    reseller = make_api(PartnerKind.INDIRECT_RESELLER, provider=provider, name="Reseller")
    made = reseller.create_customer()
    (relationship,) = _relationships(app)
    assert (relationship.customer_id, relationship.partner_id) == (made["id"], reseller.partner_id)
    assert relationship.kind is RelationshipKind.INDIRECT_RESELLER
    assert relationship.provider_id == provider.partner_id


# --- the customer's own account ----------------------------------------------------------------


def _add_requested(app, customer_id: str, partner_id: str, **changes) -> None:
    """A relationship the customer accepted by request (until the portal makes them itself)."""
    with app.app_context():
        session = db.session()
        session.add(
            CustomerRelationship(
                customer_id=customer_id,
                partner_id=partner_id,
                kind=RelationshipKind.RESELLER,
                origin=RelationshipOrigin.REQUEST,
                accepted_by="admin",
                **changes,
            )
        )
        session.commit()


def _accepted_account(api, client, **changes) -> str:
    customer, made = invited(api, **changes)
    sign_in_from_link(client, made)
    change_password(client)
    assert accept(client).status_code == 302
    return str(customer["id"])


def test_the_account_lists_the_customers_partners_and_not_removed_ones(app, make_api, client):
    provider = make_api(PartnerKind.INDIRECT_PROVIDER, name="Northwind Distribution")
    reseller = make_api(PartnerKind.INDIRECT_RESELLER, provider=provider, name="Fabrikam IT")
    customer_id = _accepted_account(reseller, client)
    page = client.get("/account").get_data(as_text=True)
    assert "Your partners" in page
    assert "Fabrikam IT, indirect reseller through Northwind Distribution, since" in page

    direct = make_api(name="Contoso Partners")
    _add_requested(app, customer_id, direct.partner_id)
    page = client.get("/account").get_data(as_text=True)
    assert "Contoso Partners, reseller, since" in page
    assert page.index("Fabrikam IT") < page.index("Contoso Partners")  # oldest first

    with app.app_context():
        session = db.session()
        found = session.get_one(CustomerRelationship, (customer_id, direct.partner_id))
        found.state = RelationshipState.REMOVED
        session.commit()
    page = client.get("/account").get_data(as_text=True)
    assert "Contoso Partners" not in page
    assert "Fabrikam IT" in page


def test_the_partners_are_listed_in_the_customers_language_and_time_zone(
    app, api, make_api, client
):
    customer_id = _accepted_account(api, client, culture="de-DE", language="de", country="DE")
    page = client.get("/account").get_data(as_text=True)
    assert "Ihre Partner" in page
    assert "Fabrikam, Reseller, seit" in page
    other = make_api(name="Contoso Partner")
    # Late on 4 May in UTC: already 5 May in Berlin, where the customer reads it.
    _add_requested(
        app, customer_id, other.partner_id, began_at=datetime(2025, 5, 4, 23, 30, tzinfo=UTC)
    )
    page = client.get("/account").get_data(as_text=True)
    assert "Contoso Partner, Reseller, seit 5. Mai 2025" in page


# --- the command line --------------------------------------------------------------------------


def test_relationships_list_on_the_command_line(runner, make_api):
    from portal.cli import main

    provider = make_api(PartnerKind.INDIRECT_PROVIDER, name="Northwind Distribution")
    reseller = make_api(PartnerKind.INDIRECT_RESELLER, provider=provider, name="Fabrikam IT")
    direct = make_api(name="Contoso Partners")
    through_reseller = reseller.create_customer()
    own = direct.create_customer()

    def listed(*args: str) -> list[dict]:
        result = runner.invoke(main, ["relationships", "list", *args, "--json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.output)["items"]

    everything = listed()
    assert [(r["customerId"], r["partnerName"]) for r in everything] == [
        (through_reseller["id"], "Fabrikam IT"),
        (own["id"], "Contoso Partners"),
    ]
    first = everything[0]
    assert (first["kind"], first["providerId"], first["state"], first["origin"]) == (
        "indirect-reseller",
        provider.partner_id,
        "active",
        "created",
    )
    assert first["beganAt"].endswith("Z")
    assert first["acceptedBy"] is None
    # A provider's list holds its resellers' customers; a customer's, its partners.
    assert [r["customerId"] for r in listed("--partner", provider.partner_id)] == [
        through_reseller["id"]
    ]
    assert [r["partnerId"] for r in listed("--customer", own["id"])] == [direct.partner_id]
    assert listed("--partner", "00000000-0000-0000-0000-000000000000") == []
    plain = runner.invoke(main, ["relationships", "list", "--customer", own["id"]])
    assert "Contoso Partners" in plain.output
    assert "active" in plain.output
