"""The schema made by the migrations matches the models; the event log is append-only."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from portal.core import db, fastsql
from portal.core.models import Base, in_schema_of
from portal.domain import events


def test_migrations_match_the_models(app):
    with app.app_context(), db.engine().connect() as connection:
        include = in_schema_of(connection.dialect.name)
        context = MigrationContext.configure(
            connection, opts={"compare_type": False, "include_object": include}
        )
        assert compare_metadata(context, Base.metadata) == []
        assert not db.pending_migrations(db.engine())


@pytest.mark.parametrize("statement", ["UPDATE events SET kind = 'forged'", "DELETE FROM events"])
def test_event_log_refuses_changes(app, statement):
    with app.app_context():
        session = db.session()
        events.record(session, "test.happened", actor="test")
        session.commit()
        with pytest.raises(DBAPIError, match="append-only"):
            session.execute(text(statement))
        session.rollback()
        assert list(session.scalars(text("SELECT kind FROM events"))) == ["test.happened"]


# --- rows written at once (fastsql.insert_now) ---------------------------------------------


def test_insert_now_writes_defaults_and_links_and_leaves_the_objects_as_if_loaded(app):
    from sqlalchemy import select

    from portal.core.models import (
        Customer,
        Event,
        Invitation,
        PartnerKind,
        Progress,
        new_id,
        utcnow,
    )
    from portal.domain import partners

    with app.app_context():
        session = db.session()
        partner = partners.create_partner(session, "Fabrikam", PartnerKind.DIRECT)
        session.commit()
        customer = _new_customer(partner)  # the foreign key comes from the link
        now = utcnow()
        invitation = Invitation(
            id=new_id(),
            customer=customer,
            nonce="n-1",
            expires_at=now,
            language="en",
            recipient="buyer@contoso.example.test",
            subject="Hello",
        )
        event = Event(kind="test.happened", actor="test")
        fastsql.insert_now(session, customer, invitation, event)
        # Defaults are on the objects as written; nothing is left to load or to insert again.
        assert customer.partner_id == partner.id
        assert invitation.customer_id == customer.id
        assert customer.progress is Progress.NOT_INVITED
        assert customer.address_line1 == ""
        assert invitation.revoked_at is None
        assert isinstance(event.id, int)
        assert customer in session
        assert not session.new
        customer.company_name = "Contoso Ltd"  # a later change is an UPDATE at flush
        session.commit()

        session.expire_all()
        stored = session.scalars(select(Customer).where(Customer.id == customer.id)).one()
        assert stored.company_name == "Contoso Ltd"
        assert stored.partner_id == partner.id
        assert stored.created_at == customer.created_at
        assert stored.progress is Progress.NOT_INVITED
        stored_invitation = session.get_one(Invitation, invitation.id)
        assert stored_invitation.customer_id == customer.id
        assert stored_invitation.include_credentials is True
        assert session.get_one(Event, event.id).kind == "test.happened"


def test_insert_now_refuses_an_object_already_in_the_session(app):
    from portal.core.models import Event

    with app.app_context():
        session = db.session()
        event = Event(kind="test.happened", actor="test")
        session.add(event)
        with pytest.raises(ValueError, match="already in a session"):
            fastsql.insert_now(session, event)
        session.rollback()


def test_compiled_write_updates_as_guarded_and_is_seen_by_engine_events(app):
    """Typed values (a time zone aware date, an enum, a boolean) are stored and read back, the
    WHERE clause guards as written, and the statement passes through the engine's events (so
    ``DATABASE_ECHO`` shows it)."""
    from datetime import UTC, datetime

    from sqlalchemy import bindparam, event, select, update

    from portal.core.models import Customer, Progress

    guarded = fastsql.CompiledWrite(
        update(Customer)
        .where(Customer.id == bindparam("customer_id"), Customer.progress == Progress.NOT_INVITED)
        .values(
            progress=Progress.INVITED,
            progress_at=bindparam("at"),
            requires_secrecy_amendment=bindparam("secrecy"),
        )
    )
    seen: list[str] = []
    with app.app_context():
        session = db.session()
        customer = _stored_customer(session)
        at = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
        listener = lambda *args: seen.append(args[2])  # noqa: E731 - statement is the 3rd
        event.listen(db.engine(), "before_cursor_execute", listener)
        try:
            params = {"customer_id": customer.id, "at": at, "secrecy": True}
            guarded.run(session.connection(), params)
            later = {"customer_id": customer.id, "at": datetime(2027, 1, 1, tzinfo=UTC)}
            guarded.run(session.connection(), {**later, "secrecy": False})  # guard: no row
        finally:
            event.remove(db.engine(), "before_cursor_execute", listener)
        session.commit()
        session.expire_all()
        stored = session.scalars(select(Customer).where(Customer.id == customer.id)).one()
        assert stored.progress is Progress.INVITED
        assert stored.progress_at == at
        assert stored.requires_secrecy_amendment is True
        assert sum(s.startswith("UPDATE customers") for s in seen) == 2


def _new_customer(partner):
    """A new customer, linked to ``partner`` by the relationship only."""
    from portal.core.models import Customer, new_id

    return Customer(
        id=new_id(),
        partner=partner,
        company_name="Contoso",
        domain="contoso.example.test",
        email="buyer@contoso.example.test",
        culture="en-US",
        language="en",
        country="US",
        contact_first_name="Tania",
        contact_last_name="Carr",
        contact_email="buyer@contoso.example.test",
    )


def _stored_customer(session):
    from portal.core.models import PartnerKind
    from portal.domain import partners

    customer = _new_customer(partners.create_partner(session, "Fabrikam", PartnerKind.DIRECT))
    fastsql.insert_now(session, customer)
    session.commit()
    return customer
