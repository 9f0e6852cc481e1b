"""What Partner Center's own clients send: PascalCase bodies with nulls written out, their
tracking headers used as idempotency keys, their pagers, and providers creating for resellers."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from portal.core import db
from portal.core.models import ApiRequest, Partner, PartnerKind, utcnow
from portal.domain import customers, idempotency, partners
from tests.conftest import customer_body


def pascal(value: Any) -> Any:
    """``value`` as Newtonsoft's default resolver writes it: PascalCase names."""
    if isinstance(value, dict):
        return {key[:1].upper() + key[1:]: pascal(item) for key, item in value.items()}
    return value


def test_pascal_case_customer_with_nulls_is_created(api):
    body = pascal(customer_body(culture="EN-US", language="En"))
    # What the .NET SDK writes out for the fields left unset.
    body.update(Id=None, CommerceId=None, UserCredentials=None, AssociatedPartnerId=None)
    body["CompanyProfile"].update(TenantId=None, CompanyName=None, Email=None)
    body["BillingProfile"]["DefaultAddress"]["AddressLine2"] = None
    body["BillingProfile"]["Attributes"] = {"ObjectType": "CustomerBillingProfile"}
    response = api.post("/v1/customers", json=body)
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    assert created["billingProfile"]["culture"] == "en-US"
    assert created["billingProfile"]["language"] == "en"
    assert created["billingProfile"]["defaultAddress"]["addressLine1"] == "1 Main Street"
    # Answers stay camelCase.
    assert "companyProfile" in created
    assert "CompanyProfile" not in created


def test_field_names_in_any_case_and_null_means_absent(api):
    body = customer_body()
    body["BILLINGPROFILE"] = body.pop("billingProfile")
    body["companyprofile"] = body.pop("companyProfile")
    body["primaryContact"] = None
    assert api.post("/v1/customers", json=body).status_code == 201


def test_a_required_field_sent_as_null_is_missing(api):
    body = pascal(customer_body())
    body["CompanyProfile"]["Domain"] = None
    response = api.post("/v1/customers", json=body)
    assert response.status_code == 400
    assert "companyProfile.domain" in response.get_json()["parameters"]


def test_two_spellings_with_different_values_are_refused(api):
    body = customer_body()
    body["CompanyProfile"] = {"Domain": "other.example.test"}
    response = api.post("/v1/customers", json=body)
    assert response.status_code == 400
    problem = response.get_json()["parameters"]["companyProfile"]
    assert "more than once" in problem
    assert api.get("/v1/customers").get_json()["totalCount"] == 0


def test_two_spellings_with_the_same_value_are_one(api):
    body = customer_body()
    body["CompanyProfile"] = dict(body["companyProfile"])
    assert api.post("/v1/customers", json=body).status_code == 201


def test_pascal_case_attestation(api):
    created = api.create_customer()
    body = {
        "PrimaryContact": {
            "FirstName": "Tania",
            "LastName": "Carr",
            "Email": "someone@example.com",
            "PhoneNumber": None,
        },
        "TemplateId": "117a77b0-9360-443b-8795-c6dedc750cf9",
        "DateAgreed": "2018-06-14T00:00:00Z",
        "Type": "MicrosoftCustomerAgreement",
        "UserId": None,
        "AgreementLink": None,
        "Attributes": {"ObjectType": "Agreement"},
    }
    response = api.post(f"/v1/customers/{created['id']}/agreements", json=body)
    assert response.status_code == 201, response.get_json()
    answer = response.get_json()
    assert answer["primaryContact"]["email"] == "someone@example.com"
    assert answer["type"] == "MicrosoftCustomerAgreement"


