"""``portal invite``, ``portal invite --csv``, ``portal mail send|outbox`` and the delivery loop
inside ``portal serve``."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time

import pytest
from sqlalchemy import func, select

from portal.cli import main
from portal.core import db
from portal.core.models import Customer, Invitation
from tests.mailservers import smtp_server
from tests.test_serve import free_port, stop, wait_for

HEADER = "domain,companyName,email,culture,language,country,firstName,lastName\n"


def partner(runner) -> dict:
    result = runner.invoke(
        main, ["partners", "create", "--name", "Shell Partner", "--kind", "direct", "--json"]
    )
    return json.loads(result.output)


def test_invite_prints_the_invitation(runner, api):
    customer = api.create_customer()
    result = runner.invoke(main, ["invite", customer["id"]])
    assert result.exit_code == 0, result.output
    assert "https://portal.example.test/invite/" in result.output
    assert "Password:" in result.output
    assert "Temporary password:" in result.output
    assert customer["userCredentials"]["userName"] in result.output


def test_invite_unknown_customer_and_accepted_customer(runner, app, api):
    from tests.test_api_agreements import record_direct_acceptance

    unknown = runner.invoke(main, ["invite", "nope"])
    assert unknown.exit_code == 1
    assert "No customer" in unknown.output
    customer = api.create_customer()
    record_direct_acceptance(app, customer["id"])
    accepted = runner.invoke(main, ["invite", customer["id"]])
    assert accepted.exit_code == 1
    assert "already accepted" in accepted.output


def test_invite_without_arguments_explains(runner):
    result = runner.invoke(main, ["invite"])
    assert result.exit_code == 2
    assert "CUSTOMER_ID" in result.output


def test_bulk_csv_keeps_good_rows_and_reports_bad_ones_by_line(runner, app, tmp_path):
    made = partner(runner)
    source = tmp_path / "customers.csv"
    source.write_text(
        HEADER
        + "one.example.test,One Ltd,it@one.example.test,en-GB,en,GB,Ann,One\n"
        + "two.example.test,Two Ltd,not-an-address,en-US,en,US,Bob,Two\n"
        + "three.example.test,Three GmbH,it@three.example.test,de-DE,de,DE,Cem,Drei\n"
        + "one.example.test,Duplicate,it@dup.example.test,en-US,en,US,Dee,Dup\n"
        + "four.example.test,Four,it@four.example.test,en-US,en,ZZ,Eve,Four\n"
    )
    result = runner.invoke(main, ["invite", "--csv", str(source), "--partner", made["id"]])
    assert result.exit_code == 0, result.output
    assert "2 created, 3 with errors" in result.output
    assert "line 3:" in result.output
    assert "line 5:" in result.output
    assert "line 6:" in result.output
    with open(f"{source}.results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["line"], r["result"]) for r in rows] == [
        ("2", "created"),
        ("3", "error"),
        ("4", "created"),
        ("5", "error"),
        ("6", "error"),
    ]
    assert "billingProfile.email" not in rows[1]["error"]
    assert "email" in rows[1]["error"]
    assert "already exists" in rows[3]["error"]
    assert "country" in rows[4]["error"]
    assert rows[0]["password"]
    assert rows[0]["url"].startswith("https://portal.example.test/invite/")
    with app.app_context():
        session = db.session()
        assert session.scalar(select(func.count()).select_from(Customer)) == 2
        assert session.scalar(select(func.count()).select_from(Invitation)) == 2


def test_bulk_csv_with_missing_columns_creates_nothing(runner, app, tmp_path):
    made = partner(runner)
    source = tmp_path / "bad.csv"
    source.write_text("domain,email\none.example.test,a@one.example.test\n")
    result = runner.invoke(main, ["invite", "--csv", str(source), "--partner", made["id"]])
    assert result.exit_code == 1
    assert "companyName" in result.output
    with app.app_context():
        assert db.session().scalar(select(func.count()).select_from(Customer)) == 0


@pytest.mark.mail
def test_mail_send_delivers_once_and_exits_zero(runner, api, smtp, cli_env):
    customer = api.create_customer()
    api.post(f"/v1/customers/{customer['id']}/invitations", json={"send": True})
    env = {**cli_env, "PORTAL_MAIL_SERVER": smtp.host, "PORTAL_MAIL_PORT": str(smtp.port)}
    first = runner.invoke(main, ["mail", "send"], env=env)
    assert first.exit_code == 0
    assert "sent 1," in first.output
    second = runner.invoke(main, ["mail", "send"], env=env)
    assert "sent 0," in second.output
    assert len(smtp.inbox.received) == 1


def test_mail_send_without_smtp_says_where_the_mail_is(runner):
    result = runner.invoke(main, ["mail", "send"])
    assert result.exit_code == 0
    assert "portal mail outbox" in result.output


def serve_with_mail(cli_env, server, port: int) -> subprocess.Popen:
    """``portal serve`` on ``port``, sending to ``server`` every 0.2 s; returns once it answers."""
    env = {
        **os.environ,
        **cli_env,
        "PORTAL_MAIL_SERVER": server.host,
        "PORTAL_MAIL_PORT": str(server.port),
        "PORTAL_MAIL_SEND_INTERVAL": "0.2",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "portal.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/v1/openapi.json", process)
    except AssertionError:
        stop(process)
        raise
    return process


@pytest.mark.slow
def test_serve_sends_the_outbox_by_itself(api, cli_env):
    customer = api.create_customer()
    api.post(f"/v1/customers/{customer['id']}/invitations", json={"send": True})
    port = free_port()
    with smtp_server() as server:
        process = serve_with_mail(cli_env, server, port)
        try:
            deadline = time.monotonic() + 20
            while not server.inbox.received and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            stop(process)
        assert len(server.inbox.received) == 1


def children_of(parent: int) -> list[tuple[int, str]]:
    """(pid, command line) of the processes whose parent is ``parent``, read from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                line = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent:
            found.append((int(entry), line))
    return found


@pytest.mark.slow
def test_delivery_process_stops_when_its_server_dies(cli_env):
    """A server killed outright (no chance to clean up) leaves no mailer running behind it."""
    import signal

    port = free_port()
    with smtp_server() as server:
        process = serve_with_mail(cli_env, server, port)
        try:
            children = [pid for pid, line in children_of(process.pid) if "mail send --loop" in line]
            assert len(children) == 1, children
            process.send_signal(signal.SIGKILL)
            process.communicate(timeout=10)
            mailer = int(children[0])
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    os.kill(mailer, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            else:
                os.kill(mailer, signal.SIGKILL)
                raise AssertionError("the delivery process outlived its server")
        finally:
            if process.poll() is None:
                stop(process)
            for pid, _ in children_of(process.pid):
                os.kill(pid, signal.SIGKILL)
