"""The evidence chain: acceptances, attestations and events chained and sealed as they are
written; ``portal audit verify`` names the first row or entry changed, deleted or inserted by
hand; an export recomputes; an erasure keeps what the chain needs."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from typing import Any

import pytest
from alembic import command
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from portal import create_app
from portal.cli import main
from portal.core import db
from portal.core.config import ConfigError
from portal.core.models import (
    AgreementAcceptance,
    AuditEntry,
    Customer,
    CustomerCredential,
    CustomerSession,
    DeliveryStatus,
    Event,
    EventKind,
    Invitation,
    OutboxMessage,
    PartnerKind,
    PasswordResetRequest,
)
from portal.domain import audit, events, partners, resets
from tests.conftest import SECRET, Api
from tests.test_api_customers import statements
from tests.test_pages import NEW_PASSWORD, accept, change_password, invited, sign_in_from_link

MCA = "117a77b0-9360-443b-8795-c6dedc750cf9"
ATTESTATION = {
    "primaryContact": {
        "firstName": "Tania",
        "lastName": "Carr",
        "email": "tania@contoso.example.test",
        "phoneNumber": "1234567890",
    },
    "templateId": MCA,
    "dateAgreed": "2024-06-14T00:00:00.000Z",
    "type": "MicrosoftCustomerAgreement",
}


def journey(api, client) -> dict[str, Any]:
    """A customer created, invited, signed in, accepting on the portal; then attested by its
    partner too. The customer, as the API answered its creation."""
    customer, made = invited(api)
    assert sign_in_from_link(client, made).status_code == 302
    assert change_password(client).status_code == 302
    assert accept(client).status_code == 302
    attested = api.post(f"/v1/customers/{customer['id']}/agreements", json=ATTESTATION)
    assert attested.status_code == 201, attested.get_json()
    return customer


def verified(app, **options: Any) -> audit.Report:
    with app.app_context(), db.reading_session(app) as session:
        return audit.verify(session, db.audit_keys(app.config), **options)


def scalar(app, statement: str, **params: Any) -> Any:
    with app.app_context():
        return db.session().scalar(text(statement), params)


def entry_of(app, table: str, row_id: Any) -> int:
    return int(
        scalar(
            app,
            "SELECT seq FROM audit_chain WHERE entry_table = :t AND entry_id = :i",
            t=table,
            i=str(row_id),
        )
    )


def by_hand(app, *statements: str, **params: Any) -> None:
    """Run SQL as someone who can write to the database would: past the append-only triggers
    (put back in the same transaction)."""
    with app.app_context():
        engine = db.engine()
    with engine.begin() as connection:
        postgresql = connection.dialect.name == "postgresql"
        triggers: list[Any] = []
        if postgresql:
            for table in ("events", "audit_chain"):
                connection.exec_driver_sql(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        else:
            triggers = connection.exec_driver_sql(
                "SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"
            ).all()
            for name, _sql in triggers:
                connection.exec_driver_sql(f'DROP TRIGGER "{name}"')
        for statement in statements:
            connection.execute(text(statement), params)
        if postgresql:
            for table in ("events", "audit_chain"):
                connection.exec_driver_sql(f"ALTER TABLE {table} ENABLE TRIGGER USER")
        for _name, sql in triggers:
            connection.exec_driver_sql(sql)


def invoke(runner, *args: str, **kwargs: Any) -> Any:
    return runner.invoke(main, list(args), catch_exceptions=False, **kwargs)


# --- what is chained ----------------------------------------------------------------------------


def test_every_evidence_column_is_in_the_digest():
    """A new column needs a decision in ``audit.COLUMNS`` (and a digest for the rows after it)."""
    for table, model in ((audit.EVENTS, Event), (audit.ACCEPTANCES, AgreementAcceptance)):
        assert set(audit.COLUMNS[table]) == set(model.__table__.columns.keys())


def test_a_journey_is_chained_and_verifies(app, api, client):
    customer = journey(api, client)
    report = verified(app)
    assert report.ok, report.problem
    with app.app_context():
        session = db.session()
        rows = session.scalar(select(func.count()).select_from(Event)) + session.scalar(
            select(func.count()).select_from(AgreementAcceptance)
        )
        entries = session.execute(select(AuditEntry).order_by(AuditEntry.seq)).scalars().all()
        methods = {
            a.method.value
            for a in session.scalars(
                select(AgreementAcceptance).where(AgreementAcceptance.customer_id == customer["id"])
            )
        }
        kinds = {
            e.kind
            for e in session.scalars(select(Event).where(Event.customer_id == customer["id"]))
        }
    assert methods == {"direct", "attested"}
    assert {
        EventKind.CUSTOMER_CREATED,  # written at once (fastsql.insert_now)
        EventKind.INVITATION_CREATED,
        EventKind.CUSTOMER_SIGNED_IN,
        EventKind.AGREEMENT_ACCEPTED,
        EventKind.AGREEMENT_ATTESTED,
    } <= kinds
    assert report.entries == rows == len(entries)
    assert [e.seq for e in entries] == list(range(1, rows + 1))
    assert entries[0].prev_hash == audit.GENESIS
    assert all(b.prev_hash == a.hash for a, b in zip(entries, entries[1:], strict=False))
    assert (report.head_seq, report.head_hash) == (entries[-1].seq, entries[-1].hash)


def test_each_transaction_reads_the_head_once_and_writes_its_entries_in_one_insert(app, api):
    with statements(app) as ran:
        customer = api.create_customer()
        api.post(f"/v1/customers/{customer['id']}/invitations", json={"send": True})
    chain = [s for s in ran if "audit_chain" in s]
    assert [s.split(" (")[0].split(" FROM")[0] for s in chain] == [
        "SELECT audit_chain.seq, audit_chain.hash",
        "INSERT INTO audit_chain",
    ] * 2
    locks = [s for s in ran if "pg_advisory_xact_lock" in s]
    with app.app_context():
        assert len(locks) == (2 if db.engine().dialect.name == "postgresql" else 0)


def test_rows_of_a_rolled_back_savepoint_or_transaction_are_not_chained(app):
    with app.app_context():
        session = db.session()
        events.record(session, EventKind.PARTNER_CREATED, actor="test")
        session.flush()
        session.rollback()
        kept = events.record(session, EventKind.PARTNER_CREATED, actor="test", data={"n": 1})
        savepoint = session.begin_nested()
        events.record(session, EventKind.PARTNER_CREATED, actor="test", data={"n": 2})
        session.flush()
        savepoint.rollback()
        with session.begin_nested():  # released: its event stays, chained at the commit
            inner = events.record(session, EventKind.PARTNER_CREATED, actor="test")
        session.commit()
        chained = session.scalars(select(AuditEntry.entry_id).order_by(AuditEntry.seq)).all()
    assert chained == [str(kept.id), str(inner.id)]
    assert verified(app).ok


def test_evidence_written_without_an_audit_key_is_refused(app):
    with app.app_context():
        engine = db.engine()
    with Session(engine) as session:  # outside the app and its context: no key
        session.add(Event(kind="test.happened", actor="test", data={}))
        with pytest.raises(audit.MissingAuditKey):
            session.commit()
    assert scalar(app, "SELECT count(*) FROM events") == 0


def test_appends_at_once_leave_a_gapless_chain(app):
    """Threads committing events at once (on PostgreSQL, really at once: the advisory lock, and
    failing that the seq's primary key, keep them apart)."""
    threads, rounds = 6, 15
    barrier = threading.Barrier(threads)
    failures: list[BaseException] = []

    def work() -> None:
        try:
            barrier.wait()
            for n in range(rounds):
                with db.new_session(app) as session:
                    events.record(session, EventKind.PARTNER_CREATED, actor="test", data={"n": n})
                    events.record(session, EventKind.API_KEY_CREATED, actor="test")
                    session.commit()
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    started = [threading.Thread(target=work) for _ in range(threads)]
    for thread in started:
        thread.start()
    for thread in started:
        thread.join()
    assert failures == []
    report = verified(app)
    assert report.ok, report.problem
    assert report.entries == report.head_seq == threads * rounds * 2


def test_a_transaction_with_an_old_snapshot_cannot_chain_on_an_old_head(app):
    """SQLite: a transaction begun without the write lock (a GET's) whose snapshot is older than
    another's commit cannot write at all. PostgreSQL at REPEATABLE READ (not the portal's level):
    the head it reads is old, and the seq's primary key refuses the fork."""
    with app.app_context():
        postgresql = db.engine().dialect.name == "postgresql"
    with db.reading_session(app) as stale:
        if postgresql:
            stale.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        stale.scalar(select(func.count()).select_from(AuditEntry))  # its snapshot, from here
        with db.new_session(app) as writer:
            events.record(writer, EventKind.PARTNER_CREATED, actor="test")
            writer.commit()
        events.record(stale, EventKind.PARTNER_CREATED, actor="test", data={"stale": True})
        with pytest.raises((OperationalError, IntegrityError)):
            stale.commit()
    report = verified(app)
    assert report.ok, report.problem
    assert report.entries == 1


# --- what verify finds --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "change"),
    [
        ("events", "UPDATE events SET actor = 'partner:someone-else' WHERE id = :id"),
        ("events", 'UPDATE events SET data = \'{"acceptance_id": "x"}\' WHERE id = :id'),
        (
            "agreement_acceptances",
            "UPDATE agreement_acceptances SET email = 'x@example.test' WHERE id = :id",
        ),
        (
            "agreement_acceptances",
            "UPDATE agreement_acceptances SET date_agreed = recorded_at WHERE id = :id",
        ),
    ],
)
def test_a_row_changed_by_hand_is_named(app, api, client, runner, table, change):
    customer = journey(api, client)
    if table == "events":
        row_id = scalar(
            app,
            "SELECT id FROM events WHERE kind = 'agreement.accepted' AND customer_id = :c",
            c=customer["id"],
        )
    else:
        row_id = scalar(app, "SELECT id FROM agreement_acceptances WHERE method = 'attested'")
    by_hand(app, change, id=row_id)
    sentence = f"entry {entry_of(app, table, row_id)} ({table} row {row_id}) was altered"
    assert verified(app).problem == sentence
    result = invoke(runner, "audit", "verify")
    assert result.exit_code == 1
    assert sentence in result.output


