"""The OpenAPI document: valid OpenAPI 3.1, in step with the routes, and true to the running API.

Schemathesis generates requests for every documented operation (authenticated with a real partner
key, on customers and invitations that exist in several states) and checks every answer: no 5xx,
a documented status code, a body that conforms to the documented schema, documented headers,
rejection of invalid input and acceptance of valid input. A stricter check of our own also refuses
fields the document does not mention, so the document cannot quietly fall behind the code.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from openapi_spec_validator import OpenAPIV31SpecValidator
from schemathesis import BaseSchema, Case, CheckContext, HookContext, Response

from portal.core.catalog import CUSTOMER_AGREEMENT
from portal.core.catalog import of as catalog_of
from portal.core.models import PartnerKind, utcnow
from tests.conftest import Api, customer_body
from tests.test_api_agreements import record_direct_acceptance

DOCUMENT = "/v1/openapi.json"
MCA_TEMPLATE = "117a77b0-9360-443b-8795-c6dedc750cf9"
ATTESTATION = {
    "primaryContact": {
        "firstName": "Tania",
        "lastName": "Carr",
        "email": "tania.carr@contoso.example.test",
        "phoneNumber": "1234567890",
    },
    "templateId": MCA_TEMPLATE,
    "dateAgreed": "2024-06-14T00:00:00.000Z",
    "type": CUSTOMER_AGREEMENT,
}
#: Examples per operation in the fuzzing phase; the examples and coverage phases add their own.
MAX_EXAMPLES = 25


def _document(client: FlaskClient) -> dict[str, Any]:
    response = client.get(DOCUMENT)  # no API key: the contract is public
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    result: dict[str, Any] = response.get_json()
    return result


# --- the document itself ----------------------------------------------------------------------


def test_document_is_valid_openapi_3_1(client: FlaskClient) -> None:
    document = _document(client)
    assert document["openapi"] == "3.1.0"
    OpenAPIV31SpecValidator(document).validate()  # raises, naming the first problem
    schemathesis.openapi.from_dict(copy.deepcopy(document)).validate()
    for schema in document["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)


def _normalised(path: str) -> str:
    """``/v1/customers/<customer_id>``, ``/v1/customers/{customerId}``: ``/v1/customers/{}``."""
    return re.sub(r"<[^>]+>|\{[^}]+\}", "{}", path)


def test_document_and_routes_agree(app: Flask, client: FlaskClient) -> None:
    routes: set[tuple[str, str]] = set()
    for rule in app.url_map.iter_rules():
        if rule.rule == "/v1" or rule.rule.startswith("/v1/"):
            for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
                routes.add((method, _normalised(rule.rule)))
    documented = {
        (method.upper(), _normalised(path))
        for path, item in _document(client)["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    }
    assert routes, "no /v1 routes found"
    assert routes - documented == set(), "routes missing from the document"
    assert documented - routes == set(), "documented operations with no route"


def test_document_enums_match_the_catalog(app: Flask, client: FlaskClient) -> None:
    """Countries and agreement types are spelled out for partners; they come from the catalog."""
    document = _document(client)
    catalog = catalog_of(app)
    schemas = document["components"]["schemas"]
    assert schemas["Country"]["enum"] == sorted(catalog.countries)
    agreement_type = document["components"]["parameters"]["AgreementType"]["schema"]
    assert agreement_type["enum"] == [*catalog.types, "*"]
    assert agreement_type["default"] == "MicrosoftCloudAgreement"
    assert schemas["Agreement"]["properties"]["type"]["enum"] == catalog.types


# --- a strict reading of the document ---------------------------------------------------------


def _closed(node: Any, key: str | None = None) -> Any:
    """The schema with every object closed: fields the document does not name are refused."""
    if isinstance(node, list):
        return [_closed(item) for item in node]
    if not isinstance(node, dict):
        return node
    result = {k: _closed(v, k) for k, v in node.items()}
    already = "additionalProperties" in result or "unevaluatedProperties" in result
    # `if` only tests a condition, and `properties` maps names to schemas: neither is an object.
    if "properties" in result and key not in {"if", "properties"} and not already:
        result["unevaluatedProperties"] = False
    return result


class StrictDocument:
    """Finds the documented answer of an operation and validates a body against it, closed."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.components = _closed(document["components"])

    def _response(self, method: str, path: str, status: int) -> dict[str, Any]:
        responses = self.document["paths"][path][method.lower()]["responses"]
        assert str(status) in responses, f"{method} {path}: {status} is not documented"
        found: dict[str, Any] = responses[str(status)]
        if "$ref" in found:
            found = self.document["components"]["responses"][found["$ref"].rsplit("/", 1)[1]]
        return found

    def validate(self, method: str, path: str, status: int, body: Any) -> None:
        if method.lower() in self.document["paths"][path]:
            schema = self._response(method, path, status)["content"]["application/json"]["schema"]
        else:  # a method the path does not have: 405, with the usual error body
            assert status == 405, f"{method} {path}: {status}, not 405"
            schema = {"$ref": "#/components/schemas/Error"}
        root = {"components": self.components, **_closed(schema)}
        validator = Draft202012Validator(root, format_checker=Draft202012Validator.FORMAT_CHECKER)
        problems = [
            f"{'/'.join(map(str, error.absolute_path)) or '(body)'}: {error.message}"
            for error in validator.iter_errors(body)
        ]
        assert not problems, f"{method} {path} {status}: " + "; ".join(problems)


