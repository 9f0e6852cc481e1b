"""Sweeps over every route: hostile input in every path segment, query parameter and form field
gets a clear 4xx, never a 5xx (PostgreSQL refuses NUL in text, so this runs on both databases);
every response but a static file is kept by no cache; HSTS with an https base URL; the reverse
proxies setting; the CSV import stops at its row limit; a search for a control character."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from flask import Flask

from portal.core import db
from portal.domain import bulk
from tests import test_dashboard as dash
from tests.test_pages import accept, change_password, csrf, invited, sign_in_from_link

#: Values that have broken web apps: NUL (PostgreSQL refuses it in text), line breaks, the
#: Unicode line separator, bytes that are not UTF-8 (a surrogate's, in a path), a LIKE wildcard,
#: something too long.
HOSTILE = ["\x00", "a\x00b", "\r\n", "\u2028", "%", "%00", "%ff", "%ED%B3%BF", "x" * 5000]

#: Every form field the portal reads, by any of its forms.
FORM_FIELDS = [
    "user_name", "password", "email", "next", "lang", "current", "repeat", "first_name",
    "last_name", "phone", "accept", "company_name", "domain", "culture", "country",
    "address_line1", "address_line2", "city", "state", "postal_code", "contact_first_name",
    "contact_last_name", "contact_email", "contact_phone", "secrecy", "date", "language", "send",
    "credentials", "text_body", "format", "offset", "limit", "invitation",
]  # fmt: skip
QUERY_PARAMETERS = [
    "q", "state", "after", "next", "size", "continuationToken", "seekOperation", "language",
    "country", "agreementType", "signed_out", "accepted", "done",
]  # fmt: skip


def _fill(rule: Any, value: str, known: dict[str, str]) -> str:
    path = rule.rule
    for argument in rule.arguments:
        filled = known.get(argument, value)
        path = re.sub(rf"<(?:[a-z]+:)?{argument}>", lambda _m, f=filled: f, path)
    return path


@pytest.fixture
def everyone(app: Flask, api: Any) -> dict[str, Any]:
    return _everyone(app, api)


def _everyone(app: Flask, api: Any) -> dict[str, Any]:
    """A signed-in customer, a signed-in dashboard user, and ids that exist."""
    customer, made = invited(api)
    customer_browser = app.test_client()
    sign_in_from_link(customer_browser, made)
    change_password(customer_browser)
    email = f"avery-{customer['id'][:8]}@fabrikam.example.test"
    dash.add_user(app, api.partner_id, email)
    partner_browser = app.test_client()
    dash.sign_in(partner_browser, email)
    return {
        "api": api,
        "customer": customer_browser,
        "partner": partner_browser,
        "ids": {"customer_id": customer["id"], "invitation_id": made["id"]},
    }


def _no_server_error(response: Any, what: str) -> None:
    assert response.status_code < 500, (what, response.status_code, response.get_data()[:300])


def test_hostile_path_segments_and_queries_never_give_a_server_error(app, everyone):
    api = everyone["api"]
    auth = {"Authorization": f"Bearer {api.key}"}
    clients = {"anonymous": app.test_client(), **{k: everyone[k] for k in ("customer", "partner")}}
    rules = [r for r in app.url_map.iter_rules() if r.endpoint != "static"]
    for rule in rules:
        for value in HOSTILE:
            for known in ({}, everyone["ids"]):
                path = _fill(rule, value, known)
                for name, client in clients.items():
                    headers = auth if rule.rule.startswith("/v1") else {}
                    for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                        if method != "GET":
                            continue  # forms: the next test, with their CSRF token
                        query = {p: value for p in QUERY_PARAMETERS}
                        response = client.open(
                            path, method=method, headers=headers, query_string=query
                        )
                        _no_server_error(response, (name, method, path, repr(value)))


def _form_pages(everyone: dict[str, Any]) -> list[tuple[Any, str, str]]:
    """(client, a page holding the form's CSRF token, where the form posts)."""
    ids = everyone["ids"]
    customer = f"/dashboard/customers/{ids['customer_id']}"
    invitation = f"{customer}/invitations/{ids['invitation_id']}"
    partner, signed_in = everyone["partner"], everyone["customer"]
    return [
        (signed_in, "/agreement", "/agreement"),
        (signed_in, "/password", "/password"),
        (signed_in, "/agreement", "/language"),
        (partner, "/dashboard/customers/new", "/dashboard/customers/new"),
        (partner, customer, f"{customer}/attest"),
        (partner, customer, f"{customer}/invitations"),
        (partner, invitation, f"{invitation}/send"),
        (partner, "/dashboard/import", "/dashboard/import"),
        (partner, customer, f"{invitation}/withdraw"),
        # Last: they end the sessions.
        (signed_in, "/agreement", "/signout"),
        (partner, "/dashboard/", "/dashboard/signout"),
    ]


@pytest.mark.slow
def test_hostile_form_fields_never_give_a_server_error(app, api):
    def fresh() -> dict[str, Any]:
        return _everyone(app, api)

    for value in HOSTILE:
        everyone = fresh()
        for client, page_path, action in _form_pages(everyone):
            page = client.get(page_path)
            form = dict.fromkeys(FORM_FIELDS, value)
            form["csrf_token"] = csrf(page)
            response = client.post(action, data=form)
            _no_server_error(response, (action, repr(value)))
        for path, field in (("/signin", "user_name"), ("/dashboard/signin", "email")):
            anonymous = app.test_client()
            page = anonymous.get(path)
            form = {**dict.fromkeys(FORM_FIELDS, value), "csrf_token": csrf(page), field: value}
            _no_server_error(anonymous.post(path, data=form), (path, repr(value)))


def test_hostile_json_strings_never_give_a_server_error(app, api):
    from tests.conftest import customer_body

    customer = api.create_customer()
    for value in HOSTILE:
        body = customer_body(
            domain=value, culture=value, language=value, country=value, company_name=value
        )
        _no_server_error(api.post("/v1/customers", json=body), ("create", repr(value)))
        attestation = {
            "primaryContact": {"firstName": value, "lastName": value, "email": value},
            "templateId": value,
            "dateAgreed": value,
            "type": value,
        }
        response = api.post(f"/v1/customers/{customer['id']}/agreements", json=attestation)
        _no_server_error(response, ("attest", repr(value)))
        options = {"to": value, "language": value}
        response = api.post(f"/v1/customers/{customer['id']}/invitations", json=options)
        _no_server_error(response, ("invite", repr(value)))


# --- caching and transport -------------------------------------------------------------------


def test_nothing_but_static_files_may_be_cached(app, everyone):
    paths = {
        "anonymous": ["/signin", "/dashboard/signin", "/invite/x", "/nowhere", "/"],
        "customer": ["/account", "/password", "/agreement"],
        "partner": [
            "/dashboard/",
            "/dashboard/customers",
            f"/dashboard/customers/{everyone['ids']['customer_id']}",
        ],
    }
    clients = {"anonymous": app.test_client(), **{k: everyone[k] for k in ("customer", "partner")}}
    for who, listed in paths.items():
        for path in listed:
            response = clients[who].get(path)
            assert response.headers.get("Cache-Control") == "no-store", (who, path)
    auth = {"Authorization": f"Bearer {everyone['api'].key}"}
    assert app.test_client().get("/v1/agreements", headers=auth).headers["Cache-Control"] == (
        "no-store"
    )
    static = app.test_client().get("/static/portal.css")
    assert static.status_code == 200
    assert "no-store" not in static.headers.get("Cache-Control", "")
    static.close()


def test_strict_transport_security_with_an_https_base_url_only(app, make_app):
    assert app.config["BASE_URL"].startswith("https:")
    secure = app.test_client().get("/signin").headers
    assert secure["Strict-Transport-Security"].startswith("max-age=31536000")
    plain = make_app(BASE_URL="http://127.0.0.1:8000").test_client().get("/signin").headers
    assert "Strict-Transport-Security" not in plain


# --- behind a reverse proxy --------------------------------------------------------------------


def _accept_from(app: Flask, api: Any, forwarded: str | None) -> str:
    """The address recorded as evidence when the customer accepts through ``app``."""
    from portal.core.models import AgreementAcceptance

    _, made = invited(api)
    browser = app.test_client()
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    browser.environ_base.update(REMOTE_ADDR="10.0.0.2")  # the proxy, as the portal sees it
    for name, value in headers.items():
        browser.environ_base["HTTP_" + name.upper().replace("-", "_")] = value
    sign_in_from_link(browser, made)
    change_password(browser)
    assert accept(browser).status_code == 302
    with app.app_context():
        from sqlalchemy import select

        row = (
            db.session()
            .scalars(select(AgreementAcceptance).order_by(AgreementAcceptance.recorded_at.desc()))
            .first()
        )
        return row.ip_address


def test_without_trusted_proxies_the_client_is_whoever_connects(app, api):
    assert _accept_from(app, api, "203.0.113.7") == "10.0.0.2"


def test_with_one_trusted_proxy_its_forwarded_address_is_the_client(make_app, api):
    from tests.conftest import Api

    proxied = make_app(TRUSTED_PROXIES=1)
    partner = Api(proxied.test_client(), api.partner_id, api.key, api.kind)
    # The client may send an X-Forwarded-For of its own: only the proxy's last entry counts.
    assert _accept_from(proxied, partner, "198.51.100.66, 203.0.113.7") == "203.0.113.7"


def test_behind_a_proxy_the_address_limit_counts_each_client(make_app):
    proxied = make_app(TRUSTED_PROXIES=1, SIGNIN_LIMIT_ADDRESS="3 per hour")

    def attempt(client_address: str) -> int:
        browser = proxied.test_client()
        browser.environ_base.update(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=client_address)
        page = browser.get("/signin")
        form = {"csrf_token": csrf(page), "user_name": f"u{client_address}", "password": "x"}
        return browser.post("/signin", data=form).status_code

    assert [attempt("203.0.113.7") for _ in range(4)] == [401, 401, 401, 429]
    assert attempt("203.0.113.8") == 401  # another client behind the same proxy


# --- the CSV import stops at its limit ---------------------------------------------------------


def test_the_csv_reader_stops_at_the_row_limit(app):
    pulled = 0

    def lines() -> Any:
        nonlocal pulled
        yield "domain,companyName,email,culture,language,country,firstName,lastName\n"
        while True:
            pulled += 1
            yield "\n"

    with pytest.raises(bulk.TooManyRows):
        bulk.parse(lines(), "empty.csv", max_rows=100)
    assert pulled <= 202


def test_the_dashboard_refuses_a_file_of_empty_rows_without_reading_it_all(app, api, make_app):
    small = make_app(IMPORT_MAX_ROWS=50)
    dash.add_user(small, api.partner_id, "avery@fabrikam.example.test")
    browser = small.test_client()
    dash.sign_in(browser, "avery@fabrikam.example.test")
    page = browser.get("/dashboard/import")
    header = "domain,companyName,email,culture,language,country,firstName,lastName\n"
    boundary = "portalboundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n'
        f'{csrf(page)}\r\n--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="empty.csv"\r\nContent-Type: text/csv\r\n\r\n{header}'
        + "\n" * 2_000_000
        + f"\r\n--{boundary}--\r\n"
    ).encode()
    # Sent from memory: a large form the test client encodes itself goes into a temporary file
    # that it never closes.
    response = browser.post(
        "/dashboard/import",
        input_stream=io.BytesIO(body),
        content_type=f"multipart/form-data; boundary={boundary}",
        content_length=len(body),
    )
    assert response.status_code == 400
    assert "too many rows" in response.get_data(as_text=True)


