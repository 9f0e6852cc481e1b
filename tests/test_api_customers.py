"""POST/GET /v1/customers: creation, validation, paging, visibility."""

from __future__ import annotations

import uuid
from contextlib import contextmanager

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import func, select

from portal.core import db
from portal.core.errors import DomainTaken
from portal.core.models import (
    Customer,
    CustomerCredential,
    CustomerRelationship,
    Event,
    Partner,
    PartnerKind,
)
from portal.domain import customers
from tests.conftest import customer_body


def follow(link: dict) -> str:
    """The path PartnerCenter.DotNet and the Java SDK request for a link: "/v1/" + its uri."""
    return "/v1/" + link["uri"]


def count(app, model) -> int:
    with app.app_context():
        return db.session().scalar(select(func.count()).select_from(model))


def test_create_returns_partner_center_shape_and_credentials_once(api):
    body = customer_body(
        domain="contoso.example.test",
        culture="de-DE",
        language="de",
        country="DE",
        company_name="Contoso GmbH",
    )
    response = api.post("/v1/customers", json=body)
    assert response.status_code == 201
    created = response.get_json()
    assert created["id"] == created["companyProfile"]["tenantId"]
    assert response.headers["Location"] == f"/v1/customers/{created['id']}"
    assert created["companyProfile"]["domain"] == "contoso.example.test"
    billing = created["billingProfile"]
    assert (billing["culture"], billing["language"], billing["defaultAddress"]["country"]) == (
        "de-DE",
        "de",
        "DE",
    )
    assert billing["companyName"] == "Contoso GmbH"
    credentials = created["userCredentials"]
    assert credentials["userName"] == "admin@contoso.example.test"
    assert len(credentials["password"]) >= 22
    # The primary contact defaults to the billing address's person and the billing email.
    assert created["primaryContact"] == {
        "firstName": "Tania",
        "lastName": "Carr",
        "email": "billing@contoso.example.test",
        "phoneNumber": "1234567890",
    }

    again = api.get(f"/v1/customers/{created['id']}").get_json()
    assert "userCredentials" not in again
    assert again["companyProfile"] == created["companyProfile"]
    listed = api.get("/v1/customers").get_json()
    assert all("userCredentials" not in item for item in listed["items"])


def test_password_is_stored_hashed_and_temporary(app, api):
    created = api.create_customer()
    with app.app_context():
        credential = db.session().scalars(select(CustomerCredential)).one()
        assert credential.temporary
        assert created["userCredentials"]["password"] not in credential.password_hash
        assert credential.password_hash.startswith("hmac-sha256$")


def test_create_records_an_event(app, api):
    created = api.create_customer()
    with app.app_context():
        event = db.session().scalars(select(Event).where(Event.kind == "customer.created")).one()
        assert event.customer_id == created["id"]
        assert event.partner_id == api.partner_id


def test_explicit_primary_contact_is_kept(api):
    body = customer_body()
    body["primaryContact"] = {
        "firstName": "Ana",
        "lastName": "Silva",
        "email": "ana@contoso.example.test",
    }
    created = api.post("/v1/customers", json=body).get_json()
    assert created["primaryContact"]["email"] == "ana@contoso.example.test"
    assert created["primaryContact"]["firstName"] == "Ana"


def test_fields_the_client_must_not_set_are_ignored(api, make_api):
    other = make_api(name="Other")
    body = customer_body()
    body.update(
        id="00000000-0000-0000-0000-000000000001",
        isSigned=True,
    )
    body["companyProfile"]["tenantId"] = "00000000-0000-0000-0000-000000000002"
    created = api.post("/v1/customers", json=body).get_json()
    assert created["id"] not in {
        "00000000-0000-0000-0000-000000000001",
        "00000000-0000-0000-0000-000000000002",
    }
    assert "associatedPartnerId" not in created  # only a reseller's customer has it
    assert other.get(f"/v1/customers/{created['id']}").status_code == 404
    status = api.get(f"/v1/customers/{created['id']}/directSignedMicrosoftCustomerAgreementStatus")
    assert status.get_json() == {"isSigned": False}