_strict_documents: dict[int, tuple[dict[str, Any], StrictDocument]] = {}


def _strict(raw: dict[str, Any]) -> StrictDocument:
    """One StrictDocument per loaded document (Schemathesis clones the schema per operation)."""
    cached = _strict_documents.get(id(raw))
    if cached is None or cached[0] is not raw:
        cached = _strict_documents[id(raw)] = (raw, StrictDocument(raw))
    return cached[1]


@schemathesis.check
def no_undocumented_fields(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """The body conforms to the documented schema with every object closed, formats included.

    Registered for every Schemathesis test of the session; this module has the only one.
    """
    if response.status_code >= 500:
        return None  # not_a_server_error reports these
    if "json" not in response.headers.get("content-type", [""])[0]:
        return None  # content_type_conformance reports these
    strict = _strict(case.operation.schema.raw_schema)
    strict.validate(case.method, case.operation.path, response.status_code, response.json())
    return True


# --- the world Schemathesis runs in -----------------------------------------------------------


@dataclass
class World:
    """A partner with customers in every state of acceptance, and somebody else's customer."""

    api: Api
    plain: str
    invited: str
    link_opened: str
    attested: str
    accepted: str
    foreign: str
    #: invitation id -> its customer's id
    invitations: dict[str, str]
    continuation_token: str

    @property
    def customers(self) -> list[str]:
        return [self.plain, self.invited, self.link_opened, self.attested, self.accepted]


def _invite(api: Api, client: FlaskClient, customer_id: str, open_link: bool = False) -> str:
    response = api.post(f"/v1/customers/{customer_id}/invitations", json={})
    assert response.status_code == 201, response.get_json()
    invitation: dict[str, Any] = response.get_json()
    if open_link:
        assert client.get(urlsplit(invitation["url"]).path).status_code == 200
    result: str = invitation["id"]
    return result


@pytest.fixture
def world(app: Flask, client: FlaskClient, make_api: Any) -> World:
    api: Api = make_api()
    plain = api.create_customer()["id"]
    invited = api.create_customer()["id"]
    link_opened = api.create_customer()["id"]
    attested = api.create_customer()["id"]
    response = api.post(f"/v1/customers/{attested}/agreements", json=ATTESTATION)
    assert response.status_code == 201, response.get_json()
    accepted = api.create_customer(culture="de-DE", language="de", country="DE")["id"]
    invitations = {
        _invite(api, client, invited): invited,
        _invite(api, client, link_opened, open_link=True): link_opened,
        _invite(api, client, accepted, open_link=True): accepted,
    }
    record_direct_acceptance(app, accepted)
    foreign = make_api(name="Litware").create_customer()["id"]
    token = api.get("/v1/customers?size=1").get_json()["continuationToken"]
    return World(api, plain, invited, link_opened, attested, accepted, foreign, invitations, token)


def _schemathesis_config(world: World) -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "seed": 20240614,
            "generation": {
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,  # the same cases on every run and machine
                "database": "none",  # no .hypothesis/ directory, no replay of old failures
                # NUL in an id is a known defect on PostgreSQL (500); test_known_defects has it.
                "allow-x00": False,
            },
            "phases": {"stateful": {"enabled": False}},
            "auth": {"openapi": {"bearerApiKey": {"bearer": world.api.key}}},
            # Real values where the server knows more than a schema can say: which ids exist,
            # which tokens it gave out, which cultures CLDR knows, that dateAgreed is not in the
            # future, and which templateId goes with which type. Values that do not fit the
            # schema are only used for negative cases, so valid cases stay valid.
            "dictionaries": {
                "customers": {"values": [*world.customers, world.foreign]},
                "invitations": {"values": list(world.invitations)},
                "tokens": {"values": [world.continuation_token]},
                "cultures": {"values": ["en-US", "de-DE", "fr-FR", "sr-Latn-RS", "pt-BR"]},
                "languages": {"values": ["en", "de", "fr", "sr", "pt"]},
                "dates": {
                    "values": [
                        "2024-06-14T00:00:00.000Z",
                        "2020-02-01T09:30:00+01:00",
                        "2019-10-01T23:59:59.999-08:00",
                    ]
                },
                "types": {"values": [CUSTOMER_AGREEMENT]},
                "templates": {"values": [MCA_TEMPLATE]},
            },
            "parameters": {
                "path.customerId": {"dictionary": "customers", "probability": 0.9},
                "path.invitationId": {"dictionary": "invitations", "probability": 0.9},
                "query.continuationToken": {"dictionary": "tokens"},
                "header.MS-ContinuationToken": {"dictionary": "tokens"},
                "body.billingProfile.culture": {"dictionary": "cultures"},
                "body.billingProfile.language": {"dictionary": "languages"},
                "body.language": {"dictionary": "languages"},
                "body.dateAgreed": {"dictionary": "dates"},
                "body.type": {"dictionary": "types"},
                "body.templateId": {"dictionary": "templates"},
            },
            "operations": [
                {
                    # The coverage phase builds boundary values from the patterns, and a culture
                    # or language must also be one CLDR knows, which a pattern cannot say: a
                    # boundary value such as "aa-0000000" is refused with a 400, rightly.
                    "include-operation-id": "createCustomer",
                    "phases": {
                        "coverage": {"checks": {"positive_data_acceptance": {"enabled": False}}}
                    },
                },
                {
                    # The same for the language of an invitation.
                    "include-operation-id": "createInvitation",
                    "phases": {
                        "coverage": {"checks": {"positive_data_acceptance": {"enabled": False}}}
                    },
                },
                {
                    # An address to check: its country must be one the catalog knows, and a
                    # phone number one the portal reads, as for createCustomer.
                    "include-operation-id": "validateAddress",
                    "phases": {
                        "coverage": {"checks": {"positive_data_acceptance": {"enabled": False}}}
                    },
                },
                {
                    # And of a personal relationship request.
                    "include-operation-id": "createPersonalRelationshipRequest",
                    "phases": {
                        "coverage": {"checks": {"positive_data_acceptance": {"enabled": False}}}
                    },
                },
                {
                    # A webhook's URL must be at a public address, which a pattern cannot say
                    # (https://127.0.0.1 fits it), and a partner has ten at most (then 409).
                    "include-operation-id": "createWebhook",
                    "checks": {"positive_data_acceptance": {"enabled": False}},
                },
            ],
        }
    )