@pytest.mark.parametrize("table", ["events", "agreement_acceptances"])
def test_a_row_deleted_by_hand_is_missing(app, api, client, table):
    journey(api, client)
    row_id = scalar(app, f"SELECT max(id) FROM {table}")  # noqa: S608 - a test's own table name
    seq = entry_of(app, table, row_id)
    by_hand(app, f"DELETE FROM {table} WHERE id = :id", id=row_id)  # noqa: S608 - as above
    assert verified(app).problem == (
        f"entry {seq} ({table} row {row_id}) is missing its row: the row was deleted"
    )


def test_an_event_inserted_by_hand_is_named(app, api, client):
    journey(api, client)
    by_hand(
        app,
        "INSERT INTO events (occurred_at, kind, actor, data)"
        " VALUES ('2024-01-01 00:00:00', 'agreement.accepted', 'customer:x', '{}')",
    )
    row_id = scalar(app, "SELECT max(id) FROM events")
    assert verified(app).problem == f"events row {row_id} is not in the chain (inserted by hand?)"


def test_an_acceptance_inserted_by_hand_is_named(app, api, client):
    customer = journey(api, client)
    by_hand(
        app,
        "INSERT INTO agreement_acceptances (id, customer_id, agreement_type, template_id,"
        " version_rank, method, dedupe_key, first_name, last_name, email, phone, date_agreed,"
        " recorded_at, recorded_by, country, language, document_uri, ip_address, user_agent,"
        " partner_id) VALUES ('00000000-0000-4000-8000-000000000001', :c,"
        " 'MicrosoftCustomerAgreement', :t, 0, 'attested', 'forged', 'A', 'B',"
        " 'a@example.test', '', '2024-01-01 00:00:00', '2024-01-01 00:00:00', 'x', 'US', 'en',"
        " '', '', '', NULL)",
        c=customer["id"],
        t=MCA,
    )
    assert verified(app).problem == (
        "agreement_acceptances row 00000000-0000-4000-8000-000000000001 is not in the chain"
        " (inserted by hand?)"
    )


