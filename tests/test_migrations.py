"""Migrations that change data keep every row, each way, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import text

from portal.core import db


@pytest.fixture
def database_url(empty_database: str) -> str:
    """A database of this test alone (not the run's template), so it can be taken back."""
    engine = db.make_engine(empty_database)
    db.upgrade(engine)
    engine.dispose()
    return empty_database


def _progress(url: str) -> dict[str, str]:
    engine = db.make_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT domain, progress FROM customers"))
        found = {domain: progress for domain, progress in rows}
    engine.dispose()
    return found


def _relationship_progress(url: str) -> dict[str, str]:
    engine = db.make_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT c.domain, r.progress FROM customers c"
                " JOIN customer_relationships r ON r.customer_id = c.id"
            )
        )
        found = {domain: progress for domain, progress in rows}
    engine.dispose()
    return found


def _migrate(url: str, revision: str) -> None:
    engine = db.make_engine(url)
    if revision == "head":
        db.upgrade(engine)
    else:
        command.downgrade(db.alembic_config(engine), revision)
    engine.dispose()


def test_0008_names_an_opened_link_as_the_api_does(app, api, database_url):
    opened = api.create_customer(domain="opened.example.test")
    invited = api.create_customer(domain="invited.example.test")
    api.post(f"/v1/customers/{invited['id']}/invitations", json={})
    with app.app_context():
        session = db.session()
        session.execute(
            text(
                "UPDATE customer_relationships SET progress = 'link-opened' WHERE customer_id = :id"
            ),
            {"id": opened["id"]},
        )
        session.commit()
        db.engine().dispose()
    before = _relationship_progress(database_url)
    assert before == {"opened.example.test": "link-opened", "invited.example.test": "invited"}

    _migrate(database_url, "0009")  # the progress back on the customers (0010 taken back)
    assert _progress(database_url) == before
    _migrate(database_url, "0007")
    assert _progress(database_url) == {**before, "opened.example.test": "opened"}

    _migrate(database_url, "head")
    assert _relationship_progress(database_url) == before
