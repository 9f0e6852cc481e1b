"""Single-line fields refuse every control character: CR and LF, but also what Python, mail
clients and browsers take for a line break (NEL, VT, FF, FS/GS/RS, U+2028, U+2029), other C0 and
C1 controls, and the bidirectional overrides and isolates. On every entry point (the API, the
dashboard's forms, the customer's agreement form, CSV imports, the command line), with a 400
naming the field, and nothing written."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import func, select

from portal.cli import main
from portal.core import db, validate
from portal.core.models import AgreementAcceptance, Customer, Invitation, Partner
from tests import test_dashboard as dash
from tests.conftest import customer_body
from tests.test_pages import accept, change_password, invited, sign_in_from_link

#: Each refused inside a value, as "Tania<char>Carr".
REFUSED = {
    "CR LF": "\r\n",
    "LF": "\n",
    "tab": "\t",
    "NUL": "\x00",
    "VT": "\x0b",
    "FF": "\x0c",
    "FS": "\x1c",
    "GS": "\x1d",
    "RS": "\x1e",
    "DEL": "\x7f",
    "NEL": "\x85",
    "CSI": "\x9b",
    "line separator": "\u2028",
    "paragraph separator": "\u2029",
    "right-to-left override": "\u202e",
    "left-to-right embedding": "\u202a",
    "first strong isolate": "\u2068",
    "pop directional isolate": "\u2069",
}
#: Text that is fine in a name: letters of other scripts, marks, the right-to-left mark.
ALLOWED = ["Zoë O'Brien-Núñez", "محمد\u200f", "李小龍", "Ægir Þórsson", "Nguyễn"]


@pytest.mark.parametrize("value", ALLOWED)
def test_names_in_any_script_are_one_line(value):
    assert validate.text(value, 100) is None


@pytest.mark.parametrize("name", REFUSED)
def test_the_checks_refuse_each_control(name):
    value = f"Tania{REFUSED[name]}Carr"
    assert validate.text(value, 100) == validate.CONTROL_PROBLEM
    assert validate.email(f"tania{REFUSED[name]}@contoso.example.test") is not None


def count(app: Any, model: Any) -> int:
    with app.app_context():
        return int(db.session().scalar(select(func.count()).select_from(model)) or 0)


#: Single-line fields of a new customer, as the API names them.
CUSTOMER_FIELDS = [
    ("billingProfile", "companyName"),
    ("billingProfile", "email"),
    ("billingProfile", "defaultAddress", "firstName"),
    ("billingProfile", "defaultAddress", "lastName"),
    ("billingProfile", "defaultAddress", "addressLine1"),
    ("billingProfile", "defaultAddress", "addressLine2"),
    ("billingProfile", "defaultAddress", "city"),
    ("billingProfile", "defaultAddress", "state"),
    ("billingProfile", "defaultAddress", "postalCode"),
    ("primaryContact", "firstName"),
    ("primaryContact", "lastName"),
    ("primaryContact", "email"),
]


def _set(body: dict[str, Any], path: tuple[str, ...], value: str) -> None:
    for part in path[:-1]:
        body = body.setdefault(part, {})
    body[path[-1]] = value


def _with(value: str, char: str) -> str:
    """``value`` with ``char`` inside it (an address keeps its shape around it)."""
    if "@" in value:
        local, _, domain = value.partition("@")
        return f"{local}{char}x@{domain}"
    return f"{value[:2]}{char}{value[2:]}"


def test_the_api_refuses_them_in_every_field_of_a_new_customer(app, api):
    for path in CUSTOMER_FIELDS:
        for name, char in REFUSED.items():
            body = customer_body()
            body["primaryContact"] = {
                "firstName": "Ana",
                "lastName": "Silva",
                "email": "ana@contoso.example.test",
            }
            base = "Contoso" if "@" not in path[-1] else "x@contoso.example.test"
            current: Any = body
            for part in path:
                current = current.get(part, {}) if isinstance(current, dict) else {}
            base = current if isinstance(current, str) and current else base
            _set(body, path, _with(base, char))
            response = api.post("/v1/customers", json=body)
            assert response.status_code == 400, (path, name)
            assert ".".join(path) in response.get_json()["parameters"], (path, name)
    assert count(app, Customer) == 0


def test_the_api_refuses_them_in_an_attestation_and_an_invitation(app, api):
    customer = api.create_customer()
    contact = {"firstName": "Tania", "lastName": "Carr", "email": "tania@contoso.example.test"}
    for name, char in REFUSED.items():
        for field in contact:
            body = {
                "primaryContact": {**contact, field: _with(contact[field], char)},
                "templateId": "117a77b0-9360-443b-8795-c6dedc750cf9",
                "dateAgreed": "2024-06-14T00:00:00Z",
                "type": "MicrosoftCustomerAgreement",
            }
            response = api.post(f"/v1/customers/{customer['id']}/agreements", json=body)
            assert response.status_code == 400, (field, name)
            assert f"primaryContact.{field}" in response.get_json()["parameters"], (field, name)
        to = _with("it@contoso.example.test", char)
        response = api.post(f"/v1/customers/{customer['id']}/invitations", json={"to": to})
        assert response.status_code == 400, name
        assert "to" in response.get_json()["parameters"], name
    assert count(app, AgreementAcceptance) == 0
    assert count(app, Invitation) == 0


def test_the_dashboard_forms_refuse_them(app, api, client):
    dash.add_user(app, api.partner_id, "avery@fabrikam.example.test")
    dash.sign_in(client, "avery@fabrikam.example.test")
    customer = api.create_customer()
    for name, char in REFUSED.items():
        page = client.get("/dashboard/customers/new")
        for field in ("company_name", "first_name", "city", "contact_last_name", "contact_email"):
            form = {**dash.NEW_CUSTOMER, "csrf_token": dash.csrf(page)}
            form[field] = _with(form.get(field) or "Somewhere", char)
            response = client.post("/dashboard/customers/new", data=form)
            assert response.status_code == 400, (field, name)
            # NUL is refused before the form is read (no text may hold it): the page says so.
            said = "control character" if char == "\x00" else 'aria-invalid="true"'
            assert said in response.get_data(as_text=True), (field, name)
        page = client.get(f"/dashboard/customers/{customer['id']}")
        response = client.post(
            f"/dashboard/customers/{customer['id']}/attest",
            data={
                "csrf_token": dash.csrf(page),
                "first_name": _with("Tania", char),
                "last_name": "Carr",
                "email": "tania@contoso.example.test",
                "date": "2024-06-14",
            },
        )
        assert response.status_code == 400, name
    assert count(app, Customer) == 1
    assert count(app, AgreementAcceptance) == 0


def test_the_customers_agreement_form_refuses_them(app, api, client):
    _, made = invited(api)
    sign_in_from_link(client, made)
    change_password(client)
    for name, char in REFUSED.items():
        for field, value in (("first_name", "Ana"), ("last_name", "Silva")):
            response = accept(client, **{field: _with(value, char)})
            assert response.status_code == 400, (field, name)
        response = accept(client, email=_with("ana@contoso.example.test", char))
        assert response.status_code == 400, name
    assert count(app, AgreementAcceptance) == 0


CSV_HEADER = "domain,companyName,email,culture,language,country,firstName,lastName"


def _quoted(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def test_csv_imports_refuse_them_row_by_row(app, api, client, runner, tmp_path):
    dash.add_user(app, api.partner_id, "avery@fabrikam.example.test")
    dash.sign_in(client, "avery@fabrikam.example.test")
    lines = [CSV_HEADER]
    for n, char in enumerate(REFUSED.values()):
        company = _quoted(_with("Contoso", char))
        lines.append(f"c{n}.example.test,{company},it@c{n}.example.test,en-US,en,US,Ann,Lee")
    page = client.get("/dashboard/import")
    response = client.post(
        "/dashboard/import",
        data={"csrf_token": dash.csrf(page), "file": dash._csv_file(lines)},
        content_type="multipart/form-data",
    )
    assert response.status_code == 200
    assert f"0 created, {len(REFUSED)} with problems" in response.get_data(as_text=True)

    source = tmp_path / "customers.csv"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8", newline="")
    result = runner.invoke(main, ["invite", "--csv", str(source), "--partner", api.partner_id])
    assert result.exit_code == 0, result.output
    assert f"0 created, {len(REFUSED)} with errors" in result.output
    assert count(app, Customer) == 0


@pytest.mark.parametrize("name", ["LF", "NEL", "line separator", "right-to-left override"])
def test_the_command_line_refuses_them(app, api, runner, name):
    char = REFUSED[name]
    partners_before = count(app, Partner)
    made = runner.invoke(
        main, ["partners", "create", "--name", f"Evil{char}Co", "--kind", "direct"]
    )
    assert made.exit_code != 0
    assert "control characters" in made.output
    assert count(app, Partner) == partners_before

    key = runner.invoke(
        main, ["partners", "keys", "create", api.partner_id, "--label", f"a{char}b"]
    )
    assert key.exit_code != 0
    assert "control characters" in key.output

    user = runner.invoke(
        main,
        ["partners", "users", "create", api.partner_id, "avery@fabrikam.example.test"]
        + ["--name", f"Avery{char}Admin", "--json"],
        env={"PORTAL_NEW_USER_PASSWORD": dash.PASSWORD},
    )
    assert user.exit_code != 0
    assert "control characters" in user.output

    customer = api.create_customer()
    invite = runner.invoke(main, ["invite", customer["id"], "--to", f"it{char}x@contoso.test"])
    assert invite.exit_code != 0
    assert count(app, Invitation) == 0


def test_nothing_refused_reaches_an_email(app, api, client):
    """What is accepted is one line: the text part of the invitation carries the name as given."""
    customer = api.create_customer(company_name="محمد\u200f Trading")
    made = api.post(f"/v1/customers/{customer['id']}/invitations", json={}).get_json()
    assert "محمد\u200f Trading" in made["textBody"]
    assert json.dumps(made["subject"]).count("\\n") == 0