def test_a_retried_create_gets_the_first_answer_with_its_credentials(api):
    body = customer_body()
    headers = {"MS-RequestId": str(uuid.uuid4())}
    first = api.post("/v1/customers", json=body, headers=headers)
    assert first.status_code == 201
    again = api.post("/v1/customers", json=body, headers=headers)
    assert again.status_code == 201
    assert again.get_json() == first.get_json()
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["MS-RequestId"] == headers["MS-RequestId"]
    assert api.get("/v1/customers").get_json()["totalCount"] == 1
    # A new id is a new request: the domain is taken now.
    other = api.post("/v1/customers", json=body, headers={"MS-RequestId": str(uuid.uuid4())})
    assert other.status_code == 409
    assert other.get_json()["code"] == 10409


def test_another_key_of_the_partner_gets_the_answer_without_credentials(app, api):
    with app.app_context():
        session = db.session()
        second = partners.create_key(session, session.get_one(Partner, api.partner_id))
        session.commit()
        secret = second.secret
    body = customer_body()
    headers = {"MS-RequestId": str(uuid.uuid4())}
    first = api.post("/v1/customers", json=body, headers=headers).get_json()
    replay = api.client.post(
        "/v1/customers", json=body, headers={**headers, "Authorization": f"Bearer {secret}"}
    )
    assert replay.status_code == 201
    replayed = replay.get_json()
    assert "userCredentials" not in replayed
    assert replayed == {k: v for k, v in first.items() if k != "userCredentials"}


def test_credentials_are_not_stored_in_clear(app, api):
    headers = {"MS-RequestId": str(uuid.uuid4())}
    created = api.post("/v1/customers", json=customer_body(), headers=headers).get_json()
    with app.app_context():
        row = db.session().scalars(select(ApiRequest)).one()
        password = created["userCredentials"]["password"]
        assert row.status == 201
        assert password not in (row.body or "")
        assert password not in (row.sealed or "")
        assert row.sealed


def test_the_same_id_for_another_request_is_refused(api):
    headers = {"MS-RequestId": str(uuid.uuid4())}
    assert api.post("/v1/customers", json=customer_body(), headers=headers).status_code == 201
    response = api.post("/v1/customers", json=customer_body(), headers=headers)
    assert response.status_code == 409
    assert response.get_json()["errorName"] == "RequestIdReused"
    assert api.get("/v1/customers").get_json()["totalCount"] == 1


def test_request_ids_are_per_partner(api, make_api):
    other = make_api(name="Northwind")
    headers = {"MS-RequestId": str(uuid.uuid4())}
    assert api.post("/v1/customers", json=customer_body(), headers=headers).status_code == 201
    assert other.post("/v1/customers", json=customer_body(), headers=headers).status_code == 201


def test_a_retried_attestation_gets_the_first_answer(api):
    created = api.create_customer()
    headers = {"MS-RequestId": str(uuid.uuid4())}
    path = f"/v1/customers/{created['id']}/agreements"
    first = api.post(path, json=ATTESTATION, headers=headers)
    assert first.status_code == 201
    again = api.post(path, json=ATTESTATION, headers=headers)
    assert (again.status_code, again.get_json()) == (201, first.get_json())
    assert api.get(path, query_string={"agreementType": "*"}).get_json()["totalCount"] == 1


def test_an_error_answer_is_replayed_too(api):
    headers = {"MS-RequestId": str(uuid.uuid4())}
    body = customer_body(country="XX")
    first = api.post("/v1/customers", json=body, headers=headers)
    assert first.status_code == 400
    again = api.post("/v1/customers", json=body, headers=headers)
    assert (again.status_code, again.get_json()) == (400, first.get_json())