@pytest.mark.parametrize(
    ("payload", "content_type"),
    [
        (b"{not json", "application/json"),
        (b"[1, 2]", "application/json"),
        (b"", "application/json"),
        (b"\xff\xfe", "application/json"),
        (b"null", "application/json"),
        (b"[" * 30000 + b"]" * 30000, "application/json"),
    ],
)
def test_malformed_body_is_400_and_writes_nothing(app, api, payload, content_type):
    response = api.post("/v1/customers", data=payload, content_type=content_type)
    assert response.status_code == 400
    error = response.get_json()
    assert error["code"] == 10001
    assert error["errorName"] == "InvalidRequestBody"
    assert set(error) == {
        "code",
        "errorName",
        "description",
        "message",
        "errorMessageExtended",
        "isRetryable",
        "parameters",
    }
    assert error["message"] == error["description"]
    assert count(app, Customer) == 0


def test_every_missing_field_is_named(app, api):
    response = api.post("/v1/customers", json={"billingProfile": {"defaultAddress": {}}})
    assert response.status_code == 400
    error = response.get_json()
    assert error["errorName"] == "InvalidFields"
    assert set(error["parameters"]) == {
        "companyProfile.domain",
        "billingProfile.email",
        "billingProfile.culture",
        "billingProfile.language",
        "billingProfile.companyName",
        "billingProfile.defaultAddress.country",
        "billingProfile.defaultAddress.firstName",
        "billingProfile.defaultAddress.lastName",
    }
    assert all(problem == "is required" for problem in error["parameters"].values())
    assert count(app, Customer) == 0


def test_wrong_types_are_named(app, api):
    body = customer_body()
    body["billingProfile"]["email"] = 42
    body["billingProfile"]["defaultAddress"] = "Main Street"
    body["companyProfile"]["domain"] = ["x.example.test"]
    error = api.post("/v1/customers", json=body).get_json()
    assert error["parameters"]["billingProfile.email"] == "must be a string"
    assert error["parameters"]["companyProfile.domain"] == "must be a string"
    assert error["parameters"]["billingProfile.defaultAddress"] == "must be an object"
    assert count(app, Customer) == 0


@pytest.mark.parametrize(
    ("change", "field", "problem"),
    [
        ({"country": "ZZ"}, "billingProfile.defaultAddress.country", "unknown country"),
        ({"country": "de"}, "billingProfile.defaultAddress.country", "unknown country"),
        ({"culture": "xx-YY"}, "billingProfile.culture", "unknown culture"),
        ({"culture": "english"}, "billingProfile.culture", "not a culture"),
        ({"language": "qq"}, "billingProfile.language", "unknown language"),
        ({"email": "not-an-address"}, "billingProfile.email", "not an email address"),
        (
            {"email": "a@b.example.test\r\nBcc: x@evil.example.test"},
            "billingProfile.email",
            "control characters",
        ),
        (
            {"company_name": "Contoso\r\nBcc: x@evil.example.test"},
            "billingProfile.companyName",
            "control characters",
        ),
        (
            {"first_name": "Tania\nX-Injected: yes"},
            "billingProfile.defaultAddress.firstName",
            "control characters",
        ),
        ({"domain": "not a domain"}, "companyProfile.domain", "not a domain"),
        ({"company_name": "x" * 201}, "billingProfile.companyName", "longer than 200"),
    ],
)
def test_unacceptable_values_are_400_naming_the_field(app, api, change, field, problem):
    response = api.post("/v1/customers", json=customer_body(**change))
    assert response.status_code == 400
    error = response.get_json()
    assert problem in error["parameters"][field]
    assert field in error["description"]
    assert count(app, Customer) == 0


def test_duplicate_domain_is_409(app, api):
    api.create_customer(domain="same.example.test")
    response = api.post("/v1/customers", json=customer_body(domain="Same.Example.Test"))
    assert response.status_code == 409
    assert response.get_json()["errorName"] == "DomainAlreadyExists"
    # The refused customer's credentials and event went with it.
    assert count(app, Customer) == count(app, CustomerCredential) == 1
    with app.app_context():
        created = select(func.count()).where(Event.kind == "customer.created")
        assert db.session().scalar(created) == 1


