"""The schema made by the migrations matches the models; the event log is append-only."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from portal.core import db
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