def test_a_failed_request_lets_its_id_go(app, api, monkeypatch):
    headers = {"MS-RequestId": str(uuid.uuid4())}
    body = customer_body()

    def broken(*args, **kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(customers, "create_customer", broken)
    monkeypatch.setitem(app.config, "PROPAGATE_EXCEPTIONS", False)  # a 500, as in production
    assert api.post("/v1/customers", json=body, headers=headers).status_code == 500
    monkeypatch.undo()
    retried = api.post("/v1/customers", json=body, headers=headers)
    assert retried.status_code == 201


@pytest.mark.parametrize(("age", "status"), [(timedelta(seconds=-1), 201), (timedelta(1), 409)])
def test_an_abandoned_claim_is_taken_over(app, api, age, status, monkeypatch):
    """A claim left with no answer (its process died) is taken over by a retry once it is
    ``ABANDONED`` old; before that the retry waits, then is told the request is in progress."""
    request_id = str(uuid.uuid4())
    data = json.dumps(customer_body()).encode()
    with app.app_context():
        db.session().add(
            ApiRequest(
                partner_id=api.partner_id,
                request_id=request_id,
                fingerprint=idempotency.fingerprint("POST", "/v1/customers", b"", data),
                claimed_at=utcnow() - idempotency.ABANDONED + age,
            )
        )
        db.session().commit()
    if status == 409:
        monkeypatch.setattr(idempotency, "WAIT_SECONDS", 0.2)
    headers = {"MS-RequestId": request_id}
    answer = api.post("/v1/customers", data=data, content_type="application/json", headers=headers)
    assert answer.status_code == status
    if status == 409:
        assert answer.get_json()["errorName"] == "RequestInProgress"
        assert answer.headers["Retry-After"] == "1"
    # Another body under the same id is refused either way.
    refused = api.post("/v1/customers", json=customer_body(), headers=headers)
    assert refused.get_json()["errorName"] == "RequestIdReused"


def test_answers_are_forgotten_after_a_day(app, api):
    headers = {"MS-RequestId": str(uuid.uuid4())}
    body = customer_body()
    assert api.post("/v1/customers", json=body, headers=headers).status_code == 201
    with app.app_context():
        db.session().execute(
            update(ApiRequest).values(claimed_at=utcnow() - idempotency.KEEP - timedelta(1))
        )
        db.session().commit()
    # Past keeping, the id is new again: the customer exists, so this is a 409 of its own.
    assert api.post("/v1/customers", json=body, headers=headers).status_code == 409


@pytest.mark.parametrize("times", [8])
def test_duplicates_delivered_at_once_create_one_customer(app, api, times):
    body = customer_body()
    headers = {"MS-RequestId": str(uuid.uuid4())}
    answers = at_once(app, api, "/v1/customers", body, headers, times)
    assert {status for status, _ in answers} == {201}
    assert len({json.dumps(answer, sort_keys=True) for _, answer in answers}) == 1
    assert api.get("/v1/customers").get_json()["totalCount"] == 1


def test_duplicate_attestations_at_once_record_one(app, api):
    created = api.create_customer()
    path = f"/v1/customers/{created['id']}/agreements"
    headers = {"MS-RequestId": str(uuid.uuid4())}
    answers = at_once(app, api, path, ATTESTATION, headers, 8)
    assert {status for status, _ in answers} == {201}
    assert api.get(path, query_string={"agreementType": "*"}).get_json()["totalCount"] == 1


def at_once(app, api, path, body, headers, times):
    barrier = threading.Barrier(times)
    answers: list[tuple[int, Any]] = []

    def post() -> None:
        client = app.test_client()
        barrier.wait()
        response = client.post(
            path, json=body, headers={**headers, "Authorization": f"Bearer {api.key}"}
        )
        answers.append((response.status_code, response.get_json()))

    threads = [threading.Thread(target=post) for _ in range(times)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(answers) == times
    return answers


ATTESTATION = {
    "primaryContact": {"firstName": "Tania", "lastName": "Carr", "email": "someone@example.com"},
    "templateId": "117a77b0-9360-443b-8795-c6dedc750cf9",
    "dateAgreed": "2018-06-14T00:00:00Z",
    "type": "MicrosoftCustomerAgreement",
}


def test_a_provider_creates_a_customer_for_its_reseller(api, make_api):
    provider = make_api(PartnerKind.INDIRECT_PROVIDER, name="Provider")
    reseller = make_api(PartnerKind.INDIRECT_RESELLER, provider=provider, name="Reseller")
    body = pascal(customer_body())
    body["AssociatedPartnerId"] = reseller.partner_id.upper()
    response = provider.post("/v1/customers", json=body)
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    assert created["associatedPartnerId"] == reseller.partner_id
    # The reseller serves it as its own; the provider sees it through the reseller.
    own = reseller.get(f"/v1/customers/{created['id']}").get_json()
    assert "associatedPartnerId" not in own
    seen = provider.get(f"/v1/customers/{created['id']}").get_json()
    assert seen["associatedPartnerId"] == reseller.partner_id
    assert api.get(f"/v1/customers/{created['id']}").status_code == 404


@pytest.mark.parametrize("who", ["direct", "other-provider", "reseller-itself", "unknown"])
def test_associated_partner_id_must_be_the_callers_reseller(api, make_api, who):
    provider = make_api(PartnerKind.INDIRECT_PROVIDER, name="Provider")
    reseller = make_api(PartnerKind.INDIRECT_RESELLER, provider=provider, name="Reseller")
    caller = {
        "direct": api,
        "other-provider": make_api(PartnerKind.INDIRECT_PROVIDER, name="Other"),
        "reseller-itself": reseller,
        "unknown": provider,
    }[who]
    body = customer_body()
    body["associatedPartnerId"] = str(uuid.uuid4()) if who == "unknown" else reseller.partner_id
    response = caller.post("/v1/customers", json=body)
    assert response.status_code == 403
    answer = response.get_json()
    assert answer["errorName"] == "NotYourPartner"
    assert "associatedPartnerId" in answer["parameters"]
    for partner in (api, provider, reseller):
        assert partner.get("/v1/customers").get_json()["totalCount"] == 0


def official_sdk_path(uri: str) -> str:
    """The official .NET SDK: a uri not beginning with /v1 gets "/v1/" (its slash trimmed)."""
    return uri if uri.lower().startswith("/v1") else "/v1/" + uri.lstrip("/")


def dotnet_path(uri: str) -> str:
    """PartnerCenter.DotNet (the PowerShell module) and the Java SDK: "/v1/" + uri, verbatim."""
    return "/v1/" + uri


def walk(api, first: str, to_path, headers=True) -> list[list[str]]:
    """Follow ``links.next`` from ``first`` as a client does; the ids of each page."""
    pages: list[list[str]] = []
    response = api.get(first)
    while True:
        assert response.status_code == 200, response.get_json()
        page = response.get_json()
        pages.append([item["id"] for item in page["items"]])
        link = page["links"].get("next")
        if link is None:
            assert "continuationToken" not in page
            return pages
        sent = {h["key"]: h["value"] for h in link["headers"]} if headers else {}
        response = api.get(to_path(link["uri"]), headers=sent)
        assert len(pages) < 20


@pytest.mark.parametrize("to_path", [official_sdk_path, dotnet_path])
def test_every_client_follows_the_next_links(api, to_path):
    made = [api.create_customer()["id"] for _ in range(5)]
    pages = walk(api, "/v1/customers?size=2", to_path)
    assert pages == [made[0:2], made[2:4], made[4:5]]


def test_partner_centers_own_link_forms_are_served(api):
    """Links as Partner Center writes them ("/customers?…", "/v1/customers?…"), followed by
    PartnerCenter.DotNet and Java ("/v1/" + uri), reach the same resource."""
    made = [api.create_customer()["id"] for _ in range(3)]
    first = api.get("/v1/customers?size=2").get_json()
    token = first["continuationToken"]
    for path in (
        f"/v1//customers?size=2&seekOperation=Next&continuationToken={token}",
        f"/v1//v1/customers?size=2&seekOperation=Next&continuationToken={token}",
    ):
        page = api.get(path).get_json()
        assert [item["id"] for item in page["items"]] == made[2:]


def test_seek_queries_carry_only_the_operation_and_the_token(api):
    """The SDKs' seek query sends ``?seekOperation=Next`` and the MS-ContinuationToken header,
    without size or filter: the token remembers both."""
    contoso = [api.create_customer(company_name=f"Contoso {n}")["id"] for n in range(3)]
    api.create_customer(company_name="Fabrikam")
    query = json.dumps({"Field": "CompanyName", "Value": "Contoso", "Operator": "starts_with"})
    first = api.get("/v1/customers", query_string={"size": 2, "filter": query}).get_json()
    assert first["totalCount"] == 3
    token = {"MS-ContinuationToken": first["continuationToken"]}
    second = api.get("/v1/customers?seekOperation=Next", headers=token).get_json()
    assert [item["id"] for item in second["items"]] == contoso[2:]
    assert second["totalCount"] == 3
    back = second["links"]["previous"]
    assert "seekOperation=Previous" in back["uri"]
    previous = api.get(
        "/v1/customers?seekOperation=Previous",
        headers={back["headers"][0]["key"]: back["headers"][0]["value"]},
    ).get_json()
    assert [item["id"] for item in previous["items"]] == contoso[:2]
    assert "previous" not in previous["links"]
    assert previous["links"]["next"]


def test_previous_walks_back_through_every_page(api):
    made = [api.create_customer()["id"] for _ in range(7)]
    pages = walk(api, "/v1/customers?size=3", dotnet_path)
    last = api.get("/v1/customers?size=3").get_json()
    while "next" in last["links"]:
        last = api.get(dotnet_path(last["links"]["next"]["uri"])).get_json()
    back: list[list[str]] = [[item["id"] for item in last["items"]]]
    while "previous" in last["links"]:
        last = api.get(dotnet_path(last["links"]["previous"]["uri"])).get_json()
        back.insert(0, [item["id"] for item in last["items"]])
    assert back == pages == [made[0:3], made[3:6], made[6:7]]


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("seekOperation=Sideways", "seekOperation"),
        ("continuationToken=forged", "continuationToken"),
    ],
)
def test_seeking_without_a_usable_token_is_400(api, query, named):
    api.create_customer()
    response = api.get(f"/v1/customers?{query}")
    assert response.status_code == 400
    assert named in response.get_json()["parameters"]