def test_oversize_body_is_413_and_writes_nothing(app, api):
    body = customer_body()
    body["padding"] = "x" * (app.config["MAX_CONTENT_LENGTH"] + 1)
    response = api.post("/v1/customers", json=body)
    assert response.status_code == 413
    assert response.get_json()["errorName"] == "RequestEntityTooLarge"
    assert count(app, Customer) == 0


@pytest.mark.parametrize(
    "hostile", ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "{{7*7}}"]
)
def test_hostile_names_come_back_literally(api, hostile):
    created = api.create_customer(company_name=hostile, first_name=hostile)
    read = api.get(f"/v1/customers/{created['id']}").get_json()
    assert read["companyProfile"]["companyName"] == hostile
    assert read["billingProfile"]["defaultAddress"]["firstName"] == hostile


def test_unknown_and_foreign_customers_get_the_same_404(api, make_api):
    other = make_api(name="Other")
    theirs = other.create_customer()
    unknown = api.get("/v1/customers/6f0a1c2e-1111-4222-8333-944455556666")
    foreign = api.get(f"/v1/customers/{theirs['id']}")
    assert unknown.status_code == foreign.status_code == 404
    unknown_body, foreign_body = unknown.get_json(), foreign.get_json()
    for answer in (unknown_body, foreign_body):
        answer["parameters"].pop("customerId")
    assert unknown_body == foreign_body
    assert theirs["id"] not in [c["id"] for c in api.get("/v1/customers").get_json()["items"]]


def test_paging_walks_every_customer_once(api, make_api):
    mine = {api.create_customer()["id"] for _ in range(7)}
    make_api(name="Other").create_customer()
    seen: list[str] = []
    response = api.get("/v1/customers?size=3").get_json()
    pages = 1
    while True:
        assert response["totalCount"] == 7
        assert len(response["items"]) <= 3
        seen += [item["id"] for item in response["items"]]
        nxt = response["links"].get("next")
        if not nxt:
            break
        response = api.get(follow(nxt)).get_json()
        pages += 1
    assert pages == 3
    assert len(seen) == 7
    assert set(seen) == mine


def test_continuation_token_also_works_as_header(api):
    for _ in range(3):
        api.create_customer()
    first = api.get("/v1/customers?size=2").get_json()
    token = first["continuationToken"]
    second = api.get("/v1/customers?size=2", headers={"MS-ContinuationToken": token}).get_json()
    assert len(second["items"]) == 1
    assert second["items"][0]["id"] not in {i["id"] for i in first["items"]}


def test_size_zero_is_the_default_page_as_the_sdks_send_it(app, api):
    for _ in range(3):
        api.create_customer()
    app.config["API_PAGE_SIZE"] = 2
    page = api.get("/v1/customers?size=0").get_json()
    assert len(page["items"]) == 2
    assert page["totalCount"] == 3
    assert "size=2" in page["links"]["next"]["uri"]
    assert all(item["relationshipToPartner"] == "reseller" for item in page["items"])


def test_list_is_never_unbounded(app, api):
    for _ in range(3):
        api.create_customer()
    app.config["API_PAGE_SIZE"] = 2
    assert len(api.get("/v1/customers").get_json()["items"]) == 2
    too_big = api.get(f"/v1/customers?size={app.config['API_MAX_PAGE_SIZE'] + 1}")
    assert too_big.status_code == 400
    assert too_big.get_json()["parameters"] == {"size": str(app.config["API_MAX_PAGE_SIZE"] + 1)}


@pytest.mark.parametrize(
    "query",
    [
        "size=-1",
        "size=abc",
        "continuationToken=forged",
        "continuationToken=" + "A" * 5000,
    ],
)
def test_bad_paging_parameters_are_400(api, query):
    response = api.get(f"/v1/customers?{query}")
    assert response.status_code == 400
    assert response.get_json()["errorName"] == "InvalidQueryParameter"


