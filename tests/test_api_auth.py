"""API keys, uniform 401s, headers, cookies and failures of the database."""

from __future__ import annotations

import pytest

from portal import create_app
from portal.core import db
from portal.domain import partners

STATUS = "/v1/customers/{}/directSignedMicrosoftCustomerAgreementStatus"
ENDPOINTS = [
    "/v1/customers",
    "/v1/customers/{}",
    "/v1/agreements",
    STATUS,
    "/v1/customers/{}/acceptanceStatus",
    "/v1/customers/{}/purchaseEligibility",
    "/v1/customers/{}/agreements",
]


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Bearer ptl_not-a-real-key",
        "Bearer " + "k" * 5000,
        "Token ptl_x",
    ],
)
def test_missing_or_malformed_key_is_one_uniform_401(api, path, header):
    customer = api.create_customer()
    headers = {"Authorization": header} if header is not None else {}
    response = api.client.get(path.format(customer["id"]), headers=headers)
    assert response.status_code == 401
    assert response.get_json() == {
        "code": 10401,
        "errorName": "Unauthorized",
        "description": "A valid API key is required: send 'Authorization: Bearer <api key>'.",
        "message": "A valid API key is required: send 'Authorization: Bearer <api key>'.",
        "errorMessageExtended": "InternalErrorCode=10401",
        "isRetryable": False,
        "parameters": {},
    }
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "Set-Cookie" not in response.headers


def test_revoked_key_stops_on_the_next_request(app, api):
    customer = api.create_customer()
    status_path = STATUS.format(customer["id"])
    assert api.get(status_path).status_code == 200
    assert api.get("/v1/customers").status_code == 200
    with app.app_context():
        session = db.session()
        key = partners.list_keys(session, api.partner_id)[0]
        partners.revoke_key(session, key.id)
        session.commit()
    assert api.get(status_path).status_code == 401
    assert api.get("/v1/customers").status_code == 401
    assert api.post("/v1/customers", json={}).status_code == 401


def test_second_key_works_and_survives_revoking_the_first(app, api):
    with app.app_context():
        session = db.session()
        partner = partners.partner_for_key(session, api.key)
        second = partners.create_key(session, partner, label="ci")
        first = partners.list_keys(session, api.partner_id)[0]
        partners.revoke_key(session, first.id)
        session.commit()
    response = api.client.get("/v1/customers", headers={"Authorization": f"Bearer {second.secret}"})
    assert response.status_code == 200


def test_keys_are_stored_hashed(app, api):
    with app.app_context():
        key = partners.list_keys(db.session(), api.partner_id)[0]
        assert api.key not in (key.key_hash, key.prefix)
        assert len(key.key_hash) == 64


def test_api_responses_never_set_a_cookie_and_carry_security_headers(api):
    customer = api.create_customer()
    responses = [api.get(path.format(customer["id"])) for path in ENDPOINTS]
    responses.append(api.post("/v1/customers", data=b"{"))
    responses.append(api.client.get("/v1/openapi.json"))
    responses.append(api.get("/v1/nothing-here"))
    for response in responses:
        assert "Set-Cookie" not in response.headers, response.request.path
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"


def test_unknown_route_and_wrong_method_answer_json(api):
    missing = api.get("/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.get_json()["errorName"] == "NotFound"
    wrong = api.client.delete("/v1/agreements", headers={"Authorization": f"Bearer {api.key}"})
    assert wrong.status_code == 405
    assert wrong.get_json()["errorName"] == "MethodNotAllowed"
    assert "GET" in wrong.headers["Allow"]


def test_database_unreachable_is_a_clean_retryable_503(settings, tmp_path):
    settings["DATABASE_URL"] = f"sqlite:///{tmp_path}/missing-folder/portal.db"
    app = create_app(settings)
    response = app.test_client().get("/v1/customers", headers={"Authorization": "Bearer ptl_x"})
    assert response.status_code == 503
    body = response.get_json()
    assert body["errorName"] == "ServiceUnavailable"
    assert body["isRetryable"] is True
    assert "sqlite" not in body["description"].lower()


def test_database_back_after_a_failure(app, api, monkeypatch):
    """A request that fails on the database leaves nothing behind; the next one works."""
    from sqlalchemy.exc import OperationalError
    from sqlalchemy.orm import Session

    customer = api.create_customer()
    real_commit = Session.commit

    def failing_commit(self):
        raise OperationalError("COMMIT", {}, Exception("server closed the connection"))

    monkeypatch.setattr(Session, "commit", failing_commit)
    failed = api.post(
        "/v1/customers",
        json={**_body_of(customer), "companyProfile": {"domain": "second.example.test"}},
    )
    assert failed.status_code == 503
    monkeypatch.setattr(Session, "commit", real_commit)
    listed = api.get("/v1/customers").get_json()
    assert [c["id"] for c in listed["items"]] == [customer["id"]]
    assert api.get(f"/v1/customers/{customer['id']}").status_code == 200


def _body_of(customer):
    return {"billingProfile": {**customer["billingProfile"]}}


def test_recovers_when_the_database_drops_every_connection(app, api):
    """What a PostgreSQL restart does to the pool: the next requests still work."""
    from sqlalchemy import text

    customer = api.create_customer()
    path = f"/v1/customers/{customer['id']}"
    assert api.get(path).status_code == 200
    with app.app_context():
        engine = db.engine()
        if engine.dialect.name != "postgresql":
            # SQLite has no server to lose; the pool's pre-ping is what this checks.
            engine.dispose()
        else:
            killer = engine.connect()
            dropped = killer.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE usename = current_user AND datname = current_database() "
                    "AND pid <> pg_backend_pid() AND application_name = ''"
                )
            )
            assert dropped.rowcount >= 1  # the app's pooled connections
            killer.close()
    for _ in range(3):
        assert api.get(path).status_code == 200
        assert api.get(f"{path}/directSignedMicrosoftCustomerAgreementStatus").status_code == 200