def test_an_entry_deleted_from_the_chain_leaves_a_gap(app, api, client):
    journey(api, client)
    by_hand(app, "DELETE FROM audit_chain WHERE seq = 3")
    assert verified(app).problem == "entry 3 is missing (seq jumps from 2 to 4)"
    by_hand(app, "DELETE FROM audit_chain WHERE seq IN (4, 5)")
    assert verified(app).problem == "entries 3 to 5 are missing (seq jumps from 2 to 6)"


def _forge(app, acceptance_id: str, key: bytes | None = None) -> int:
    """Change an acceptance and chain it again as someone who knows the format: the digest,
    every hash from that entry on, and (with ``key``) seals of one's own. The entry's seq."""
    by_hand(
        app,
        "UPDATE agreement_acceptances SET email = 'x@example.test' WHERE id = :id",
        id=acceptance_id,
    )
    with app.app_context():
        session = db.session()
        row = session.get_one(AgreementAcceptance, acceptance_id)
        values = {name: getattr(row, name) for name in audit.COLUMNS[audit.ACCEPTANCES]}
        first = session.scalar(select(AuditEntry).where(AuditEntry.entry_id == acceptance_id))
        assert first is not None
        forged_seq = first.seq
        later = session.scalars(
            select(AuditEntry).where(AuditEntry.seq >= forged_seq).order_by(AuditEntry.seq)
        ).all()
        prev = first.prev_hash
        changes = []
        for entry in later:
            digest = audit.digest(audit.ACCEPTANCES, values) if entry is first else entry.digest
            entry_hash = audit.chain_hash(
                prev, entry.seq, entry.entry_table, entry.entry_id, digest
            )
            seal = audit.seal(key, entry_hash) if key else entry.seal
            key_id = audit.key_id(key) if key else entry.key_id
            changes.append(
                {"s": entry.seq, "d": digest, "p": prev, "h": entry_hash, "x": seal, "k": key_id}
            )
            prev = entry_hash
        session.rollback()
    for change in changes:
        by_hand(
            app,
            "UPDATE audit_chain SET digest = :d, prev_hash = :p, hash = :h, seal = :x,"
            " key_id = :k WHERE seq = :s",
            **change,
        )
    return forged_seq