def test_provider_sees_resellers_customers_reseller_only_its_own(make_api):
    provider = make_api(PartnerKind.INDIRECT_PROVIDER, name="Provider")
    reseller = make_api(PartnerKind.INDIRECT_RESELLER, provider=provider, name="Reseller")
    other_reseller = make_api(PartnerKind.INDIRECT_RESELLER, provider=provider, name="Reseller 2")
    unrelated = make_api(PartnerKind.INDIRECT_PROVIDER, name="Unrelated provider")
    of_reseller = reseller.create_customer()
    of_provider = provider.create_customer()

    provider_ids = {c["id"] for c in provider.get("/v1/customers").get_json()["items"]}
    assert provider_ids == {of_reseller["id"], of_provider["id"]}
    read = provider.get(f"/v1/customers/{of_reseller['id']}").get_json()
    assert read["associatedPartnerId"] == reseller.partner_id

    assert {c["id"] for c in reseller.get("/v1/customers").get_json()["items"]} == {
        of_reseller["id"]
    }
    assert reseller.get(f"/v1/customers/{of_provider['id']}").status_code == 404
    assert other_reseller.get(f"/v1/customers/{of_reseller['id']}").status_code == 404
    assert unrelated.get(f"/v1/customers/{of_reseller['id']}").status_code == 404
    assert unrelated.get("/v1/customers").get_json()["totalCount"] == 0


def test_secrecy_amendment_flag_is_kept_and_only_for_germany(api):
    german = api.create_customer(country="DE", culture="de-DE", language="de", **{})
    assert german["professionalSecrecyAmendment"] is False
    body = customer_body(country="DE", culture="de-DE", language="de")
    body["professionalSecrecyAmendment"] = True
    flagged = api.post("/v1/customers", json=body).get_json()
    assert flagged["professionalSecrecyAmendment"] is True
    assert (
        api.get(f"/v1/customers/{flagged['id']}").get_json()["professionalSecrecyAmendment"] is True
    )
    french = customer_body(country="FR", culture="fr-FR", language="fr")
    french["professionalSecrecyAmendment"] = True
    refused = api.post("/v1/customers", json=french)
    assert refused.status_code == 400
    assert "Germany" in refused.get_json()["parameters"]["professionalSecrecyAmendment"]
    wrong_type = customer_body(country="DE")
    wrong_type["professionalSecrecyAmendment"] = "yes"
    assert api.post("/v1/customers", json=wrong_type).status_code == 400


# --- what a creation writes -------------------------------------------------------------------


@contextmanager
def statements(app):
    """The SQL statements the app's engine runs inside the block, whitespace collapsed."""
    ran: list[str] = []
    with app.app_context():
        engine = db.engine()

    def note(_connection, _cursor, statement, _parameters, _context, _executemany):
        ran.append(" ".join(statement.split()))

    sa_event.listen(engine, "before_cursor_execute", note)
    try:
        yield ran
    finally:
        sa_event.remove(engine, "before_cursor_execute", note)


def new_customer(domain: str) -> customers.NewCustomer:
    return customers.NewCustomer(
        domain=domain,
        company_name="Contoso Ltd",
        email="billing@contoso.example.test",
        culture="en-US",
        language="en",
        country="US",
        first_name="Tania",
        last_name="Carr",
    )


def create_in(app, session, partner_id: str, domain: str) -> customers.Created:
    return customers.create_customer(
        session,
        session.get(Partner, partner_id),
        new_customer(domain),
        app.extensions["portal.catalog"],
        app.extensions["portal.peppers"][0],
        actor="test",
    )


def test_customer_credentials_and_event_are_written_together_in_a_transaction_of_their_own(
    app, api
):
    """Through the API the four rows (the customer, its credentials, the creating partner's
    relationship, the event) and the event's link of the evidence chain (after a read of the
    chain's head) are the whole of the transaction that writes, so no savepoint is needed (a
    bulk import's are tested below)."""
    with statements(app) as ran:
        api.create_customer()
    inserts = [i for i, s in enumerate(ran) if s.startswith("INSERT")]
    assert sorted(ran[i].split(" (")[0] for i in inserts) == [
        "INSERT INTO audit_chain",
        "INSERT INTO customer_credentials",
        "INSERT INTO customer_relationships",
        "INSERT INTO customers",
        "INSERT INTO events",
    ]
    assert not [s for s in ran if "SAVEPOINT" in s]
    assert all(s.startswith("SELECT") for s in ran[: min(inserts)] if not s.startswith("BEGIN"))
    after = [s for s in ran[min(inserts) :] if not s.startswith("INSERT")]
    # Nothing after them but the chain's head (PostgreSQL: under its advisory lock), and the
    # commit.
    assert [s for s in after if not s.startswith("SELECT pg_advisory_xact_lock(")] == after[-1:]
    assert after[-1].startswith("SELECT audit_chain.seq, audit_chain.hash")
    assert ran[-1].startswith("INSERT INTO audit_chain")