@pytest.fixture
def api_schema(request: pytest.FixtureRequest, app: Flask, world: World) -> BaseSchema:
    # Schemathesis 4.32 (`from_fixture`) reads `node._nodeid`, which pytest 9.2 no longer has
    # (the id lives in `_id`). It only renames the node for its reports: give it the real id.
    node = request.node
    if not hasattr(node, "_nodeid"):
        node._nodeid = node.nodeid
    app.testing = False  # answer exceptions with the JSON 500, as in production
    schema = schemathesis.openapi.from_wsgi(DOCUMENT, app, config=_schemathesis_config(world))

    @schema.hook
    def map_case(context: HookContext, case: Case) -> Case:
        """A valid case with a real invitation id asks for it under its own customer."""
        positive = case.meta is not None and case.meta.generation.mode.value == "positive"
        owner = world.invitations.get(case.path_parameters.get("invitationId", ""))
        if positive and owner is not None:
            case.path_parameters["customerId"] = owner
        return case

    return schema


lazy_schema = schemathesis.pytest.from_fixture("api_schema")


@lazy_schema.parametrize()
def test_api_conforms_to_document(case: Case) -> None:
    """Every documented operation but GET /v1/openapi.json, which Schemathesis leaves out."""
    case.call_and_validate()


# --- answers Schemathesis rarely reaches by chance --------------------------------------------