def test_a_chain_computed_again_without_the_key_has_a_bad_seal(app, api, client):
    journey(api, client)
    acceptance_id = scalar(app, "SELECT id FROM agreement_acceptances WHERE method = 'direct'")
    seq = _forge(app, acceptance_id)
    assert verified(app).problem == f"entry {seq} has a seal that no known key made"


def test_a_chain_sealed_with_a_key_of_ones_own_has_a_bad_seal(app, api, client):
    journey(api, client)
    acceptance_id = scalar(app, "SELECT id FROM agreement_acceptances WHERE method = 'direct'")
    key = b"a key of the forger's own" * 2
    seq = _forge(app, acceptance_id, key)
    assert verified(app).problem == (
        f"entry {seq} has a seal that no known key made (its key {audit.key_id(key)} is none of"
        " those tried: an old secret key missing from SECRET_KEY_FALLBACKS?)"
    )


def test_an_earlier_head_shows_entries_removed_from_the_end(app, api, client, runner):
    """The chain alone cannot tell its newest entries were removed with their rows; a head
    recorded earlier can."""
    journey(api, client)
    report = verified(app)
    head = f"{report.head_seq}:{report.head_hash}"
    result = invoke(runner, "audit", "verify", "--head", head)
    assert result.exit_code == 0, result.output
    assert head in result.output
    last = scalar(app, "SELECT entry_id FROM audit_chain WHERE seq = :s", s=report.head_seq)
    by_hand(
        app,
        "DELETE FROM audit_chain WHERE seq = :s",
        "DELETE FROM events WHERE id = :e",
        s=report.head_seq,
        e=int(last),
    )
    assert verified(app).ok  # the chain alone: shorter, and whole
    result = invoke(runner, "audit", "verify", "--head", head)
    assert result.exit_code == 1
    assert (
        f"the chain ends at entry {report.head_seq - 1}, before entry {report.head_seq}"
        " recorded earlier: entries were removed from its end"
    ) in result.output
    assert invoke(runner, "audit", "verify", "--head", "12").exit_code == 2