def test_the_key_is_checked_without_holding_the_write_lock(app, api):
    """SQLite: the lock is taken by the transaction that writes, after the checks."""
    with app.app_context():
        if db.engine().dialect.name != "sqlite":
            pytest.skip("SQLite's write lock")
    with statements(app) as ran:
        api.create_customer()
    begins = [i for i, s in enumerate(ran) if s.startswith("BEGIN")]
    assert [ran[i] for i in begins] == ["BEGIN", "BEGIN IMMEDIATE"]
    assert all(s.startswith("SELECT") for s in ran[begins[0] + 1 : begins[1]])
    # In the writer: inserts only, but for the evidence chain's head, read under the lock.
    written = [s for s in ran[begins[1] + 1 :] if not s.startswith("SELECT audit_chain.seq")]
    assert all(s.startswith("INSERT") for s in written)


def test_a_taken_domain_undoes_that_customer_and_keeps_the_transactions_other_work(app, api):
    """As in a bulk import: several customers in one transaction, one domain already taken."""
    with app.app_context():
        session = db.session()
        kept = create_in(app, session, api.partner_id, "kept.example.test")
        with pytest.raises(DomainTaken):
            create_in(app, session, api.partner_id, "kept.example.test")
        session.commit()
        assert session.scalars(select(Customer.id)).all() == [kept.customer.id]
        assert session.scalars(select(CustomerCredential.customer_id)).all() == [kept.customer.id]
        begun = session.scalars(select(CustomerRelationship.customer_id)).all()
        assert begun == [kept.customer.id]
        created = select(Event).where(Event.kind == "customer.created")
        assert [e.customer_id for e in session.scalars(created)] == [kept.customer.id]


def test_a_new_customer_is_linked_to_its_credentials_and_partner_without_queries(app, api):
    with app.app_context():
        session = db.session()
        created = create_in(app, session, api.partner_id, "linked.example.test")
        with statements(app) as ran:
            credential = created.customer.credential
            assert credential is not None
            assert credential.user_name == created.user_name == "admin@linked.example.test"
            assert credential.customer is created.customer
            assert created.customer.creator.id == api.partner_id
        assert ran == []
        session.commit()
        stored = session.scalars(select(CustomerCredential)).one()
        assert stored.customer_id == created.customer.id


# --- Partner Center's tracking headers and odd-cased cultures (issue 17, first steps) -------------


def test_tracking_headers_are_echoed_or_made_on_every_answer(api, client):
    request_id = "0f8fad5b-d9cb-469f-a165-70867728950e"
    sent = {"MS-RequestId": request_id, "MS-CorrelationId": "c0ffee00-1111-4222-8333-944455556666"}
    made = api.create_customer()
    for method, path, headers in (
        ("GET", "/v1/customers", {"Authorization": f"Bearer {api.key}", **sent}),
        (
            "GET",
            f"/v1/customers/{made['id']}/directSignedMicrosoftCustomerAgreementStatus",
            {"Authorization": f"Bearer {api.key}", **sent},
        ),
        ("GET", "/v1/customers", sent),  # 401 too
        ("GET", "/v1/nowhere", {"Authorization": f"Bearer {api.key}", **sent}),  # 404 too
    ):
        response = client.open(path, method=method, headers=headers)
        assert response.headers["MS-RequestId"] == request_id, (path, response.status_code)
        assert response.headers["MS-CorrelationId"] == sent["MS-CorrelationId"], path
    bare = api.get("/v1/customers")
    for name in ("MS-RequestId", "MS-CorrelationId"):
        assert uuid.UUID(bare.headers[name])  # made when the request had none
    odd = api.get("/v1/customers", headers={"MS-RequestId": "not a request id; Injected: 1"})
    assert uuid.UUID(odd.headers["MS-RequestId"])
    assert "Injected" not in odd.headers
    assert "MS-RequestId" not in client.get("/signin").headers  # the API's only