class Checked:
    """Calls that must get a given status, with a body that conforms to the strict document."""

    def __init__(self, client: FlaskClient) -> None:
        self.strict = StrictDocument(_document(client))

    def __call__(self, method: str, path: str, status: int, response: Any) -> dict[str, Any]:
        assert response.status_code == status, response.get_json()
        body: dict[str, Any] = response.get_json()
        self.strict.validate(method, path, status, body)
        return body


CUSTOMER = "/v1/customers/{customerId}"
INVITATIONS = f"{CUSTOMER}/invitations"
INVITATION = f"{INVITATIONS}/{{invitationId}}"


def test_customers_answers(client: FlaskClient, world: World) -> None:
    check, api = Checked(client), world.api
    created = check("POST", "/v1/customers", 201, api.post("/v1/customers", json=customer_body()))
    assert created["userCredentials"]["userName"].startswith("admin@")
    again = check("GET", CUSTOMER, 200, api.get(f"/v1/customers/{created['id']}"))
    assert "userCredentials" not in again  # once only

    duplicate = customer_body(domain=created["companyProfile"]["domain"])
    body = check("POST", "/v1/customers", 409, api.post("/v1/customers", json=duplicate))
    assert body["code"] == 10409
    too_large = api.post("/v1/customers", data="x" * (65 * 1024), content_type="application/json")
    assert check("POST", "/v1/customers", 413, too_large)["code"] == 10413
    not_json = api.post("/v1/customers", data="{", content_type="application/json")
    assert check("POST", "/v1/customers", 400, not_json)["code"] == 10001

    # An unknown customer and somebody else's get the same 404.
    nobody = "00000000-0000-4000-8000-000000000000"
    unknown = check("GET", CUSTOMER, 404, api.get(f"/v1/customers/{nobody}"))
    foreign = check("GET", CUSTOMER, 404, api.get(f"/v1/customers/{world.foreign}"))
    assert unknown["errorName"] == foreign["errorName"] == "CustomerNotFound"

    # Paging, with the token as a query parameter or as a header.
    first = check("GET", "/v1/customers", 200, api.get("/v1/customers?size=2"))
    token = first["continuationToken"]
    response = api.get(f"/v1/customers?continuationToken={token}&size=2")
    by_query = check("GET", "/v1/customers", 200, response)
    by_header = api.get("/v1/customers?size=2", headers={"MS-ContinuationToken": token})
    assert by_query["items"] == by_header.get_json()["items"] != first["items"]

    unauthorised = client.get("/v1/customers", headers={"Authorization": "Bearer nope"})
    assert check("GET", "/v1/customers", 401, unauthorised)["code"] == 10401
    assert unauthorised.headers["WWW-Authenticate"] == 'Bearer realm="portal"'