def test_entries_sealed_with_an_old_secret_key_verify_while_it_is_a_fallback(
    app, api, client, make_app
):
    journey(api, client)
    newer = "another-secret-key-" + "y" * 40
    rotated = make_app(SECRET_KEY=newer, SECRET_KEY_FALLBACKS=[SECRET])
    assert verified(rotated).ok
    with rotated.app_context():
        session = db.session()
        events.record(session, EventKind.PARTNER_CREATED, actor="test")
        session.commit()
        key_ids = session.scalars(select(AuditEntry.key_id).distinct()).all()
    assert len(key_ids) == 2
    assert verified(rotated).ok
    forgotten = verified(make_app(SECRET_KEY=newer))
    assert forgotten.problem is not None
    assert forgotten.problem.startswith("entry 1 has a seal that no known key made (its key")
    own_key = make_app(
        AUDIT_KEY="an-audit-key-of-its-own-" + "z" * 20,
        SECRET_KEY=newer,
        SECRET_KEY_FALLBACKS=[SECRET],
    )
    assert verified(own_key).ok  # those derived from the secret keys are still tried


def test_entries_sealed_with_an_old_audit_key_verify_while_it_is_a_fallback(make_app):
    first, second = "audit-key-one-" + "a" * 30, "audit-key-two-" + "b" * 30
    with make_app(AUDIT_KEY=first).app_context():
        session = db.session()
        events.record(session, EventKind.PARTNER_CREATED, actor="test")
        session.commit()
    assert verified(make_app(AUDIT_KEY=first)).ok
    assert verified(make_app(AUDIT_KEY=second, AUDIT_KEY_FALLBACKS=[first])).ok
    assert verified(make_app(AUDIT_KEY=second, AUDIT_KEY_FALLBACKS=first)).ok  # as one variable
    problem = verified(make_app(AUDIT_KEY=second)).problem
    assert problem is not None
    assert problem.startswith("entry 1 has a seal that no known key made")
    with pytest.raises(ConfigError, match="PORTAL_AUDIT_KEY is too short"):
        make_app(AUDIT_KEY="short")


# --- export -------------------------------------------------------------------------------------


