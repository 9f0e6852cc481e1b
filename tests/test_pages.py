"""The customer's side over HTTP: the link, sign-in, password change, agreement, sessions."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
import time_machine
from sqlalchemy import func, select

from portal.core import db
from portal.core.models import AgreementAcceptance, OutboxMessage
from tests.conftest import customer_body

MCA = "117a77b0-9360-443b-8795-c6dedc750cf9"
NEW_PASSWORD = "correct horse battery staple"


def csrf(response) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', response.get_data(as_text=True))
    assert match, response.get_data(as_text=True)[:500]
    return match.group(1)


def invited(api, **changes):
    customer = api.create_customer(**changes)
    made = api.post(f"/v1/customers/{customer['id']}/invitations", json={}).get_json()
    return customer, made


def link_path(made) -> str:
    return urlsplit(made["url"]).path


def sign_in_from_link(client, made, password=None):
    page = client.get(link_path(made))
    return client.post(
        "/signin",
        data={
            "csrf_token": csrf(page),
            "user_name": made["userName"],
            "password": password if password is not None else made["password"],
        },
    )


def change_password(client, new=NEW_PASSWORD, repeat=None):
    page = client.get("/password")
    return client.post(
        "/password",
        data={
            "csrf_token": csrf(page),
            "password": new,
            "repeat": repeat if repeat is not None else new,
        },
    )


def accept(client, **fields):
    page = client.get("/agreement")
    data = {
        "csrf_token": csrf(page),
        "first_name": "Ana",
        "last_name": "Silva",
        "email": "ana@contoso.example.test",
        "phone": "",
        "accept": "yes",
        **fields,
    }
    return client.post("/agreement", data=data, headers={"User-Agent": "TestBrowser/1.0"})


def test_whole_journey_records_a_direct_acceptance_with_evidence(app, api, client):
    customer, made = invited(api, country="DE", culture="de-DE", language="de")
    signed_in = sign_in_from_link(client, made)
    assert signed_in.status_code == 302
    assert signed_in.headers["Location"].endswith("/password")
    assert change_password(client).headers["Location"].endswith("/agreement")
    page = client.get("/agreement")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert "Fabrikam" in body
    assert "country=DE&amp;language=de-DE" in body
    assert 'value="Tania"' in body  # prefilled from the primary contact
    accepted = accept(client)
    assert accepted.status_code == 302
    assert accepted.headers["Location"].endswith("/account?accepted=1")
    confirmation = client.get("/account?accepted=1").get_data(as_text=True)
    assert "Microsoft-Kundenvereinbarung" in confirmation  # a German customer reads German
    assert "Ana Silva" in confirmation

    status = api.get(f"/v1/customers/{customer['id']}/directSignedMicrosoftCustomerAgreementStatus")
    assert status.get_json() == {"isSigned": True}
    evidence = api.get(f"/v1/customers/{customer['id']}/acceptanceStatus").get_json()
    assert evidence["state"] == "accepted"
    direct = evidence["acceptance"]
    assert direct["templateId"] == MCA
    assert (direct["country"], direct["language"]) == ("DE", "de-DE")
    assert direct["evidence"] == {"ipAddress": "127.0.0.1", "userAgent": "TestBrowser/1.0"}
    assert direct["primaryContact"]["email"] == "ana@contoso.example.test"
    assert direct["userId"] == made["userName"]
    assert evidence["signedIn"] is True
    with app.app_context():
        kinds = [m.kind for m in db.session().scalars(select(OutboxMessage))]
        assert kinds == ["acceptance-confirmation"]


def test_temporary_password_never_works_after_the_change(app, api, client):
    _, made = invited(api)
    sign_in_from_link(client, made)
    change_password(client)
    client.post("/signout", data={"csrf_token": csrf(client.get("/agreement"))})
    other = app.test_client()
    assert sign_in_from_link(other, made).status_code == 401
    page = other.get("/signin")
    chosen = other.post(
        "/signin",
        data={"csrf_token": csrf(page), "user_name": made["userName"], "password": NEW_PASSWORD},
    )
    assert chosen.status_code == 302


def test_password_change_is_required_before_anything_else(api, client):
    _, made = invited(api)
    sign_in_from_link(client, made)
    for path in ("/agreement", "/account"):
        response = client.get(path)
        assert response.status_code == 302
        assert response.headers["Location"].endswith("/password")


@pytest.mark.parametrize(
    ("new", "repeat", "message"),
    [
        ("short", "short", "at least 12"),
        (NEW_PASSWORD, NEW_PASSWORD + "x", "not the same"),
        ("x" * 300, "x" * 300, "at most 256"),
    ],
)
def test_weak_password_changes_are_refused(api, client, new, repeat, message):
    _, made = invited(api)
    sign_in_from_link(client, made)
    response = change_password(client, new, repeat)
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)


def test_the_temporary_password_cannot_be_kept(api, client):
    _, made = invited(api)
    sign_in_from_link(client, made)
    padded = made["password"]
    response = change_password(client, padded, padded)
    assert response.status_code == 400


def test_unknown_user_and_wrong_password_get_the_same_answer(api, client):
    _, made = invited(api)
    page = client.get("/signin")
    wrong = client.post(
        "/signin",
        data={"csrf_token": csrf(page), "user_name": made["userName"], "password": "not it at all"},
    )
    unknown = client.post(
        "/signin",
        data={
            "csrf_token": csrf(page),
            "user_name": "nobody@nowhere.example.test",
            "password": "not it at all",
        },
    )
    assert wrong.status_code == unknown.status_code == 401
    strip = lambda r: re.sub(r'value="[^"]*"', "", r.get_data(as_text=True))  # noqa: E731
    assert strip(wrong) == strip(unknown)


def test_overlong_password_is_refused_before_hashing(api, client):
    import time

    _, made = invited(api)
    page = client.get("/signin")
    started = time.monotonic()
    response = client.post(
        "/signin",
        data={"csrf_token": csrf(page), "user_name": made["userName"], "password": "x" * 50_000},
    )
    assert response.status_code == 401
    assert time.monotonic() - started < 1


def test_session_id_changes_at_sign_in_and_sign_out_ends_it_on_the_server(app, api, client):
    _, made = invited(api)
    client.get(link_path(made))
    before = client.get_cookie("session")
    sign_in_from_link(client, made)
    after = client.get_cookie("session")
    assert before is None or before.value != after.value
    change_password(client)
    stolen = after.value if after else None
    signed_out = client.post("/signout", data={"csrf_token": csrf(client.get("/agreement"))})
    assert signed_out.status_code == 302
    # Replaying the old cookie does not bring the session back.
    thief = app.test_client()
    thief.set_cookie("session", client.get_cookie("session").value if stolen is None else stolen)
    assert thief.get("/agreement").headers["Location"].startswith("/signin")


def test_idle_session_ends(app, api, client):
    _, made = invited(api)
    start = datetime.now(UTC)
    with time_machine.travel(start, tick=False):
        sign_in_from_link(client, made)
        change_password(client)
    idle = app.config["SESSION_IDLE_TIMEOUT"]
    with time_machine.travel(start + timedelta(seconds=idle - 60), tick=False):
        assert client.get("/agreement").status_code == 200
    with time_machine.travel(start + timedelta(seconds=2 * idle), tick=False):
        assert client.get("/agreement").headers["Location"].startswith("/signin")


def test_session_cookie_flags(api, client):
    _, made = invited(api)
    response = sign_in_from_link(client, made)
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Secure" in cookie  # BASE_URL is https in the tests


def test_gate_sends_unaccepted_customers_to_the_agreement(api, client):
    _, made = invited(api)
    sign_in_from_link(client, made)
    change_password(client)
    response = client.get("/account")
    assert response.headers["Location"].endswith("/agreement")
    accept(client)
    assert client.get("/account").status_code == 200
    assert client.get("/agreement").headers["Location"].endswith("/account")


def test_form_without_or_with_stale_csrf_token_changes_nothing(app, api, client):
    _, made = invited(api)
    sign_in_from_link(client, made)
    change_password(client)
    for token in (None, "stale-token"):
        data = {
            "first_name": "Ana",
            "last_name": "Silva",
            "email": "ana@example.test",
            "accept": "yes",
        }
        if token:
            data["csrf_token"] = token
        response = client.post("/agreement", data=data)
        assert response.status_code == 400
        assert "could not be processed" in response.get_data(as_text=True)
    with app.app_context():
        assert db.session().scalar(select(func.count()).select_from(AgreementAcceptance)) == 0


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"accept": ""}, "Tick the box"),
        ({"first_name": ""}, "first name"),
        ({"email": "nope"}, "valid email"),
        ({"email": "a@b.example.test\r\nBcc: x"}, "valid email"),
    ],
)
def test_incomplete_acceptance_is_refused_and_changes_nothing(app, api, client, fields, message):
    _, made = invited(api)
    sign_in_from_link(client, made)
    change_password(client)
    response = accept(client, **fields)
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    with app.app_context():
        assert db.session().scalar(select(func.count()).select_from(AgreementAcceptance)) == 0


def test_double_submission_records_one_acceptance(app, api, client):
    _, made = invited(api)
    sign_in_from_link(client, made)
    change_password(client)
    page = client.get("/agreement")
    data = {
        "csrf_token": csrf(page),
        "first_name": "Ana",
        "last_name": "Silva",
        "email": "ana@contoso.example.test",
        "accept": "yes",
    }
    first = client.post("/agreement", data=data)
    second = client.post("/agreement", data=data)
    assert first.status_code == second.status_code == 302
    assert second.headers["Location"].endswith("/account?accepted=1")
    with app.app_context():
        session = db.session()
        assert session.scalar(select(func.count()).select_from(AgreementAcceptance)) == 1
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 1


def test_secrecy_amendment_is_accepted_on_the_same_page(app, api, client):
    body = {"professionalSecrecyAmendment": True}
    german = customer_body(country="DE", culture="de-DE", language="de")
    customer = api.post("/v1/customers", json={**german, **body}).get_json()
    made = api.post(f"/v1/customers/{customer['id']}/invitations", json={}).get_json()
    sign_in_from_link(client, made)
    change_password(client)
    page = client.get("/agreement").get_data(as_text=True)
    assert "Zusatzvereinbarung zur beruflichen Verschwiegenheit" in page
    accept(client)
    types = {
        a["type"]
        for a in api.get(f"/v1/customers/{customer['id']}/agreements?agreementType=*").get_json()[
            "items"
        ]
    }
    assert types == {"MicrosoftCustomerAgreement", "ProfessionalSecrecyAmendment"}


def test_link_after_acceptance_shows_who_accepted_only_to_the_signed_in_customer(api, client, app):
    _, made = invited(api)
    sign_in_from_link(client, made)
    change_password(client)
    accept(client)
    # Whoever holds the old link (a forwarded email) learns that it is done, not who did it.
    page = app.test_client().get(link_path(made))
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert "already been accepted" in body
    assert "Ana Silva" not in body
    # The customer, signed in, sees who accepted and when.
    body = client.get(link_path(made)).get_data(as_text=True)
    assert "already been accepted" in body
    assert "Ana Silva" in body
    # Another customer, signed in, does not.
    _, other = invited(api)
    stranger = app.test_client()
    sign_in_from_link(stranger, other)
    change_password(stranger)
    body = stranger.get(link_path(made)).get_data(as_text=True)
    assert "already been accepted" in body
    assert "Ana Silva" not in body


def test_sign_in_is_rate_limited_per_account_and_others_are_unaffected(api, app):
    _, made = invited(api)
    _, other = invited(api)
    limit = int(app.config["SIGNIN_LIMIT_ACCOUNT"].split()[0])
    for attempt in range(limit + 1):
        client = app.test_client()
        page = client.get("/signin")
        response = client.post(
            "/signin",
            data={
                "csrf_token": csrf(page),
                "user_name": made["userName"],
                "password": f"wrong {attempt}",
            },
            environ_base={"REMOTE_ADDR": f"198.51.100.{attempt + 1}"},
        )
    assert response.status_code == 429
    client = app.test_client()
    assert sign_in_from_link(client, other).status_code == 302
    blocked = app.test_client()
    assert sign_in_from_link(blocked, made).status_code == 429


def test_signed_in_event_shows_in_status(api, client):
    customer, made = invited(api)
    sign_in_from_link(client, made)
    status = api.get(f"/v1/customers/{customer['id']}/acceptanceStatus").get_json()
    assert status["state"] == "signed-in"


def test_pages_carry_security_headers_and_no_inline_script(api, client):
    _, made = invited(api)
    for path in (link_path(made), "/signin", "/invite/nonsense"):
        response = client.get(path)
        csp = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp
        assert "unsafe-inline" not in csp
        assert "<script" not in response.get_data(as_text=True)


def at_once(app, cookie: str, path: str, data: dict, times: int = 20) -> list[tuple[int, str]]:
    """POST ``data`` to ``path`` from ``times`` threads let go together, each a browser with the
    session ``cookie``; each answer's status and Location."""
    import threading

    barrier = threading.Barrier(times)
    results: list[tuple[int, str]] = []

    def submit() -> None:
        browser = app.test_client()
        browser.set_cookie("session", cookie)
        barrier.wait()
        response = browser.post(path, data=data)
        results.append((response.status_code, response.headers.get("Location", "")))

    threads = [threading.Thread(target=submit) for _ in range(times)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == times
    return results


def test_twenty_simultaneous_submissions_record_one_acceptance(app, api, client):
    """Run on both databases; on PostgreSQL the unique index settles the race."""
    customer, made = invited(api)
    sign_in_from_link(client, made)
    change_password(client)
    token = csrf(client.get("/agreement"))
    cookie = client.get_cookie("session").value
    data = {
        "csrf_token": token,
        "first_name": "Ana",
        "last_name": "Silva",
        "email": "ana@contoso.example.test",
        "accept": "yes",
    }
    results = at_once(app, cookie, "/agreement", data)
    assert all(
        status == 302 and where.endswith("/account?accepted=1") for status, where in results
    ), results
    with app.app_context():
        session = db.session()
        assert session.scalar(select(func.count()).select_from(AgreementAcceptance)) == 1
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 1
    status = api.get(f"/v1/customers/{customer['id']}/directSignedMicrosoftCustomerAgreementStatus")
    assert status.get_json() == {"isSigned": True}


def test_database_error_during_acceptance_leaves_nothing_and_the_next_try_works(
    app, api, client, monkeypatch
):
    from sqlalchemy.exc import OperationalError
    from sqlalchemy.orm import Session

    customer, made = invited(api)
    sign_in_from_link(client, made)
    change_password(client)
    real_commit = Session.commit

    def failing_commit(self):
        raise OperationalError("COMMIT", {}, Exception("server closed the connection"))

    monkeypatch.setattr(Session, "commit", failing_commit)
    page = client.get("/agreement")
    data = {
        "csrf_token": csrf(page),
        "first_name": "Ana",
        "last_name": "Silva",
        "email": "ana@contoso.example.test",
        "accept": "yes",
    }
    failed = client.post("/agreement", data=data)
    assert failed.status_code == 503
    assert "Nothing was changed" in failed.get_data(as_text=True)
    monkeypatch.setattr(Session, "commit", real_commit)
    with app.app_context():
        session = db.session()
        assert session.scalar(select(func.count()).select_from(AgreementAcceptance)) == 0
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 0
    assert client.post("/agreement", data=data).status_code == 302
    status = api.get(f"/v1/customers/{customer['id']}/directSignedMicrosoftCustomerAgreementStatus")
    assert status.get_json() == {"isSigned": True}


# --- what page views write and run ------------------------------------------------------------


def last_seen(app) -> datetime:
    from portal.core.models import CustomerSession

    with app.app_context():
        # The live one: a password change ends the session it began in and goes on in another.
        return (
            db.session()
            .scalars(select(CustomerSession.last_seen_at).where(CustomerSession.ended_at.is_(None)))
            .one()
        )


def test_page_views_write_the_last_seen_time_at_most_once_a_minute(app, api, client):
    _, made = invited(api)
    start = datetime.now(UTC).replace(microsecond=0)
    with time_machine.travel(start, tick=False):
        sign_in_from_link(client, made)
        change_password(client)
    with time_machine.travel(start + timedelta(seconds=50), tick=False):
        assert client.get("/agreement").status_code == 200
    assert last_seen(app) == start
    with time_machine.travel(start + timedelta(seconds=90), tick=False):
        assert client.get("/agreement").status_code == 200
    assert last_seen(app) == start + timedelta(seconds=90)


def test_a_page_view_keeps_the_session_alive_past_the_first_idle_time(app, api, client):
    _, made = invited(api)
    idle = timedelta(seconds=app.config["SESSION_IDLE_TIMEOUT"])
    start = datetime.now(UTC)
    with time_machine.travel(start, tick=False):
        sign_in_from_link(client, made)
        change_password(client)
    with time_machine.travel(start + idle - timedelta(seconds=60), tick=False):
        assert client.get("/agreement").status_code == 200
    with time_machine.travel(start + idle + timedelta(seconds=60), tick=False):
        assert client.get("/agreement").status_code == 200
    with time_machine.travel(start + 3 * idle, tick=False):
        assert client.get("/agreement").headers["Location"].startswith("/signin")
        # The idle session ended on the server too.
        assert client.get("/agreement").headers["Location"].startswith("/signin")


def test_the_agreement_page_shows_the_customer_and_partner(api, client):
    _, made = invited(api, company_name="Fabrikam <Praxis> & Co")
    sign_in_from_link(client, made)
    change_password(client)
    page = client.get("/agreement").get_data(as_text=True)
    assert "Fabrikam &lt;Praxis&gt; &amp; Co" in page
    assert 'value="Tania"' in page
    assert 'name="csrf_token"' in page


def test_a_signed_in_customer_can_open_an_invitation_link(api, client):
    _, made = invited(api)
    sign_in_from_link(client, made)
    change_password(client)
    _, other = invited(api, company_name="Northwind Traders")
    page = client.get(link_path(other))
    assert page.status_code == 200
    assert "Northwind Traders" in page.get_data(as_text=True)


def test_the_icon_is_there_where_browsers_look(client):
    page = client.get("/signin")
    assert b'rel="icon" href="/static/favicon.svg"' in page.data
    moved = client.get("/favicon.ico")
    assert (moved.status_code, moved.headers["Location"]) == (301, "/static/favicon.svg")
    with client.get("/static/favicon.svg") as icon:
        assert icon.status_code == 200
        assert icon.mimetype == "image/svg+xml"
        assert b"<svg" in icon.data


@pytest.mark.parametrize("mail_server", ["", "127.0.0.1"])
def test_the_thank_you_page_promises_an_email_only_when_mail_goes_out(
    app, api, client, mail_server
):
    app.config["MAIL_SERVER"] = mail_server
    _customer, made = invited(api)
    sign_in_from_link(client, made)
    change_password(client)
    assert accept(client).status_code == 302
    page = client.get("/account?accepted=1").get_data(as_text=True)
    assert "Thank you: the agreement is accepted" in page
    assert ("A confirmation is on its way to you by email." in page) is bool(mail_server)


def test_the_api_reference_is_served_from_the_portal_alone(client):
    page = client.get("/docs")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert 'spec-url="/v1/openapi.json"' in text
    assert 'src="/static/vendor/redoc/redoc.standalone.js"' in text
    assert "http" not in text.replace("http-equiv", "")  # nothing from elsewhere
    [policy] = page.headers.getlist("Content-Security-Policy")
    assert "script-src 'self';" in policy
    assert "unsafe-eval" not in policy
    with client.get("/static/vendor/redoc/redoc.standalone.js") as script:
        assert script.status_code == 200
        assert script.mimetype in ("text/javascript", "application/javascript")


def test_the_language_form_returns_to_the_page_without_a_stray_question_mark(client):
    response = client.get("/signin")
    assert '<input type="hidden" name="next" value="/signin">' in response.get_data(as_text=True)
    with_query = client.get("/signin?signed_out=1").get_data(as_text=True)
    assert 'name="next" value="/signin?signed_out=1"' in with_query
    data = {"csrf_token": csrf(response), "lang": "de", "next": "/signin"}
    moved = client.post("/language", data=data)
    assert moved.headers["Location"] == "/signin"
