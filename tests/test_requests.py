"""Request bodies: the size limit holds however a body is framed (Content-Length or chunked),
JSON is read only when sent as JSON, and every problem is said in the client's terms."""

from __future__ import annotations

import io
import json
import socket
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select

from portal.core import db
from portal.core.models import Customer
from tests.conftest import customer_body
from tests.test_dashboard import csrf

LIMIT = 64 * 1024


def count_customers(app: Any) -> int:
    with app.app_context():
        return int(db.session().scalar(select(func.count()).select_from(Customer)) or 0)


# --- the size limit, however the body is framed -----------------------------------------------


def chunked(client: Any, path: str, body: bytes, headers: dict[str, str]) -> Any:
    """A POST whose body has no length, as a server hands a chunked one to the app."""
    return client.post(
        path,
        input_stream=io.BytesIO(body),
        headers={"Transfer-Encoding": "chunked", **headers},
        environ_overrides={"wsgi.input_terminated": True},
    )


def padded_customer(size: int, tail: bytes = b"") -> bytes:
    """A valid customer body, padded with spaces to ``size`` bytes, then ``tail``."""
    body = json.dumps(customer_body()).encode()
    return body + b" " * (size - len(body)) + tail


@pytest.mark.parametrize(
    "body",
    [
        padded_customer(LIMIT, b"garbage that must never be ignored"),
        padded_customer(LIMIT + 1),
        b"x" * (10 * LIMIT),
    ],
    ids=["valid-then-garbage", "one-byte-over", "far-over"],
)
def test_a_chunked_body_over_the_limit_is_refused(app, api, body):
    headers = {"Authorization": f"Bearer {api.key}", "Content-Type": "application/json"}
    response = chunked(api.client, "/v1/customers", body, headers)
    assert response.status_code == 413
    assert response.get_json()["code"] == 10413
    assert count_customers(app) == 0


def test_a_chunked_body_within_the_limit_is_read_whole(app, api):
    headers = {"Authorization": f"Bearer {api.key}", "Content-Type": "application/json"}
    response = chunked(api.client, "/v1/customers", padded_customer(LIMIT), headers)
    assert response.status_code == 201
    assert count_customers(app) == 1