def test_an_export_holds_the_customers_evidence_and_recomputes(app, api, client, runner, tmp_path):
    customer = journey(api, client)
    other = api.create_customer()  # not in the export
    output = tmp_path / "evidence.json"
    result = invoke(runner, "audit", "export", customer["id"], "--output", str(output))
    assert result.exit_code == 0, result.output
    exported = json.loads(output.read_text(encoding="utf-8"))
    assert exported["customerId"] == customer["id"]
    assert exported["howToCheck"]
    tables = [item["table"] for item in exported["items"]]
    assert tables.count("agreement_acceptances") == 2
    assert "events" in tables
    assert other["id"] not in json.dumps(exported)
    assert all(item["evidence"]["customer_id"] == customer["id"] for item in exported["items"])
    seqs = [item["entry"]["seq"] for item in exported["items"]]
    assert seqs == sorted(seqs)
    key = db.audit_keys(app.config)[0]
    for item in exported["items"]:
        entry = item["entry"]
        # As the note says, with nothing of the portal's.
        text_ = json.dumps(
            item["evidence"], sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )
        assert hashlib.sha256(text_.encode()).hexdigest() == entry["digest"]
        chained = f"{entry['prevHash']}|{entry['seq']}|{item['table']}|{item['id']}|"
        chained += entry["digest"]
        assert hashlib.sha256(chained.encode()).hexdigest() == entry["hash"]
        assert hmac.new(key, entry["hash"].encode(), "sha256").hexdigest() == entry["seal"]
    report = verified(app)
    assert exported["head"] == {"seq": report.head_seq, "hash": report.head_hash}
    printed = invoke(runner, "audit", "export", customer["id"])
    assert json.loads(printed.output)["items"] == exported["items"]


def test_exporting_an_unknown_customer_fails(runner):
    result = invoke(runner, "audit", "export", "00000000-0000-4000-8000-000000000000")
    assert result.exit_code == 1
    assert "no customer 00000000-0000-4000-8000-000000000000" in result.output


def test_verify_of_an_empty_chain_and_of_a_journey_on_the_command_line(runner, make_api, client):
    result = invoke(runner, "audit", "verify")
    assert result.exit_code == 0, result.output
    assert f"the chain holds: 0 entries, head 0:{audit.GENESIS}" in result.output
    journey(make_api(), client)
    result = invoke(runner, "audit", "verify")
    assert result.exit_code == 0, result.output
    assert "the chain holds" in result.output


# --- erasure ------------------------------------------------------------------------------------


def _evidence(app, customer_id: str) -> list[dict[str, Any]]:
    with app.app_context():
        session = db.session()
        rows = [
            audit.evidence(
                audit.ACCEPTANCES, {n: getattr(a, n) for n in audit.COLUMNS[audit.ACCEPTANCES]}
            )
            for a in session.scalars(
                select(AgreementAcceptance)
                .where(AgreementAcceptance.customer_id == customer_id)
                .order_by(AgreementAcceptance.id)
            )
        ]
        rows += [
            audit.evidence(audit.EVENTS, {n: getattr(e, n) for n in audit.COLUMNS[audit.EVENTS]})
            for e in session.scalars(
                select(Event).where(Event.customer_id == customer_id).order_by(Event.id)
            )
        ]
    return rows


