"""Fixtures: a migrated database per test (SQLite, or PostgreSQL when PORTAL_TEST_DATABASE_URL is
set), the app, its clients, and factories for partners, keys and customers."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

from portal import LOCALES, create_app
from portal.core import db
from portal.core.config import normalise_database_url
from portal.core.models import Base, PartnerKind
from portal.domain import partners
from portal.i18n import files, tooling

SECRET = "test-secret-key-" + "x" * 40
PG_URL = os.environ.get("PORTAL_TEST_DATABASE_URL")


def _pg_url_with_schema(url: str, schema: str) -> str:
    sep = "&" if "?" in url else "?"
    # The application name lets a test find (and drop) this run's connections only.
    options = quote(f"-csearch_path={schema}")
    return f"{normalise_database_url(url)}{sep}options={options}&application_name={schema}"


@contextmanager
def postgresql_schema(url: str, prefix: str, migrated: bool = True) -> Iterator[str]:
    """A schema of its own in the PostgreSQL database ``url`` names (migrated, unless told
    not), as a URL; dropped afterwards."""
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = db.make_engine(normalise_database_url(url))
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    schema_url = _pg_url_with_schema(url, schema)
    try:
        if migrated:
            engine = db.make_engine(schema_url)
            db.upgrade(engine)
            engine.dispose()
        yield schema_url
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(scope="session")
def database_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated database: a SQLite file to copy, or a PostgreSQL schema of this run."""
    if PG_URL:
        with postgresql_schema(PG_URL, "portal_test") as url:
            yield url
    else:
        path = tmp_path_factory.mktemp("template") / "portal.db"
        engine = db.make_engine(f"sqlite:///{path}")
        db.upgrade(engine)
        engine.dispose()
        yield str(path)


@pytest.fixture
def empty_database(tmp_path: Path) -> Iterator[str]:
    """A database with no tables at all, to migrate step by step: a SQLite file, or a PostgreSQL
    schema of its own (dropped afterwards)."""
    if PG_URL:
        with postgresql_schema(PG_URL, "portal_empty", migrated=False) as url:
            yield url
    else:
        yield f"sqlite:///{tmp_path / 'empty.db'}"


