"""Production's shape, for real: two ``portal serve`` processes of two workers each and two
senders (``portal mail send --watch``), sharing one PostgreSQL and one Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from sqlalchemy import select, text

from portal.core import db
from portal.core.config import normalise_database_url
from portal.core.models import DeliveryStatus, OutboxMessage
from tests import test_ratelimit
from tests.conftest import PG_URL, customer_body, postgresql_schema
from tests.test_ratelimit import REDIS_URL, check_limit_holds

pytestmark = pytest.mark.slow
#: test_ratelimit's fixtures: accounts to sign in with, and a Redis key prefix of the test's own.
accounts = test_ratelimit.accounts
redis_prefix = test_ratelimit.redis_prefix

#: Production's database, whichever the rest of the suite runs on.
POSTGRESQL = PG_URL or "postgresql://root@127.0.0.1:5432/test"
INVITATIONS = 40


@pytest.fixture
def database_url() -> Iterator[str]:
    """A PostgreSQL schema of this test's own, migrated (this module's tests need PostgreSQL,
    whichever database the suite runs on)."""
    with postgresql_schema(POSTGRESQL, "portal_production") as url:
        yield url


@pytest.fixture
def senders(cli_env: dict[str, str]) -> Iterator[Any]:
    """``start(**settings)`` runs a ``portal mail send --watch``; all are stopped (SIGTERM) at
    the end and must not have crashed."""
    started: list[subprocess.Popen[str]] = []

    def start(**settings: str) -> None:
        started.append(
            subprocess.Popen(
                [sys.executable, "-m", "portal.cli", "mail", "send", "--watch"],
                env={**os.environ, **cli_env, **settings},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )

    yield start
    outputs = []
    for process in started:
        process.terminate()
        outputs.append(process.communicate(timeout=30)[0])
        assert process.returncode == 0, outputs[-1]
    assert not any("Traceback" in output for output in outputs), outputs


def test_two_servers_and_two_senders_share_postgresql_and_redis(
    app,
    api,
    serving,
    senders,
    smtp,
    accounts,
    redis_prefix,
):
    settings = {
        "PORTAL_REDIS_URL": REDIS_URL,
        "PORTAL_RATELIMIT_KEY_PREFIX": redis_prefix,
        "PORTAL_MAIL_SERVER": "127.0.0.1",
        "PORTAL_MAIL_PORT": str(smtp.port),
        "PORTAL_MAIL_SEND_INTERVAL": "0.2",
    }
    bases = [serving(2, options=("--no-delivery",), **settings) for _ in range(2)]
    senders(**settings)
    senders(**settings)

    def invite(n: int) -> str:
        base = bases[n % 2]
        key = {"Authorization": f"Bearer {api.key}", "MS-RequestId": str(uuid.uuid4())}
        created = requests.post(
            f"{base}/v1/customers", json=customer_body(), headers=key, timeout=30
        )
        assert created.status_code == 201, created.text
        customer_id = created.json()["id"]
        key["MS-RequestId"] = str(uuid.uuid4())
        made = requests.post(
            f"{base}/v1/customers/{customer_id}/invitations",
            json={"send": True},
            headers=key,
            timeout=30,
        )
        assert made.status_code == 201, made.text
        return customer_id

    with ThreadPoolExecutor(8) as pool:
        customers = list(pool.map(invite, range(INVITATIONS)))
    assert len(set(customers)) == INVITATIONS

    deadline = time.monotonic() + 90
    while len(smtp.inbox.received) < INVITATIONS and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2)  # a doubled send would arrive by now
    with app.app_context():
        queued = db.session().scalars(select(OutboxMessage)).all()
    assert len(queued) == INVITATIONS
    assert {message.status for message in queued} == {DeliveryStatus.SENT}
    received_ids = [message["Message-ID"] for message in smtp.inbox.messages]
    assert len(received_ids) == INVITATIONS  # one email per invitation: none lost, none doubled
    assert set(received_ids) == {message.message_id for message in queued}

    # Failed sign-ins are counted in Redis, whichever server and worker sees them.
    check_limit_holds(bases, accounts)


def test_connections_dropped_by_postgresql_are_replaced_unnoticed(app, api, serving, database_url):
    """PostgreSQL restarted or a connection killed: the pool notices before handing it out
    (``pool_pre_ping``), and the next requests succeed on new connections."""
    base = serving(2)
    customer = api.create_customer()
    key = {"Authorization": f"Bearer {api.key}"}
    path = f"{base}/v1/customers/{customer['id']}/directSignedMicrosoftCustomerAgreementStatus"
    for _ in range(10):  # every worker holds pooled connections now
        assert requests.get(path, headers=key, timeout=10).status_code == 200
    schema = database_url.rsplit("application_name=", 1)[1]
    admin = db.make_engine(normalise_database_url(POSTGRESQL))
    with admin.begin() as connection:
        killed = connection.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = :name AND pid <> pg_backend_pid()"
            ),
            {"name": schema},
        ).scalar()
    admin.dispose()
    assert killed >= 1
    answers = [requests.get(path, headers=key, timeout=10).status_code for _ in range(20)]
    assert answers == [200] * 20