def test_a_chunked_form_over_the_limit_is_refused(app, client):
    """The same for the pages' forms (the CSRF check reads the form first)."""
    page = client.get("/signin")
    form = f"csrf_token={csrf(page)}&user_name=a&password=".encode() + b"x" * LIMIT
    response = chunked(
        client, "/signin", form, {"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 413


def test_the_import_takes_its_own_larger_limit_chunked_too(app, api, make_app):
    """The CSV import's limit (IMPORT_MAX_BYTES) applies to chunked uploads as to others."""
    from tests.test_dashboard import add_user, sign_in

    small = make_app(IMPORT_MAX_BYTES=8 * 1024)
    add_user(small, api.partner_id, "avery@fabrikam.example.test")
    browser = small.test_client()
    sign_in(browser, "avery@fabrikam.example.test")
    page = browser.get("/dashboard/import")
    boundary = "portalboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n'
        f'{csrf(page)}\r\n--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        'filename="c.csv"\r\nContent-Type: text/csv\r\n\r\n'
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    header = b"domain,companyName,email,culture,language,country,firstName,lastName\n"
    content_type = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    over = head + header + b"#" * (9 * 1024) + tail
    assert chunked(browser, "/dashboard/import", over, content_type).status_code == 413
    within = head + header + tail
    assert chunked(browser, "/dashboard/import", within, content_type).status_code == 200


def raw_post(base: str, path: str, key: str, chunks: list[bytes]) -> tuple[int, bytes]:
    """POST ``chunks`` with ``Transfer-Encoding: chunked`` over a socket, as a client would."""
    address = urlsplit(base)
    with socket.create_connection((address.hostname, address.port), timeout=10) as connection:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {address.netloc}\r\n"
            f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        ).encode()
        connection.sendall(head)
        try:
            for chunk in chunks:
                connection.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            connection.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before reading everything
        answer = b""
        while data := connection.recv(65536):
            answer += data
    status = int(answer.split(b" ", 2)[1])
    return status, answer.partition(b"\r\n\r\n")[2]


@pytest.mark.slow
def test_a_real_server_refuses_a_chunked_body_over_the_limit(serving, app, api):
    """Through gunicorn, which hands chunked bodies to the app as streams without a length."""
    base = serving(workers=1)
    body = padded_customer(LIMIT, b"and then garbage")
    pieces = [body[i : i + 8192] for i in range(0, len(body), 8192)]
    status, answer = raw_post(base, "/v1/customers", api.key, pieces)
    assert status == 413, answer
    assert json.loads(answer)["code"] == 10413
    assert count_customers(app) == 0
    status, answer = raw_post(
        base, "/v1/customers", api.key, [json.dumps(customer_body()).encode()]
    )
    assert status == 201, answer
    assert count_customers(app) == 1


# --- JSON only when sent as JSON ---------------------------------------------------------------

BODY = json.dumps(customer_body()).encode()


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/json; charset=latin-1",
        "application/jsonx",
    ],
)
@pytest.mark.parametrize(
    "path", ["/v1/customers", "/v1/customers/{id}/agreements", "/v1/customers/{id}/invitations"]
)
def test_a_body_not_sent_as_json_is_415_and_changes_nothing(app, api, content_type, path):
    customer = api.create_customer()
    headers = {"Authorization": f"Bearer {api.key}"}
    if content_type:
        headers["Content-Type"] = content_type
    response = api.client.post(path.format(id=customer["id"]), data=BODY, headers=headers)
    assert response.status_code == 415
    error = response.get_json()
    assert error["code"] == 10415
    assert error["errorName"] == "UnsupportedMediaType"
    assert count_customers(app) == 1
    listed = api.get(f"/v1/customers/{customer['id']}/invitations").get_json()
    assert listed["totalCount"] == 0
    status = api.get(f"/v1/customers/{customer['id']}/acceptanceStatus").get_json()
    assert status["acceptance"] is None


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON"]
)
def test_json_is_read_with_or_without_a_charset(app, api, content_type):
    response = api.post("/v1/customers", data=BODY, content_type=content_type)
    assert response.status_code == 201


def test_an_invitation_needs_no_body_and_no_content_type(api):
    customer = api.create_customer()
    response = api.post(f"/v1/customers/{customer['id']}/invitations")
    assert response.status_code == 201


def test_a_byte_order_mark_is_no_error(api):
    response = api.post(
        "/v1/customers", data=b"\xef\xbb\xbf" + BODY, content_type="application/json"
    )
    assert response.status_code == 201


#: Words that belong to Python, not to an HTTP client.
INTERNALS = ("codec", "sys.", "int_max_str_digits", "Traceback", "utf-8-sig", "decode using")


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        (b"\xff\xfe{}", "not UTF-8 text"),
        (b'{"a": ' + b"9" * 5000 + b"}", "more than 100 digits"),
        (b'{"a": -' + b"9" * 5000 + b"}", "more than 100 digits"),
        (b'{"a": NaN}', "NaN is not a JSON value"),
        (b'{"a": Infinity}', "Infinity is not a JSON value"),
        (b'{"a": 1,}', "line 1, column"),
        (b"[" * 30000 + b"]" * 30000, "nested too deeply"),
        (b'"just a string"', "must be a JSON object"),
    ],
)
def test_body_errors_say_what_is_wrong_in_the_clients_terms(app, api, payload, says):
    response = api.post("/v1/customers", data=payload, content_type="application/json")
    assert response.status_code == 400
    description = response.get_json()["description"]
    assert says in description
    assert not any(word in description for word in INTERNALS), description
    assert count_customers(app) == 0
