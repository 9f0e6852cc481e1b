"""``portal backup`` and ``portal restore``: the embedded SQLite database copied while the portal
writes, and put back, checked first."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from portal import create_app
from portal.cli import main
from portal.core import db
from portal.core.models import Customer, CustomerRelationship, PartnerKind
from portal.domain import partners
from tests.conftest import SECRET, customer_body


@pytest.fixture
def sqlite_env(tmp_path: Path) -> dict[str, str]:
    """A SQLite portal whatever database the suite runs on (these commands are SQLite's)."""
    url = f"sqlite:///{tmp_path / 'live.db'}"
    engine = db.make_engine(url)
    db.upgrade(engine)
    engine.dispose()
    return {"PORTAL_SECRET_KEY": SECRET, "PORTAL_DATABASE_URL": url}


@pytest.fixture
def portal(sqlite_env: dict[str, str]) -> Any:
    app = create_app({"SECRET_KEY": SECRET, "DATABASE_URL": sqlite_env["PORTAL_DATABASE_URL"]})
    with app.app_context():
        session = db.session()
        partner = partners.create_partner(session, "Fabrikam", PartnerKind.DIRECT, None)
        key = partners.create_key(session, partner).secret
        session.commit()
    client = app.test_client()

    def create(n: int = 1) -> None:
        for _ in range(n):
            made = client.post(
                "/v1/customers", json=customer_body(), headers={"Authorization": f"Bearer {key}"}
            )
            assert made.status_code == 201, made.get_json()

    def count() -> int:
        with app.app_context():
            return int(db.session().scalar(select(func.count()).select_from(Customer)) or 0)

    app.create_customers = create  # type: ignore[attr-defined]
    app.count_customers = count  # type: ignore[attr-defined]
    return app


def run(env: dict[str, str], *args: str) -> Any:
    return CliRunner(env=env).invoke(main, list(args), catch_exceptions=False)


def test_restore_puts_back_what_the_backup_holds(portal, sqlite_env, tmp_path):
    portal.create_customers(3)
    saved = run(sqlite_env, "backup", str(tmp_path / "portal.backup"))
    assert saved.exit_code == 0, saved.output
    assert "backed up to" in saved.output
    assert not list(tmp_path.glob("*.partial"))
    portal.create_customers(2)
    assert portal.count_customers() == 5

    restored = run(sqlite_env, "restore", str(tmp_path / "portal.backup"), "--yes")
    assert restored.exit_code == 0, restored.output
    assert portal.count_customers() == 3
    portal.create_customers(1)  # the restored database takes writes again
    assert portal.count_customers() == 4


def test_restore_asks_first(portal, sqlite_env, tmp_path):
    portal.create_customers(1)
    run(sqlite_env, "backup", str(tmp_path / "b.db"))
    portal.create_customers(1)
    answer = CliRunner(env=sqlite_env).invoke(
        main, ["restore", str(tmp_path / "b.db")], input="n\n"
    )
    assert answer.exit_code == 1
    assert "Aborted" in answer.output
    assert portal.count_customers() == 2


def test_a_backup_taken_while_the_portal_writes_is_consistent(portal, sqlite_env, tmp_path):
    """Customers are created without pause while three backups are taken: each copy passes
    SQLite's integrity check, and every customer in it has its relationship (one snapshot,
    never half a request)."""
    portal.create_customers(1)
    stop = threading.Event()

    def write() -> None:
        while not stop.is_set():
            portal.create_customers(1)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        for n in range(3):
            result = run(sqlite_env, "backup", str(tmp_path / f"b{n}.db"))
            assert result.exit_code == 0, result.output
    finally:
        stop.set()
        writer.join()
    for n in range(3):
        copy = sqlite3.connect(tmp_path / f"b{n}.db")
        assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        customers = copy.execute("SELECT count(*) FROM customers").fetchone()[0]
        related = copy.execute(
            "SELECT count(DISTINCT customer_id) FROM customer_relationships"
        ).fetchone()[0]
        assert customers == related >= 1
        copy.close()
    assert not (tmp_path / "b0.db-wal").exists()  # one file


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda path: path.write_bytes(b"not a database at all" * 100), "not a portal backup"),
        (
            lambda path: sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.close(),
            "no portal tables",
        ),
        (lambda path: None, "is not a file"),
    ],
)
def test_restore_refuses_what_is_not_a_portal_backup(portal, sqlite_env, tmp_path, make, words):
    portal.create_customers(2)
    source = tmp_path / "other.db"
    make(source)
    result = run(sqlite_env, "restore", str(source), "--yes")
    assert result.exit_code == 1
    assert words in result.output
    assert portal.count_customers() == 2  # nothing changed


def test_restore_refuses_a_backup_of_a_newer_schema(portal, sqlite_env, tmp_path):
    portal.create_customers(1)
    run(sqlite_env, "backup", str(tmp_path / "b.db"))
    copy = sqlite3.connect(tmp_path / "b.db")
    copy.execute("UPDATE alembic_version SET version_num = '9999'")
    copy.commit()
    copy.close()
    portal.create_customers(1)
    result = run(sqlite_env, "restore", str(tmp_path / "b.db"), "--yes")
    assert result.exit_code == 1
    assert "newer portal" in result.output
    assert portal.count_customers() == 2


def test_postgresql_is_backed_up_with_its_own_tools(tmp_path):
    env = {
        "PORTAL_SECRET_KEY": SECRET,
        "PORTAL_DATABASE_URL": "postgresql://root@127.0.0.1:5432/test",
    }
    result = run(env, "backup", str(tmp_path / "b.db"))
    assert result.exit_code == 1
    assert "pg_dump" in result.output
    assert not (tmp_path / "b.db").exists()


def test_relationships_survive_the_round_trip(portal, sqlite_env, tmp_path):
    portal.create_customers(2)
    run(sqlite_env, "backup", str(tmp_path / "b.db"))
    run(sqlite_env, "restore", str(tmp_path / "b.db"), "--yes")
    with portal.app_context():
        relationships = db.session().scalar(select(func.count()).select_from(CustomerRelationship))
    assert relationships == 2