def test_agreements_answers(app: Flask, client: FlaskClient, world: World, make_api: Any) -> None:
    check, api = Checked(client), world.api
    attest = f"{CUSTOMER}/agreements"
    repeat = api.post(f"/v1/customers/{world.attested}/agreements", json=ATTESTATION)
    body = check("POST", attest, 409, repeat)
    assert (body["code"], body["errorName"]) == (600061, "PartnerConfirmedAgreementAlreadyExists")

    # dateAgreed may not be in the future, but 5 minutes of clock skew are tolerated.
    future = dict(ATTESTATION, dateAgreed=(utcnow() + timedelta(minutes=10)).isoformat())
    response = api.post(f"/v1/customers/{world.plain}/agreements", json=future)
    assert check("POST", attest, 400, response)["code"] == 10004
    skewed = dict(ATTESTATION, dateAgreed=(utcnow() + timedelta(minutes=4)).isoformat())
    response = api.post(f"/v1/customers/{world.plain}/agreements", json=skewed)
    body = check("POST", attest, 201, response)
    assert (body["acceptanceMethod"], body["userId"]) == ("attested", api.partner_id)

    # isSigned: a direct acceptance only, never an attestation.
    signed = f"{CUSTOMER}/directSignedMicrosoftCustomerAgreementStatus"
    for customer_id, expected in ((world.accepted, True), (world.attested, False)):
        response = api.get(signed.replace("{customerId}", customer_id))
        assert check("GET", signed, 200, response) == {"isSigned": expected}
    status = f"{CUSTOMER}/acceptanceStatus"
    body = check("GET", status, 200, api.get(status.replace("{customerId}", world.accepted)))
    assert (body["state"], body["acceptance"]["acceptanceMethod"]) == ("accepted", "direct")
    body = check("GET", status, 200, api.get(status.replace("{customerId}", world.link_opened)))
    assert (body["state"], body["acceptance"]) == ("link-opened", None)

    # An indirect reseller may not attest, and is offered no `attest` step; its provider sees
    # the reseller's customers.
    eligibility = f"{CUSTOMER}/purchaseEligibility"
    provider: Api = make_api(PartnerKind.INDIRECT_PROVIDER, name="Northwind")
    reseller: Api = make_api(PartnerKind.INDIRECT_RESELLER, provider=provider, name="Adatum")
    theirs = reseller.create_customer()["id"]
    response = reseller.post(f"/v1/customers/{theirs}/agreements", json=ATTESTATION)
    assert check("POST", attest, 403, response)["code"] == 10403
    response = reseller.get(eligibility.replace("{customerId}", theirs))
    body = check("GET", eligibility, 200, response)
    assert (body["eligible"], body["error"]["code"]) == (False, 13605)
    assert [step["action"] for step in body["nextSteps"]] == ["inviteCustomer"]
    check("GET", CUSTOMER, 200, provider.get(f"/v1/customers/{theirs}"))

    # Documents: fallbacks to US and en-US, and case-sensitive country codes.
    document = "/v1/agreementtemplates/{templateId}/document"
    base = f"/v1/agreementtemplates/{MCA_TEMPLATE}/document"
    for query in ("?country=ZZ&language=xx-XX", ""):
        body = check("GET", document, 200, api.get(base + query))
        assert (body["country"], body["language"]) == ("US", "en-US")
    assert check("GET", document, 400, api.get(f"{base}?country=de"))["code"] == 10003
    cloud = catalog_of(app).by_type("MicrosoftCloudAgreement")
    assert cloud is not None
    response = api.get(f"/v1/agreementtemplates/{cloud.template_id}/document")
    assert check("GET", document, 404, response)["errorName"] == "AgreementDocumentNotFound"

    # agreementType: MicrosoftCloudAgreement when left out, * for all.
    listed = check("GET", "/v1/agreements", 200, api.get("/v1/agreements"))
    assert [a["agreementType"] for a in listed["items"]] == ["MicrosoftCloudAgreement"]
    every = check("GET", "/v1/agreements", 200, api.get("/v1/agreements?agreementType=*"))
    assert every["totalCount"] == len(catalog_of(app).types)


def test_invitations_answers(client: FlaskClient, world: World) -> None:
    check, api = Checked(client), world.api
    auth = {"Authorization": f"Bearer {api.key}"}
    path = INVITATIONS.replace("{customerId}", world.plain)
    made = check("POST", INVITATIONS, 201, api.post(path, json={"send": True, "language": "de"}))
    assert {"userName", "password", "textBody"} <= set(made)
    one = check("GET", INVITATION, 200, api.get(f"{path}/{made['id']}"))
    assert "password" not in one  # once only
    check("GET", INVITATIONS, 200, api.get(path))
    resend = f"{INVITATION}/resend"
    check("POST", resend, 202, api.post(f"{path}/{made['id']}/resend"))
    revoked = check(
        "DELETE", INVITATION, 200, api.client.delete(f"{path}/{made['id']}", headers=auth)
    )
    assert (revoked["status"], revoked["url"]) == ("revoked", None)
    body = check("POST", resend, 409, api.post(f"{path}/{made['id']}/resend"))
    assert body["code"] == 10411
    response = api.post(f"/v1/customers/{world.accepted}/invitations", json={})
    assert check("POST", INVITATIONS, 409, response)["code"] == 10410
    response = api.post(path, json={"to": "not an address"})
    body = check("POST", INVITATIONS, 400, response)
    assert body["parameters"] == {"to": "is not an email address"}
    response = api.get(f"{path}/{next(iter(world.invitations))}")  # somebody else's invitation
    assert check("GET", INVITATION, 404, response)["errorName"] == "InvitationNotFound"


# --- odd but possible input that once caused a 500 (found while writing the document) --------


