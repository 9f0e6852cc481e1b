"""What operators see: /healthz, /readyz, /metrics (one process and several), and log lines
that are JSON when asked and never carry a secret."""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from portal import create_app
from portal.core import db
from portal.core.config import normalise_database_url
from portal.web import logs
from tests.conftest import SECRET, customer_body
from tests.test_dashboard import PASSWORD, add_user

METRICS_TOKEN = "m" * 40
STATUS = "/v1/customers/{}/directSignedMicrosoftCustomerAgreementStatus"


def scrape(
    get: Any, token: str = METRICS_TOKEN
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, by name and labels."""
    response = get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response
    text = response.text if hasattr(response, "text") else response.get_data(as_text=True)
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def requests_of(samples: dict[Any, float], endpoint: str, status: str = "200") -> float:
    return sum(
        value
        for (name, labels), value in samples.items()
        if name == "portal_http_requests_total"
        and dict(labels).get("endpoint") == endpoint
        and dict(labels).get("status") == status
    )


# --- /healthz and /readyz ----------------------------------------------------------------------


def test_healthz_says_alive(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "alive"}


def test_readyz_checks_database_migrations_and_catalog(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "ready",
        "checks": {"database": "ok", "migrations": "ok", "catalog": "ok"},
    }


def test_readyz_is_503_while_migrations_are_pending(tmp_path):
    app = create_app(
        {"SECRET_KEY": SECRET, "DATABASE_URL": f"sqlite:///{tmp_path / 'new.db'}"}
    )  # never upgraded
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    checks = response.get_json()["checks"]
    assert checks["database"] == "ok"
    assert checks["migrations"].startswith("pending")


def test_readyz_is_503_on_an_older_schema_and_200_on_a_newer_one(tmp_path):
    """A rolling upgrade: a process newer than the schema waits; one older than it serves."""
    url = f"sqlite:///{tmp_path / 'rolling.db'}"
    engine = db.make_engine(url)
    db.upgrade(engine, "0015")
    app = create_app({"SECRET_KEY": SECRET, "DATABASE_URL": url})
    assert app.test_client().get("/readyz").status_code == 503
    db.upgrade(engine)
    with engine.begin() as connection:  # as a later release would leave it
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    fresh = create_app({"SECRET_KEY": SECRET, "DATABASE_URL": url})
    assert fresh.test_client().get("/readyz").status_code == 200


def test_readyz_is_503_when_the_database_is_unreachable():
    app = create_app({"SECRET_KEY": SECRET, "DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none"})
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["checks"]["database"].startswith("unreachable")
    assert response.get_json()["status"] == "not ready"


# --- /metrics, one process ---------------------------------------------------------------------


def test_metrics_are_off_without_a_token(client):
    assert client.get("/metrics").status_code == 404


@pytest.mark.parametrize("given", [None, "Bearer wrong", f"Basic {METRICS_TOKEN}", METRICS_TOKEN])
def test_metrics_need_the_token(make_app, given):
    client = make_app(METRICS_TOKEN=METRICS_TOKEN).test_client()
    headers = {"Authorization": given} if given else {}
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert "portal_http_requests" not in response.get_data(as_text=True)


def test_metrics_count_requests_by_endpoint_and_the_outbox(make_app, make_api):
    app = make_app(METRICS_TOKEN=METRICS_TOKEN)
    client = app.test_client()
    api = make_api()
    api.client = client
    before = scrape(client.get)
    customer = api.create_customer()
    api.post(f"/v1/customers/{customer['id']}/invitations", json={"send": True})
    for _ in range(3):
        assert api.get(STATUS.format(customer["id"])).status_code == 200
    assert api.get(STATUS.format(uuid.uuid4())).status_code == 404
    after = scrape(client.get)

    endpoint = "api.direct_signed_status"
    assert requests_of(after, endpoint) - requests_of(before, endpoint) == 3
    assert requests_of(after, endpoint, "404") - requests_of(before, endpoint, "404") == 1
    latency = ("portal_http_request_duration_seconds_count", (("endpoint", endpoint),))
    assert after[latency] - before.get(latency, 0) == 4
    assert after[("portal_outbox_depth", ())] == before[("portal_outbox_depth", ())] + 1
    assert after[("portal_outbox_oldest_age_seconds", ())] >= 0


def test_a_wrong_dashboard_password_is_counted(make_app, api):
    app = make_app(METRICS_TOKEN=METRICS_TOKEN)
    client = app.test_client()
    add_user(app, api.partner_id, "avery@fabrikam.example.test")
    failures = ("portal_signin_failures_total", (("who", "partner_user"),))
    before = scrape(client.get).get(failures, 0)
    page = client.get("/dashboard/signin").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token
    client.post(
        "/dashboard/signin",
        data={
            "csrf_token": token.group(1),
            "email": "avery@fabrikam.example.test",
            "password": "wrong password!",
        },
    )
    assert scrape(client.get)[failures] == before + 1


def test_probes_and_scrapes_are_not_counted(make_app):
    client = make_app(METRICS_TOKEN=METRICS_TOKEN).test_client()
    client.get("/healthz")
    client.get("/readyz")
    samples = scrape(client.get)
    assert not any(dict(labels).get("endpoint", "").startswith("ops.") for _name, labels in samples)


def test_every_answer_carries_a_request_id(client, api):
    page = client.get("/signin")
    assert re.fullmatch(r"[0-9a-f]{32}", page.headers["X-Request-Id"])
    assert (
        client.get("/signin", headers={"X-Request-Id": "edge-42.a"}).headers["X-Request-Id"]
        == "edge-42.a"
    )
    # Anything but a plain token is not repeated into headers and logs.
    assert (
        client.get("/signin", headers={"X-Request-Id": "a b<script>"}).headers["X-Request-Id"]
        != "a b<script>"
    )


# --- redaction ---------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["sqlite://", "postgresql://root@127.0.0.1:5432/test"])
def test_database_errors_never_show_their_parameters(url):
    """A failed statement's error (logged as "database unavailable: ...") names the SQL, not
    the values bound to it: they may be password hashes or addresses."""
    from sqlalchemy.exc import DBAPIError

    engine = db.make_engine(normalise_database_url(url))
    try:
        with engine.connect() as connection, pytest.raises(DBAPIError) as failed:
            connection.execute(text("SELECT * FROM no_such_table WHERE x = :p"), {"p": "s3cr3t"})
    finally:
        engine.dispose()
    assert "no_such_table" in str(failed.value)
    assert "s3cr3t" not in str(failed.value)
    assert "hidden" in str(failed.value)


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        ('"GET /invite/abc.DEF-123_x HTTP/1.1" 200', "abc.DEF-123_x"),
        ("GET /password/reset/Zm9vYmFy.sig?x=1", "Zm9vYmFy.sig"),
        ('"POST /relationship/tok.en HTTP/1.1"', "tok.en"),
        ("https://portal.example.test/invite/tok%2Fen#top", "tok%2Fen"),
        ("Authorization: Bearer pk_live_abcdef", "pk_live_abcdef"),
        ("authorization: bearer pk_live_abcdef", "pk_live_abcdef"),
        ("Cookie: session=eyJhbGciOi.x.y; theme=dark", "eyJhbGciOi.x.y"),
        ("user_name=a&password=hunter2hunter2&next=/", "hunter2hunter2"),
        ("csrf_token=IjQ3Y2Y.Zx&accept=yes", "IjQ3Y2Y.Zx"),
        ("?continuationToken=abc123", "abc123"),
    ],
)
def test_redact_removes_secrets_from_any_line(line, secret):
    assert secret not in logs.redact(line)
    assert "[redacted]" in logs.redact(line)


def test_redact_leaves_ordinary_lines_alone():
    line = '127.0.0.1 - - "GET /v1/customers?size=10 HTTP/1.1" 200 512 "-" "curl/8"'
    assert logs.redact(line) == line


# --- served: several processes, JSON lines, no secrets -------------------------------------------


@pytest.mark.slow
def test_metrics_add_up_every_worker(serving, api):
    base = serving(workers=2, PORTAL_METRICS_TOKEN=METRICS_TOKEN)
    customer = api.create_customer()
    key = {"Authorization": f"Bearer {api.key}"}
    for _ in range(40):  # a connection each: the kernel spreads them over both workers
        with requests.get(base + STATUS.format(customer["id"]), headers=key, timeout=10) as got:
            assert got.status_code == 200

    def counted() -> float:
        return requests_of(
            scrape(lambda path, **kw: requests.get(base + path, timeout=10, **kw)),
            "api.direct_signed_status",
        )

    # Each worker adds its counts every half second (ops.Tally): wait for the first time...
    deadline = time.monotonic() + 10
    while counted() != 40.0 and time.monotonic() < deadline:
        time.sleep(0.1)
    # ...then every scrape, whichever worker answers it, counts all of them, and no more.
    assert {counted() for _ in range(6)} == {40.0}


@pytest.mark.slow
def test_json_logs_show_each_request_once_and_no_secret(serving, app, api):
    """A whole journey over HTTP (partner API, customer link, sign-in, password change,
    acceptance, dashboard, scrape), then every line the server printed is checked."""
    base = serving(workers=1, PORTAL_LOG_FORMAT="json", PORTAL_METRICS_TOKEN=METRICS_TOKEN)
    add_user(app, api.partner_id, "avery@fabrikam.example.test")
    partner = requests.Session()
    partner.headers.update(
        {"Authorization": f"Bearer {api.key}", "MS-CorrelationId": "corr-journey-1"}
    )
    created = partner.post(f"{base}/v1/customers", json=customer_body(), timeout=10)
    assert created.status_code == 201, created.text
    customer_id = created.json()["id"]
    made = partner.post(f"{base}/v1/customers/{customer_id}/invitations", json={}, timeout=10)
    invitation = made.json()
    link_token = invitation["url"].rsplit("/invite/", 1)[1]

    customer = requests.Session()
    page = customer.get(base + "/invite/" + link_token, timeout=10)
    signed_in = customer.post(
        f"{base}/signin",
        data={
            "csrf_token": _csrf(page.text),
            "user_name": invitation["userName"],
            "password": invitation["password"],
        },
        timeout=10,
    )
    assert signed_in.url.endswith("/password"), signed_in.url
    new_password = "journey " + uuid.uuid4().hex
    changed = customer.post(
        f"{base}/password",
        data={
            "csrf_token": _csrf(signed_in.text),
            "password": new_password,
            "repeat": new_password,
        },
        timeout=10,
    )
    accepted = customer.post(
        f"{base}/agreement",
        data={
            "csrf_token": _csrf(changed.text),
            "first_name": "Ana",
            "last_name": "Silva",
            "email": "ana@contoso.example.test",
            "phone": "",
            "accept": "yes",
        },
        timeout=10,
    )
    assert accepted.status_code == 200
    status = partner.get(base + STATUS.format(customer_id), timeout=10)
    assert status.json()["isSigned"] is True
    customer.get(f"{base}/password/reset/reset-token-that-is-secret", timeout=10)

    dashboard = requests.Session()
    signin_page = dashboard.get(f"{base}/dashboard/signin", timeout=10)
    overview = dashboard.post(
        f"{base}/dashboard/signin",
        data={
            "csrf_token": _csrf(signin_page.text),
            "email": "avery@fabrikam.example.test",
            "password": PASSWORD,
        },
        timeout=10,
    )
    assert "/dashboard" in overview.url
    scraped = requests.get(
        f"{base}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10
    )
    assert scraped.status_code == 200

    secrets = {
        "API key": api.key,
        "invitation token": link_token,
        "temporary password": invitation["password"],
        "new password": new_password,
        "dashboard password": PASSWORD,
        "reset token": "reset-token-that-is-secret",
        "metrics token": METRICS_TOKEN,
        **{f"cookie {name}": value for name, value in customer.cookies.items()},
        **{f"dashboard cookie {name}": value for name, value in dashboard.cookies.items()},
        "CSRF token": _csrf(changed.text),
    }
    assert len(secrets) >= 10
    output = serving.stopped()
    for name, secret in secrets.items():
        assert secret not in output, f"the {name} is in the logs"
        assert secret[:16] not in output, f"the start of the {name} is in the logs"

    lines = [json.loads(line) for line in output.splitlines() if line.strip()]  # all JSON
    access = [line for line in lines if line["logger"] == "access"]
    api_lines = [line for line in access if line["path"].startswith("/v1/")]
    assert len(api_lines) == 3
    for line in api_lines:
        assert line["ms_correlation_id"] == "corr-journey-1"
        assert re.fullmatch(r"[\w.:-]{1,64}", line["request_id"])
        assert isinstance(line["status"], int)
        assert line["duration_ms"] >= 0
    assert {line["path"] for line in access} >= {
        "/invite/[redacted]",
        "/password/reset/[redacted]",
        "/signin",
        "/agreement",
        "/dashboard/signin",
        "/metrics",
    }
    page_ids = [line["request_id"] for line in access if not line["path"].startswith("/v1/")]
    assert all(re.fullmatch(r"[0-9a-f]{32}", rid) for rid in page_ids)
    assert len(set(page_ids)) == len(page_ids)
    assert any(line["logger"] != "access" for line in lines)  # gunicorn's own, as JSON too


def _csrf(text: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', text)
    assert match, text[:300]
    return match.group(1)


class _Answered:
    """What gunicorn's logger reads of an answered request."""

    def __init__(self, headers: list[tuple[str, str]], sent: int | None = 120) -> None:
        self.status = "200 OK"
        self.headers = headers
        self.sent = sent


_TOKEN_PATH = "/invite/WyJhYmMiLCJkZWYiXQ.axY5yg.NL09ckrluYLodiI-OOZ0jkddP5U"
_ACCESS_CASES = [
    # The status poll with Partner Center's tracking ids.
    (
        {"PATH_INFO": "/v1/customers/x/status", "HTTP_AUTHORIZATION": "Bearer ptl_secretkey"},
        [("MS-RequestId", "5c1e9a52-aaaa-4bbb-8ccc-0123456789ab"), ("MS-CorrelationId", "c-1")],
    ),
    # A link token in the path and the query, quotes in the user agent and the referrer.
    (
        {
            "PATH_INFO": _TOKEN_PATH,
            "QUERY_STRING": "token=abc&lang=de",
            "RAW_URI": _TOKEN_PATH + "?token=abc&lang=de",
            "HTTP_USER_AGENT": 'Mozilla "quoted" agent',
            "HTTP_REFERER": "https://mail.example.test/?password=hunter2",
        },
        [("Content-Type", "text/html")],
    ),
    # A basic-auth user, an ms-requestid header chosen by the client with a quote in it.
    (
        {"PATH_INFO": "/", "HTTP_AUTHORIZATION": "Basic dXNlciJuYW1lOnB3"},
        [("ms-requestid", 'a"b')],
    ),
]


@pytest.mark.parametrize(("environ", "headers"), _ACCESS_CASES)
@pytest.mark.parametrize("json_lines", [False, True])
def test_access_lines_are_gunicorns_own_with_free_text_redacted(environ, headers, json_lines):
    """The portal builds its access line itself (gunicorn's costs a tenth of a status poll):
    it must be gunicorn's line for the same request, with every free-text atom redacted."""
    import datetime

    from gunicorn.config import Config
    from gunicorn.glogging import Logger, SafeAtoms

    from portal.web import server

    environ = {
        "REQUEST_METHOD": "GET",
        "QUERY_STRING": "",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "192.0.2.7",
        "RAW_URI": environ["PATH_INFO"],
        server.ops.REQUEST_ID: "0123456789abcdef0123456789abcdef",
        **environ,
    }
    answered = _Answered(headers)
    took = datetime.timedelta(microseconds=2345)
    cfg = Config()
    cfg.set("access_log_format", server.ACCESS_LOG_FORMAT)
    portal_logger = server.AccessLog(cfg)
    portal_logger.json_lines = json_lines
    line = portal_logger.line(answered, environ, took)

    atoms = Logger(cfg).atoms(answered, [], environ, took)
    for key in ("r", "U", "q", "f", "a", "u", "{ms-requestid}o", "{ms-correlationid}o"):
        if isinstance(atoms.get(key), str):
            atoms[key] = logs.redact(atoms[key])
    if json_lines:
        got, want = (
            json.loads(line),
            json.loads(
                logs.access_line(
                    atoms,
                    atoms.get("{ms-requestid}o") or environ[server.ops.REQUEST_ID],
                )
            ),
        )
        assert got.pop("time")
        assert want.pop("time")
        assert got == want
    else:
        atoms["t"] = re.search(r"\[[^]]+\]", line).group(0)  # the same second, whichever
        assert line == server.ACCESS_LOG_FORMAT % SafeAtoms(atoms)
    for secret in ("ptl_secretkey", "hunter2", "NL09ckrluYLodiI", "token=abc"):
        assert secret not in line