def test_without_a_token_every_seek_starts_at_the_first_page(api):
    made = [api.create_customer()["id"] for _ in range(3)]
    for operation in ("Next", "previous", "FIRST"):
        page = api.get(f"/v1/customers?size=2&seekOperation={operation}").get_json()
        assert [item["id"] for item in page["items"]] == made[:2]


def test_the_java_sdks_filter_is_understood(api):
    wanted = api.create_customer(company_name="Contoso Java")["id"]
    api.create_customer(company_name="Fabrikam")
    query = json.dumps(
        {"operator": "StartsWith", "fieldType": "String", "field": "CompanyName", "value": "Con"}
    )
    page = api.get("/v1/customers", query_string={"size": 40, "filter": query}).get_json()
    assert [item["id"] for item in page["items"]] == [wanted]
    wrong = query.replace('"String"', '"Number"')
    assert api.get("/v1/customers", query_string={"filter": wrong}).status_code == 400


# --- what New-PartnerCustomer asks before it creates ------------------------------------------


def test_domain_check_is_404_when_free_and_200_when_taken(api, make_api):
    taken = make_api(name="Other").create_customer()["companyProfile"]["domain"]
    assert (
        api.client.head("/v1/domains/free.example.test", headers=api._headers(None)).status_code
        == 404
    )
    response = api.client.head(f"/v1/domains/{taken.upper()}", headers=api._headers(None))
    assert response.status_code == 200
    assert api.client.head(f"/v1/domains/{taken}").status_code == 401