def test_erasure_removes_contact_data_and_credentials_and_keeps_the_evidence(
    app, api, client, runner
):
    customer = journey(api, client)
    customer_id = customer["id"]
    with app.app_context():
        session = db.session()
        user_name = session.scalar(
            select(CustomerCredential.user_name).where(
                CustomerCredential.customer_id == customer_id
            )
        )
        resets.request(session, user_name.upper(), "en")
        session.commit()
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) > 0
    assert client.get("/account").status_code == 200  # signed in
    kept = _evidence(app, customer_id)

    result = invoke(runner, "customers", "erase", customer_id, "--yes")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"erased: Contoso Ltd ({customer_id}): contact data, 1 cred")

    assert client.get("/account").headers["Location"].startswith("/signin")  # session gone
    again = {"url": "/signin", "userName": user_name, "password": NEW_PASSWORD}
    assert sign_in_from_link(app.test_client(), again).status_code != 302
    with app.app_context():
        session = db.session()
        erased = session.get_one(Customer, customer_id)
        assert (erased.email, erased.contact_email) == (audit.ERASED, audit.ERASED)
        assert (erased.contact_first_name, erased.contact_last_name) == (
            audit.ERASED,
            audit.ERASED,
        )
        assert erased.address_line1 == erased.city == erased.phone == erased.contact_phone == ""
        assert erased.domain == customer["companyProfile"]["domain"]  # the company's
        for model in (CustomerCredential, CustomerSession, PasswordResetRequest):
            assert session.scalar(select(func.count()).select_from(model)) == 0
        for message in session.scalars(select(OutboxMessage)):
            assert (message.to_address, message.text_body, message.html_body, message.mime) == (
                audit.ERASED,
                "",
                "",
                None,
            )
            assert message.status is DeliveryStatus.CANCELLED  # none was sent: none ever will be
        for invitation in session.scalars(select(Invitation)):
            assert (invitation.recipient, invitation.text_body) == (audit.ERASED, "")
        [recorded] = session.scalars(select(Event).where(Event.kind == audit.ERASED_EVENT))
        assert recorded.customer_id == customer_id
        assert (recorded.data["credentials"], recorded.data["reset_requests"]) == (1, 1)
    after = _evidence(app, customer_id)
    assert [row for row in after if row.get("kind") != audit.ERASED_EVENT] == kept
    report = verified(app)
    assert report.ok, report.problem
    assert invoke(runner, "audit", "verify").exit_code == 0


def test_erasure_asks_first_and_refuses_unknown_customers(api, runner, app):
    customer = api.create_customer()
    result = invoke(runner, "customers", "erase", customer["id"], input="n\n")
    assert result.exit_code == 1
    assert "Aborted" in result.output
    with app.app_context():
        assert db.session().get_one(Customer, customer["id"]).email != audit.ERASED
    unknown = invoke(runner, "customers", "erase", "00000000-0000-4000-8000-000000000000", "--yes")
    assert unknown.exit_code == 1
    assert "no customer" in unknown.output


# --- the migration ------------------------------------------------------------------------------


def test_the_migration_chains_the_rows_already_there(empty_database, settings):
    """0016 on a database with evidence: the rows are chained (events by id, then acceptances),
    sealed with the app's key, and verify; run outside the app, the seals are missing."""
    engine = db.make_engine(empty_database)
    db.upgrade(engine)
    app = create_app({**settings, "DATABASE_URL": empty_database})
    client = app.test_client()
    with app.app_context():
        session = db.session()
        partner = partners.create_partner(session, "Fabrikam", PartnerKind.DIRECT)
        key = partners.create_key(session, partner)
        session.commit()
    journey(Api(client, partner.id, key.secret, PartnerKind.DIRECT), client)
    before = verified(app)
    assert before.ok, before.problem
    try:
        command.downgrade(db.alembic_config(engine), "0015")
        with app.app_context():
            db.upgrade(engine)  # as ``portal db upgrade`` does it
        after = verified(app)
        assert after.ok, after.problem
        assert after.entries == before.entries
        with app.app_context():
            session = db.session()
            chained = session.execute(
                select(AuditEntry.entry_table, AuditEntry.entry_id).order_by(AuditEntry.seq)
            ).all()
            event_ids = [str(i) for i in session.scalars(select(Event.id).order_by(Event.id))]
            recorded = list(
                session.scalars(
                    select(AgreementAcceptance.id).order_by(
                        AgreementAcceptance.recorded_at, AgreementAcceptance.id
                    )
                )
            )
        assert chained == [("events", i) for i in event_ids] + [
            ("agreement_acceptances", i) for i in recorded
        ]

        command.downgrade(db.alembic_config(engine), "0015")
        db.upgrade(engine)  # outside the app: no key to seal with
        assert verified(app).problem == (
            "entry 1 has no seal (chained by a migration run outside the portal, without the"
            " audit key)"
        )
    finally:
        with app.app_context():
            db.engine().dispose()
        engine.dispose()