@pytest.fixture
def database_url(database_template: str, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated database for one test."""
    if PG_URL:
        engine = db.make_engine(database_template)
        tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
        with engine.begin() as connection:
            connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        engine.dispose()
        yield database_template
    else:
        path = tmp_path / "portal.db"
        shutil.copy(database_template, path)
        yield f"sqlite:///{path}"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests see no PORTAL_* settings of the machine, and an instance folder of their own."""
    for name in list(os.environ):
        if name.startswith("PORTAL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path / "instance"))


@pytest.fixture
def settings(database_url: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    """The app's settings; tests marked ``mail`` also get a real SMTP server (``smtp``)."""
    values: dict[str, Any] = {
        "SECRET_KEY": SECRET,
        "DATABASE_URL": database_url,
        "BASE_URL": "https://portal.example.test",
        "TESTING": True,
    }
    if request.node.get_closest_marker("mail"):
        server = request.getfixturevalue("smtp")
        values.update(
            MAIL_SERVER=server.host,
            MAIL_PORT=server.port,
            MAIL_TIMEOUT=2,
            MAIL_DEFAULT_SENDER="Portal <portal@example.test>",
        )
    return values


@pytest.fixture
def app(settings: dict[str, Any]) -> Iterator[Flask]:
    application = create_app(settings)
    yield application
    with application.app_context():
        db.engine().dispose()


@pytest.fixture
def make_app(settings: dict[str, Any]) -> Iterator[Any]:
    """Another app on the same database, with some settings changed."""
    made: list[Flask] = []

    def make(**changes: Any) -> Flask:
        application = create_app({**settings, **changes})
        made.append(application)
        return application

    yield make
    for application in made:
        with application.app_context():
            db.engine().dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def cli_env(database_url: str) -> dict[str, str]:
    """Environment for running the ``portal`` command against the test database."""
    return {
        "PORTAL_SECRET_KEY": SECRET,
        "PORTAL_DATABASE_URL": database_url,
        "PORTAL_BASE_URL": "https://portal.example.test",
    }


@pytest.fixture
def runner(cli_env: dict[str, str]) -> CliRunner:
    return CliRunner(env=cli_env)


@dataclass
class Api:
    """A partner's view of the API: its id, its key, and calls that carry the key."""

    client: FlaskClient
    partner_id: str
    key: str
    kind: PartnerKind

    def _headers(self, headers: dict[str, str] | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}", **(headers or {})}

    def get(self, path: str, headers: dict[str, str] | None = None, **kw: Any) -> Any:
        return self.client.get(path, headers=self._headers(headers), **kw)

    def post(self, path: str, headers: dict[str, str] | None = None, **kw: Any) -> Any:
        return self.client.post(path, headers=self._headers(headers), **kw)

    def create_customer(self, **changes: Any) -> dict[str, Any]:
        response = self.post("/v1/customers", json=customer_body(**changes))
        assert response.status_code == 201, response.get_json()
        result: dict[str, Any] = response.get_json()
        return result


def relationship_of(customer_id: str, partner_id: str | None = None) -> Any:
    """A customer's relationship with a partner (by default its creator), in the app context."""
    from portal.core.models import Customer, CustomerRelationship

    session = db.session()
    if partner_id is None:
        partner_id = session.get_one(Customer, customer_id).creator_id
    return session.get_one(CustomerRelationship, (customer_id, partner_id))


def customer_body(**changes: Any) -> dict[str, Any]:
    """A Partner Center customer body; keyword arguments replace fields by dotted-free name."""
    values = {
        "domain": f"c{uuid.uuid4().hex[:10]}.example.test",
        "company_name": "Contoso Ltd",
        "email": "billing@contoso.example.test",
        "culture": "en-US",
        "language": "en",
        "country": "US",
        "first_name": "Tania",
        "last_name": "Carr",
        **changes,
    }
    return {
        "companyProfile": {"domain": values["domain"]},
        "billingProfile": {
            "email": values["email"],
            "culture": values["culture"],
            "language": values["language"],
            "companyName": values["company_name"],
            "defaultAddress": {
                "country": values["country"],
                "firstName": values["first_name"],
                "lastName": values["last_name"],
                "addressLine1": "1 Main Street",
                "city": "Redmond",
                "state": "WA",
                "postalCode": "98052",
                "phoneNumber": "1234567890",
            },
        },
    }


@pytest.fixture
def make_api(app: Flask, client: FlaskClient) -> Any:
    """Create a partner (and its key) and return its Api."""

    def make(
        kind: PartnerKind = PartnerKind.DIRECT,
        provider: Api | None = None,
        name: str = "Fabrikam",
        country: str = "US",
    ) -> Api:
        with app.app_context():
            session = db.session()
            partner = partners.create_partner(
                session, name, kind, provider.partner_id if provider else None, country=country
            )
            key = partners.create_key(session, partner)
            session.commit()
            return Api(client, partner.id, key.secret, kind)

    return make


@pytest.fixture
def api(make_api: Any) -> Api:
    """A direct-bill partner."""
    result: Api = make_api()
    return result


@pytest.fixture
def smtp() -> Iterator[Any]:
    """A real SMTP server on loopback (aiosmtpd) that keeps what it receives."""
    from tests.mailservers import smtp_server

    with smtp_server() as server:
        yield server


@pytest.fixture
def locales(tmp_path: Path) -> Path:
    """The project's messages.pot with one German catalog, every string untranslated (the
    shipped translations are left out, so each test controls what is translated)."""
    copy = tmp_path / "locales"
    copy.mkdir()
    shutil.copy(LOCALES / "messages.pot", copy / "messages.pot")
    tooling.init_locale(copy, "de")
    return copy


@pytest.fixture
def german(locales: Path) -> Path:
    return files.po_path(locales, "de")


@pytest.fixture
def serving(cli_env: dict[str, str]) -> Iterator[Any]:
    """Start real ``portal serve`` processes (gunicorn) on this test's database, with some
    settings; ``serve()`` answers the base URL, ``serve.stopped()`` stops them and answers what
    they printed. Each is stopped at the end, and must not have crashed."""
    import subprocess
    import sys

    from tests.test_serve import free_port, stop, wait_for

    started: list[subprocess.Popen[str]] = []

    def serve(workers: int = 2, *, options: tuple[str, ...] = (), **settings: str) -> str:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            **cli_env,
            "PORTAL_BASE_URL": base,
            # Room for every attempt of a test from one address, unless it says otherwise.
            "PORTAL_SIGNIN_LIMIT_ADDRESS": "100 per hour",
            **settings,
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "portal.cli", "serve", "--port", str(port)]
            + ["--workers", str(workers), *options],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        started.append(process)
        wait_for(f"{base}/signin", process)
        return base

    outputs: list[str] = []

    def stopped() -> str:
        """Stop every server started so far; what they printed (access logs included)."""
        while started:
            outputs.append(stop(started.pop(0)))
        return "".join(outputs)

    serve.stopped = stopped  # type: ignore[attr-defined]
    yield serve
    stopped()
    assert not any("Traceback" in output for output in outputs), outputs
