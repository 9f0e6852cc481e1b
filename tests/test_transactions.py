"""A view marked ``db.reads_first`` cannot write before its first commit, on either database:
its first transaction is read-only; the one after that writes."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from portal.core import db
from portal.core.models import PartnerKind
from portal.domain import partners


@pytest.fixture
def routed(app: Flask) -> Flask:
    """The app with two test views: one that writes before committing, one after."""
    outcome: dict[str, Any] = {}
    app.config["outcome"] = outcome

    def rename(name: str) -> None:
        db.session().execute(text("UPDATE partners SET name = :name"), {"name": name})

    @db.reads_first
    def too_early() -> str:
        partners.list_partners(db.session())
        try:
            rename("Early")
        except DBAPIError as exc:
            outcome["refused"] = str(exc.orig)
            db.session().rollback()
        return "done"

    @db.reads_first
    def in_turn() -> str:
        partners.list_partners(db.session())
        db.session().commit()  # the reads are over
        rename("In turn")
        db.session().commit()
        return "done"

    app.add_url_rule("/test/too-early", view_func=too_early, methods=["POST"])
    app.add_url_rule("/test/in-turn", view_func=in_turn, methods=["POST"])
    app.config["WTF_CSRF_ENABLED"] = False
    with app.app_context():
        partners.create_partner(db.session(), "Fabrikam", PartnerKind.DIRECT)
        db.session().commit()
    return app


def _name(app: Flask) -> str:
    with app.app_context():
        return str(db.session().scalar(text("SELECT name FROM partners")))


def test_a_write_before_the_first_commit_is_refused_and_changes_nothing(routed):
    assert routed.test_client().post("/test/too-early").status_code == 200
    refused = routed.config["outcome"]["refused"]
    assert "readonly" in refused or "read-only" in refused
    assert _name(routed) == "Fabrikam"


def test_after_the_first_commit_the_view_writes(routed):
    assert routed.test_client().post("/test/in-turn").status_code == 200
    assert _name(routed) == "In turn"
    # The read-only setting went with the transaction: the pool's connections write again.
    with routed.app_context():
        db.session().execute(text("UPDATE partners SET name = 'Again'"))
        db.session().commit()
    assert _name(routed) == "Again"