def test_country_validation_rules_say_what_the_portal_checks(api):
    us = api.get("/v1/countryvalidationrules/US").get_json()
    assert us["iso2Code"] == "US"
    assert us["defaultCulture"] == "en-US"
    assert "WA" in us["supportedStatesList"]
    assert us["isStateRequired"] is False
    germany = api.get("/v1/countryvalidationrules/de").get_json()
    assert germany["supportedCulturesList"][0] == "de-DE"
    assert "de" in germany["supportedLanguagesList"]
    assert germany["supportedStatesList"] == []
    assert api.get("/v1/countryvalidationrules/XX").status_code == 404


def test_address_validation_is_true_or_names_the_fields(api):
    address = {
        "AddressLine1": "One Microsoft Way",
        "City": "Redmond",
        "Country": "US",
        "PostalCode": "98052",
        "State": "WA",
    }
    ok = api.post("/v1/validations/address", json=address)
    assert (ok.status_code, ok.get_json()) == (200, True)
    bad = api.post("/v1/validations/address", json={**address, "Country": "XX", "City": "a\nb"})
    assert bad.status_code == 400
    assert set(bad.get_json()["parameters"]) == {"country", "city"}


def test_a_retried_delete_and_invitation_get_the_first_answers(app, api):
    """DELETE too: a revocation retried answers as the first did (not 409 InvitationClosed), and
    a retried invitation comes back with its password to the same key."""
    created = api.create_customer()
    path = f"/v1/customers/{created['id']}/invitations"
    headers = {"MS-RequestId": str(uuid.uuid4())}
    made = api.post(path, json={}, headers=headers)
    assert made.status_code == 201
    again = api.post(path, json={}, headers=headers)
    assert again.get_json() == made.get_json()
    assert again.get_json()["password"]
    assert api.get(path).get_json()["totalCount"] == 1
    revoke = {"MS-RequestId": str(uuid.uuid4()), **api._headers(None)}
    target = f"{path}/{made.get_json()['id']}"
    first = api.client.delete(target, headers=revoke)
    assert first.status_code == 200
    retried = api.client.delete(target, headers=revoke)
    assert (retried.status_code, retried.get_json()) == (200, first.get_json())
    with app.app_context():
        kept = db.session().get(ApiRequest, (api.partner_id, revoke["MS-RequestId"]))
        assert kept is not None
        assert kept.status == 200