def _attestation(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = copy.deepcopy(ATTESTATION)
    body.update(changes)
    return body


def _defect(reason: str, *args: Any, name: str) -> Any:
    return pytest.param(*args, id=name)


def _customer_with_phone(phone: str) -> dict[str, Any]:
    body = customer_body()
    body["billingProfile"]["defaultAddress"]["phoneNumber"] = phone
    return body


LONG_DOMAIN = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 57])  # 249 characters: valid
LONG_PHONE = "+" + "1" * 40  # 41 characters: valid


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        _defect(
            "size passes isdigit() but int() fails",
            "GET",
            "/v1/customers?size=%C2%B2",
            None,
            name="size-superscript-two",
        ),
        _defect(
            "int() refuses strings over 4300 digits",
            "GET",
            "/v1/customers?size=" + "9" * 5000,
            None,
            name="size-5000-digits",
        ),
        _defect(
            "OverflowError converting dateAgreed to UTC",
            "POST",
            "/v1/customers/{plain}/agreements",
            _attestation(dateAgreed="0001-01-01T00:00:00+01:00"),
            name="date-agreed-overflow",
        ),
        _defect(
            "a lone surrogate passes validation; encoding it fails",
            "POST",
            "/v1/customers/{plain}/agreements",
            json.dumps(ATTESTATION).replace('"Tania"', '"\\ud800"'),
            name="attestation-lone-surrogate",
        ),
        _defect(
            "a lone surrogate passes validation; encoding it fails",
            "POST",
            "/v1/customers",
            json.dumps(customer_body()).replace('"Contoso Ltd"', '"\\ud800"'),
            name="customer-lone-surrogate",
        ),
        _defect(
            "NUL in a path id reaches PostgreSQL",
            "GET",
            "/v1/customers/abc%00def",
            None,
            name="nul-in-customer-id",
        ),
        _defect(
            "NUL in a path id reaches PostgreSQL",
            "GET",
            "/v1/customers/abc%00def/directSignedMicrosoftCustomerAgreementStatus",
            None,
            name="nul-in-customer-id-signed-status",
        ),
        _defect(
            "NUL in a path id reaches PostgreSQL",
            "GET",
            "/v1/customers/{plain}/invitations/abc%00def",
            None,
            name="nul-in-invitation-id",
        ),
        _defect(
            "admin@<domain> overflows customer_credentials.user_name (254)",
            "POST",
            "/v1/customers",
            customer_body(domain=LONG_DOMAIN),
            name="long-domain",
        ),
        _defect(
            "'+' and 40 digits overflow customers.phone (40)",
            "POST",
            "/v1/customers",
            _customer_with_phone(LONG_PHONE),
            name="long-phone-customer",
        ),
        _defect(
            "'+' and 40 digits overflow agreement_acceptances.phone (40)",
            "POST",
            "/v1/customers/{plain}/agreements",
            _attestation(
                primaryContact={**ATTESTATION["primaryContact"], "phoneNumber": LONG_PHONE}
            ),
            name="long-phone-attestation",
        ),
    ],
)
def test_odd_input_is_refused_cleanly(
    app: Flask, world: World, method: str, path: str, body: Any
) -> None:
    """Odd but possible input gets a 4xx answer from the document, never a 500."""
    app.testing = False  # answer exceptions with the JSON 500, as in production
    if isinstance(body, dict):
        body = json.dumps(body)
    response = world.api.client.open(
        path.format(plain=world.plain),
        method=method,
        data=body,
        content_type="application/json" if body is not None else None,
        headers={"Authorization": f"Bearer {world.api.key}"},
    )
    assert 400 <= response.status_code < 500, response.get_json()
    assert response.get_json()["errorName"]


def test_long_names_fit_the_invitation_subject(app: Flask, make_api: Any) -> None:
    """Partner and company names of allowed lengths can make a subject over 300 characters."""
    app.testing = False  # answer exceptions with the JSON 500, as in production
    api: Api = make_api(name="P" * 150)
    customer = api.create_customer(company_name="C" * 200)["id"]
    response = api.post(f"/v1/customers/{customer}/invitations", json={})
    assert response.status_code == 201, response.get_json()
    subject = response.get_json()["subject"]
    assert len(subject) <= 300
    assert subject.startswith("P" * 150)
    assert subject.endswith("…")
