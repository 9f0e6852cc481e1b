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


def test_0008_names_an_opened_link_as_the_api_does(app, api, database_url):
    opened = api.create_customer(domain="opened.example.test")
    api.create_customer(domain="invited.example.test")
    with app.app_context():
        session = db.session()
        session.execute(
            text("UPDATE customers SET progress = 'link-opened' WHERE id = :id"),
            {"id": opened["id"]},
        )
        session.commit()
        db.engine().dispose()
    before = _progress(database_url)

    engine = db.make_engine(database_url)
    command.downgrade(db.alembic_config(engine), "0007")
    engine.dispose()
    assert _progress(database_url) == {**before, "opened.example.test": "opened"}

    engine = db.make_engine(database_url)
    db.upgrade(engine)
    engine.dispose()
    assert _progress(database_url) == before
    assert before["opened.example.test"] == "link-opened"