@pytest.mark.parametrize(
    "path",
    [
        "/v1/domains/" + "a" * 10_000,
        "/v1/domains/%00.example",
        "/v1/domains/bücher.example",
        "/v1/countryvalidationrules/" + "x" * 10_000,
        "/v1/countryvalidationrules/%00",
        "/v1//v1//v1/customers",
    ],
)
def test_new_paths_refuse_odd_input_cleanly(api, path):
    response = api.get(path)
    assert 400 <= response.status_code < 500, response.status_code
    assert response.get_json()["code"] in (10003, 10404)


def test_idempotency_keys_that_are_not_usable_are_ignored(api):
    """An MS-RequestId the portal would not echo (too long, odd characters) is no key: the
    request runs as if it carried none, and nothing is stored under it."""
    for odd in ("x" * 65, "a b", "ü"):
        body = customer_body()
        first = api.post("/v1/customers", json=body, headers={"MS-RequestId": odd})
        assert first.status_code == 201
        assert first.headers["MS-RequestId"] != odd


def test_a_retried_address_check_answers_true_again(api):
    """Not every answer is an object: the address check's ``true`` comes back as it was."""
    headers = {"MS-RequestId": str(uuid.uuid4())}
    address = {"Country": "US", "City": "Redmond"}
    first = api.post("/v1/validations/address", json=address, headers=headers)
    again = api.post("/v1/validations/address", json=address, headers=headers)
    assert (first.status_code, first.get_json()) == (200, True)
    assert (again.status_code, again.get_json()) == (200, True)