# --- a search for control characters -----------------------------------------------------------


@pytest.mark.parametrize("query", ["\x00", "a\x00", "a\nb", "a\u2028b", "a\u202eb"])
def test_a_search_for_a_control_character_is_refused_saying_so(app, everyone, query):
    response = everyone["partner"].get("/dashboard/customers", query_string={"q": query})
    assert response.status_code == 400
    assert "control character" in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("path", "query"),
    [("/signin", {"next": "\x00"}), ("/account%00", {}), ("/dashboard/signin", {"x\x00": "1"})],
)
def test_nul_anywhere_gets_a_page_that_says_so(client, path, query):
    response = client.get(path, query_string=query)
    assert response.status_code == 400
    assert "control character (such as NUL)" in response.get_data(as_text=True)


def test_nul_in_the_api_is_a_json_400_naming_the_parameter(api):
    response = api.get("/v1/customers", query_string={"continuationToken": "a\x00"})
    assert response.status_code == 400
    assert response.get_json()["errorName"] == "ControlCharacterInRequest"
    assert response.get_json()["parameters"] == {"parameter": "continuationToken"}


# --- access logs -------------------------------------------------------------------------------


@pytest.mark.slow
def test_access_logs_show_no_invitation_token(serving, api):
    import urllib.error
    import urllib.request

    base = serving(workers=1)
    _, made = invited(api)
    token = made["url"].rsplit("/invite/", 1)[1]
    for path in (f"/invite/{token}", f"/invite/{token}?utm=x", f"/invite/{token[:-3]}xyz"):
        try:
            with urllib.request.urlopen(f"{base}{path}", timeout=10) as page:
                page.read()
        except urllib.error.HTTPError as error:
            error.close()
    logs = serving.stopped()
    assert "GET /invite/[redacted]" in logs
    assert token not in logs
    assert token[:20] not in logs
