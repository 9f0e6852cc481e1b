"""A page that only notes something by the way still answers when SQLite is busy writing."""

from __future__ import annotations

import sqlite3
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from portal.core import db
from portal.core.models import Invitation, Progress
from tests.conftest import relationship_of


def test_link_opens_while_another_process_holds_the_write_lock(
    app: Any, api: Any, client: Any, database_url: str
) -> None:
    if not database_url.startswith("sqlite:///"):
        pytest.skip("SQLite's single writer; PostgreSQL writers do not block readers")
    customer = api.create_customer(company_name="Busy Co")
    made = api.post(f"/v1/customers/{customer['id']}/invitations", json={}).get_json()
    other = sqlite3.connect(database_url.removeprefix("sqlite:///"), timeout=1)
    other.execute("BEGIN IMMEDIATE")  # another process is writing, for longer than a page waits
    try:
        page = client.get(urlsplit(made["url"]).path)
    finally:
        other.rollback()
        other.close()
    assert page.status_code == 200
    assert "Busy Co" in page.get_data(as_text=True)
    # The opening could not be noted, and nothing half-written remains; the next one is noted.
    with app.app_context():
        invitation = db.session().scalars(select(Invitation)).one()
        assert invitation.opened_at is None
        assert relationship_of(customer["id"]).progress is Progress.INVITED
    client.get(urlsplit(made["url"]).path)
    with app.app_context():
        assert relationship_of(customer["id"]).progress is Progress.OPENED
