"""Microsoft's documented Partner Center samples (``tests/data/clients/microsoft_samples.json``,
verbatim from the REST docs) against the portal's OpenAPI document and the running API: its
request samples fit the request schemas and are accepted; its response samples fit the
response schemas wherever the two name the same field."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from tests import sdk_models

SAMPLES = json.loads(
    (Path(__file__).parent / "data" / "clients" / "microsoft_samples.json").read_text()
)["samples"]
DOCUMENT = json.loads(
    (Path(__file__).parent.parent / "portal" / "web" / "api" / "openapi.json").read_text()
)
#: Which of the document's schemas each documented sample is (request, response).
SCHEMAS = {
    "create a customer": ("CustomerCreate", "Customer"),
    "get a customer by id": (None, "Customer"),
    "get a list of customers": (None, "CustomerCollection"),
    "get customers by name/domain (filter)": (None, "CustomerCollection"),
    "get agreement metadata (Microsoft Cloud Agreement)": (None, "AgreementMetadataCollection"),
    "get agreement metadata for Microsoft Customer Agreement": (
        None,
        "AgreementMetadataCollection",
    ),
    "get agreement document (download MCA template)": (None, "AgreementDocument"),
    "confirm customer acceptance of Microsoft Customer Agreement": ("AgreementCreate", "Agreement"),
    "get confirmation of customer acceptance (list customer agreements)": (
        None,
        "AgreementCollection",
    ),
    "get direct-sign status of customer agreement": (None, "DirectSignedStatus"),
}


def _example(operation: str, kind: str) -> dict[str, Any] | None:
    sample = next(s for s in SAMPLES if s["operation"] == operation)
    found = next((e for e in sample["examples"] if e["kind"] == kind), None)
    if found is None or found.get("body_text") is None:
        return None
    if "body" in found:
        body: dict[str, Any] = found["body"]
        return body
    # As published, some samples have trailing commas or miss one between members: mend
    # only that, so the rest is read as Microsoft wrote it.
    text = re.sub(r",(\s*[}\]])", r"\1", found["body_text"])
    text = re.sub(r'"\s*\n(\s*)"', '",\n\\1"', text)
    text = re.sub(r'"(\w+):"', r'"\1":"', text)  # "phoneNumber:"1234567890"
    mended: dict[str, Any] = json.loads(text)
    return mended


def _validator(schema_name: str, *, loose: bool) -> Draft202012Validator:
    """A validator of ``schema_name`` with the document's references; ``loose``: no member is
    required and any may be added (a documented answer names fields the portal has not)."""
    document = copy.deepcopy(DOCUMENT)

    def loosen(node: Any) -> None:
        if isinstance(node, dict):
            node.pop("required", None)
            if node.get("additionalProperties") is False:
                node.pop("additionalProperties")
            for value in node.values():
                loosen(value)
        elif isinstance(node, list):
            for value in node:
                loosen(value)

    if loose:
        loosen(document["components"])
    root = {**document, "$ref": f"#/components/schemas/{schema_name}"}
    return Draft202012Validator(root)


def _as_documented(body: Any, schema: dict[str, Any]) -> Any:
    """``body`` with its member names spelled as the document does (the API takes any case)."""
    if isinstance(body, dict):
        properties = _resolve(schema).get("properties", {})
        named = {name.lower(): name for name in properties}
        result = {}
        for key, value in body.items():
            name = named.get(key.lower(), key)
            result[name] = _as_documented(value, properties.get(name, {}))
        return result
    return body


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = DOCUMENT["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


@pytest.mark.parametrize("operation", [op for op, (req, _) in SCHEMAS.items() if req])
def test_documented_request_fits_the_request_schema(operation):
    request_schema = SCHEMAS[operation][0]
    assert request_schema
    body = _example(operation, "request")
    assert body is not None
    schema = {"$ref": f"#/components/schemas/{request_schema}"}
    errors = list(_validator(request_schema, loose=False).iter_errors(_as_documented(body, schema)))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]


@pytest.mark.parametrize("operation", list(SCHEMAS))
def test_documented_answer_fits_the_answer_schema(operation):
    body = _example(operation, "response")
    assert body is not None, operation
    errors = list(_validator(SCHEMAS[operation][1], loose=True).iter_errors(body))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]


def test_documented_requests_are_accepted(api):
    create = _example("create a customer", "request")
    created = api.post("/v1/customers", json=create)
    assert created.status_code == 201, created.get_json()
    customer = created.get_json()
    assert customer["billingProfile"]["culture"] == "en-US"
    attest = _example("confirm customer acceptance of Microsoft Customer Agreement", "request")
    attested = api.post(f"/v1/customers/{customer['id']}/agreements", json=attest)
    assert attested.status_code == 201, attested.get_json()


@pytest.mark.parametrize("client", sorted(sdk_models.CLIENTS))
def test_the_sdk_model_reads_the_documented_answers(client):
    """The model of the clients' classes reads Microsoft's own answers: it asks no more of the
    portal than the clients ask of Partner Center."""
    model = sdk_models.CLIENTS[client]
    read = {
        "get a customer by id": "Customer",
        "get a list of customers": "SeekBasedResourceCollection<Customer>",
        "get agreement metadata for Microsoft Customer Agreement": (
            "ResourceCollection<AgreementMetaData>"
        ),
        "get agreement document (download MCA template)": "AgreementDocument",
        "confirm customer acceptance of Microsoft Customer Agreement": "Agreement",
        "get direct-sign status of customer agreement": "DirectSignedCustomerAgreementStatus",
    }
    for operation, name in read.items():
        body = _example(operation, "response")
        assert sdk_models.read(model, sdk_models.Obj(name), body) is not None, operation