def test_cultures_and_languages_in_any_case_are_taken_in_their_usual_case(api):
    made = api.create_customer(culture="EN-US", language="En")
    assert made["billingProfile"]["culture"] == "en-US"
    assert made["billingProfile"]["language"] == "en"
    chinese = api.create_customer(culture="zh-hant-tw", language="ZH-HANT", country="TW")
    assert chinese["billingProfile"]["culture"] == "zh-Hant-TW"
    assert chinese["billingProfile"]["language"] == "zh-Hant"
    invited = api.post(f"/v1/customers/{made['id']}/invitations", json={"language": "DE-de"})
    assert invited.status_code == 201, invited.get_json()
    assert invited.get_json()["language"] == "de"
    for culture in ("EN_US!", " en-US", "en-US\x85"):  # only the case changes
        bad = api.post("/v1/customers", json=customer_body(culture=culture, language="en"))
        assert bad.status_code == 400, culture
        assert "billingProfile.culture" in bad.get_json()["parameters"]


def test_partner_centers_customer_query_filters_by_its_fields(api, make_api):
    import json as json_
    from urllib.parse import quote

    contoso = api.create_customer(company_name="Contoso Ltd", domain="contoso-a.example.test")
    api.create_customer(company_name="Contoso_Wide", domain="wide.example.test")
    api.create_customer(company_name="Fabrikam Inc", domain="fab.example.test")
    make_api(name="Other").create_customer(company_name="Contoso Foreign")

    def found(**query: str) -> list[str]:
        body = json_.dumps(query)
        response = api.get(f"/v1/customers?size=0&filter={quote(body)}")
        assert response.status_code == 200, response.get_json()
        return sorted(c["companyProfile"]["companyName"] for c in response.get_json()["items"])

    assert found(Field="CompanyName", Value="cont", Operator="starts_with") == [
        "Contoso Ltd",
        "Contoso_Wide",
    ]
    assert found(field="DisplayName", value="CONTOSO_", operator="StartsWith") == ["Contoso_Wide"]
    assert found(Field="Domain", Value="contoso-a", Operator="starts_with") == ["Contoso Ltd"]
    assert found(Field="DefaultDomainName", Value="fab.", Operator="starts_with") == [
        "Fabrikam Inc"
    ]
    assert found(Field="CompanyName", Value="%", Operator="starts_with") == []  # no wildcards
    page = api.get(
        "/v1/customers?size=1&filter="
        + quote(json_.dumps({"Field": "CompanyName", "Value": "Cont", "Operator": "starts_with"}))
    ).get_json()
    assert page["totalCount"] == 2
    following = api.get(follow(page["links"]["next"])).get_json()
    assert following["totalCount"] == 2  # the next link keeps the filter
    names = {page["items"][0]["id"], following["items"][0]["id"]}
    assert contoso["id"] in names
    assert len(names) == 2


@pytest.mark.parametrize(
    "query",
    [
        "not json",
        "[1]",
        '{"Field": "Country", "Value": "DE", "Operator": "starts_with"}',
        '{"Field": "CompanyName", "Value": "c", "Operator": "contains"}',
        '{"Field": "CompanyName", "Value": "", "Operator": "starts_with"}',
        '{"Field": "CompanyName", "Value": "c", "Operator": "starts_with", "Other": 1}',
    ],
)
def test_a_filter_partner_center_would_not_take_is_400_naming_it(api, query):
    from urllib.parse import quote

    response = api.get(f"/v1/customers?filter={quote(query)}")
    assert response.status_code == 400
    body = response.get_json()
    assert body["errorName"] == "InvalidQueryParameter"
    assert "filter" in body["parameters"]
