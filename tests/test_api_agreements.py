"""Agreements: metadata, regional documents, attestation, status and purchase eligibility."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from portal.core import db
from portal.core.models import AcceptanceMethod, AgreementAcceptance, Customer, Event, PartnerKind
from portal.mail import sending

MCA = "117a77b0-9360-443b-8795-c6dedc750cf9"
CLOUD = "998b88de-aa99-4388-a42c-1b3517d49490"


def attestation(**changes):
    body = {
        "primaryContact": {
            "firstName": "Tania",
            "lastName": "Carr",
            "email": "someone@example.test",
            "phoneNumber": "1234567890",
        },
        "templateId": MCA,
        "dateAgreed": "2024-06-14T00:00:00.000Z",
        "type": "MicrosoftCustomerAgreement",
    }
    body.update(changes)
    return body


def acceptance_rows(app) -> int:
    with app.app_context():
        return db.session().scalar(select(func.count()).select_from(AgreementAcceptance))


def record_direct_acceptance(app, customer_id: str, template_id: str = MCA) -> None:
    """What the customer pages do when the customer accepts (built in a later issue)."""
    with app.app_context():
        session = db.session()
        customer = session.get(Customer, customer_id)
        session.add(
            AgreementAcceptance(
                customer=customer,
                agreement_type="MicrosoftCustomerAgreement",
                template_id=template_id,
                version_rank=0,
                method=AcceptanceMethod.DIRECT,
                dedupe_key="direct",
                first_name="Ana",
                last_name="Silva",
                email="ana@example.test",
                date_agreed=datetime.now(UTC),
                recorded_by="admin@x.example.test",
                country="DE",
                language="de-DE",
                document_uri="https://aka.ms/customeragreement?country=DE&language=de-DE",
                ip_address="192.0.2.7",
                user_agent="Mozilla/5.0 (test)",
                partner_id=customer.creator_id,
            )
        )
        session.commit()


# --- metadata and documents -------------------------------------------------------------------


def test_agreements_default_to_the_cloud_agreement(api):
    body = api.get("/v1/agreements").get_json()
    assert body["totalCount"] == 1
    assert body["items"][0]["agreementType"] == "MicrosoftCloudAgreement"
    assert body["items"][0]["templateId"] == CLOUD
    assert body["attributes"] == {"objectType": "Collection"}


def test_customer_agreement_metadata_matches_partner_center(api):
    body = api.get("/v1/agreements?agreementType=MicrosoftCustomerAgreement").get_json()
    assert body["items"] == [
        {
            "templateId": MCA,
            "agreementType": "MicrosoftCustomerAgreement",
            "agreementLink": "https://aka.ms/customeragreement",
            "versionRank": 0,
        }
    ]


def test_star_lists_every_agreement(api):
    types = {
        i["agreementType"] for i in api.get("/v1/agreements?agreementType=*").get_json()["items"]
    }
    assert types == {
        "MicrosoftCustomerAgreement",
        "MicrosoftCloudAgreement",
        "ProfessionalSecrecyAmendment",
    }


def test_unknown_agreement_type_is_400(api):
    response = api.get("/v1/agreements?agreementType=Nonsense")
    assert response.status_code == 400
    assert response.get_json()["parameters"] == {"agreementType": "Nonsense"}


@pytest.mark.parametrize(
    ("query", "country", "language"),
    [
        ("language=de-DE&country=DE", "DE", "de-DE"),
        ("language=de-AT&country=AT", "AT", "de-DE"),  # Austria reads German in the de-DE text
        ("language=es-ES&country=JP", "JP", "en-US"),  # Japan publishes ja-JP and en-US only
        ("language=fr-FR&country=ZZ", "US", "en-US"),  # unknown country: the US document
        ("", "US", "en-US"),
        ("country=BR", "BR", "en-US"),
        ("language=pt-BR&country=BR", "BR", "pt-BR"),
    ],
)
def test_document_fallbacks(api, query, country, language):
    response = api.get(f"/v1/agreementtemplates/{MCA}/document?{query}")
    assert response.status_code == 200
    body = response.get_json()
    assert (body["country"], body["language"]) == (country, language)
    assert f"country={country}" in body["displayUri"]
    assert f"language={language}" in body["downloadUri"]
    assert set(body) == {"displayUri", "downloadUri", "language", "country"}


def test_document_template_id_is_case_sensitive(api):
    response = api.get(f"/v1/agreementtemplates/{MCA.upper()}/document")
    assert response.status_code == 404
    assert response.get_json()["errorName"] == "AgreementTemplateNotFound"


def test_cloud_agreement_has_no_documents(api):
    response = api.get(f"/v1/agreementtemplates/{CLOUD}/document")
    assert response.status_code == 404
    assert response.get_json()["errorName"] == "AgreementDocumentNotFound"


@pytest.mark.parametrize(
    "query", ["country=de", "country=DEU", "language=de%0D%0AX", "language=" + "a" * 100]
)
def test_malformed_document_parameters_are_400(api, query):
    response = api.get(f"/v1/agreementtemplates/{MCA}/document?{query}")
    assert response.status_code == 400
    assert response.get_json()["errorName"] == "InvalidQueryParameter"


# --- attestation ------------------------------------------------------------------------------


def test_attestation_is_recorded_and_listed(app, api):
    customer = api.create_customer()
    response = api.post(f"/v1/customers/{customer['id']}/agreements", json=attestation())
    assert response.status_code == 201
    body = response.get_json()
    assert body["primaryContact"]["email"] == "someone@example.test"
    assert body["templateId"] == MCA
    assert body["type"] == "MicrosoftCustomerAgreement"
    assert body["dateAgreed"] == "2024-06-14T00:00:00.000Z"
    assert body["userId"] == api.partner_id
    assert body["agreementLink"] == "https://aka.ms/customeragreement"

    listed = api.get(
        f"/v1/customers/{customer['id']}/agreements?agreementType=MicrosoftCustomerAgreement"
    ).get_json()
    assert listed["totalCount"] == 1
    assert listed["items"][0]["primaryContact"] == body["primaryContact"]
    # Left out, agreementType means MicrosoftCloudAgreement, as in Partner Center.
    assert api.get(f"/v1/customers/{customer['id']}/agreements").get_json()["totalCount"] == 0
    assert (
        api.get(f"/v1/customers/{customer['id']}/agreements?agreementType=*").get_json()[
            "totalCount"
        ]
        == 1
    )
    with app.app_context():
        kinds = (
            db.session()
            .scalars(select(Event.kind).where(Event.customer_id == customer["id"]))
            .all()
        )
        assert "agreement.attested" in kinds


def test_attestation_never_sets_is_signed(api):
    customer = api.create_customer()
    api.post(f"/v1/customers/{customer['id']}/agreements", json=attestation())
    status = api.get(f"/v1/customers/{customer['id']}/directSignedMicrosoftCustomerAgreementStatus")
    assert status.get_json() == {"isSigned": False}


def test_repeated_attestation_is_409_600061(app, api):
    customer = api.create_customer()
    path = f"/v1/customers/{customer['id']}/agreements"
    assert api.post(path, json=attestation()).status_code == 201
    again = api.post(path, json=attestation(dateAgreed="2024-07-01T00:00:00Z"))
    assert again.status_code == 409
    assert again.get_json() == {
        "code": 600061,
        "errorName": "PartnerConfirmedAgreementAlreadyExists",
        "description": "A partner confirmed agreement already exists for the customer.",
        "message": "A partner confirmed agreement already exists for the customer.",
        "errorMessageExtended": "InternalErrorCode=600061",
        "isRetryable": False,
        "parameters": {},
    }
    # Case and spacing do not make a different contact.
    shouted = attestation()
    shouted["primaryContact"]["email"] = "SOMEONE@example.test"
    assert api.post(path, json=shouted).status_code == 409
    assert acceptance_rows(app) == 1


def test_future_date_is_400_and_writes_nothing(app, api):
    customer = api.create_customer()
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    response = api.post(
        f"/v1/customers/{customer['id']}/agreements", json=attestation(dateAgreed=tomorrow)
    )
    assert response.status_code == 400
    assert response.get_json()["parameters"] == {"dateAgreed": "must not be in the future"}
    assert acceptance_rows(app) == 0


def test_date_of_now_is_accepted(api):
    customer = api.create_customer()
    response = api.post(
        f"/v1/customers/{customer['id']}/agreements",
        json=attestation(dateAgreed=datetime.now(UTC).isoformat()),
    )
    assert response.status_code == 201


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"dateAgreed": "yesterday"}, "dateAgreed"),
        ({"dateAgreed": 20240614}, "dateAgreed"),
        ({"templateId": CLOUD}, "templateId"),
        ({"type": "Nonsense"}, "type"),
        ({"primaryContact": {"firstName": "T", "lastName": "C"}}, "primaryContact.email"),
        (
            {"primaryContact": {"firstName": "T", "lastName": "C", "email": "x@y.test\r\nBcc: z"}},
            "primaryContact.email",
        ),
        ({"primaryContact": "Tania"}, "primaryContact"),
    ],
)
def test_bad_attestations_are_400_naming_the_field(app, api, changes, field):
    customer = api.create_customer()
    response = api.post(f"/v1/customers/{customer['id']}/agreements", json=attestation(**changes))
    assert response.status_code == 400
    assert field in response.get_json()["parameters"]
    assert acceptance_rows(app) == 0


def test_reseller_may_not_attest(app, make_api):
    provider = make_api(PartnerKind.INDIRECT_PROVIDER, name="Provider")
    reseller = make_api(PartnerKind.INDIRECT_RESELLER, provider=provider, name="Reseller")
    customer = reseller.create_customer()
    response = reseller.post(f"/v1/customers/{customer['id']}/agreements", json=attestation())
    assert response.status_code == 403
    error = response.get_json()
    assert error["errorName"] == "AttestationNotAllowed"
    assert "provider" in error["description"]
    assert acceptance_rows(app) == 0
    # Its provider may attest for the reseller's customer.
    assert (
        provider.post(f"/v1/customers/{customer['id']}/agreements", json=attestation()).status_code
        == 201
    )


def test_attesting_for_another_partners_customer_is_404(app, api, make_api):
    theirs = make_api(name="Other").create_customer()
    response = api.post(f"/v1/customers/{theirs['id']}/agreements", json=attestation())
    assert response.status_code == 404
    assert response.get_json()["errorName"] == "CustomerNotFound"
    assert acceptance_rows(app) == 0


def test_secrecy_amendment_can_be_attested(api):
    customer = api.create_customer(country="DE", culture="de-DE", language="de")
    types = api.get("/v1/agreements?agreementType=ProfessionalSecrecyAmendment").get_json()
    template = types["items"][0]["templateId"]
    response = api.post(
        f"/v1/customers/{customer['id']}/agreements",
        json=attestation(templateId=template, type="ProfessionalSecrecyAmendment"),
    )
    assert response.status_code == 201


# --- status -----------------------------------------------------------------------------------


def test_direct_acceptance_sets_is_signed(app, api):
    customer = api.create_customer()
    path = f"/v1/customers/{customer['id']}/directSignedMicrosoftCustomerAgreementStatus"
    assert api.get(path).get_json() == {"isSigned": False}
    record_direct_acceptance(app, customer["id"])
    assert api.get(path).get_json() == {"isSigned": True}


def test_status_of_unknown_or_foreign_customer_is_404(api, make_api):
    theirs = make_api(name="Other").create_customer()
    for customer_id in (theirs["id"], "no-such-customer", "x" * 300):
        response = api.get(
            f"/v1/customers/{customer_id}/directSignedMicrosoftCustomerAgreementStatus"
        )
        assert response.status_code == 404
        assert response.get_json()["errorName"] == "CustomerNotFound"


def test_provider_reads_resellers_signed_status(app, make_api):
    provider = make_api(PartnerKind.INDIRECT_PROVIDER, name="Provider")
    reseller = make_api(PartnerKind.INDIRECT_RESELLER, provider=provider, name="Reseller")
    customer = reseller.create_customer()
    record_direct_acceptance(app, customer["id"])
    path = f"/v1/customers/{customer['id']}/directSignedMicrosoftCustomerAgreementStatus"
    assert provider.get(path).get_json() == {"isSigned": True}
    assert reseller.get(path).get_json() == {"isSigned": True}


def test_acceptance_status_before_anything(api):
    customer = api.create_customer()
    body = api.get(f"/v1/customers/{customer['id']}/acceptanceStatus").get_json()
    assert body["state"] == "not-invited"
    assert body["invited"] is False
    assert body["linkOpened"] is False
    assert body["signedIn"] is False
    assert body["isSigned"] is False
    assert body["eligibleForPurchase"] is False
    assert body["acceptance"] is None


def test_acceptance_status_shows_direct_evidence(app, api):
    customer = api.create_customer()
    record_direct_acceptance(app, customer["id"])
    body = api.get(f"/v1/customers/{customer['id']}/acceptanceStatus").get_json()
    assert body["state"] == "accepted"
    assert body["isSigned"] is True
    accepted = body["acceptance"]
    assert accepted["acceptanceMethod"] == "direct"
    assert accepted["templateId"] == MCA
    assert (accepted["country"], accepted["language"]) == ("DE", "de-DE")
    assert accepted["documentUri"].endswith("country=DE&language=de-DE")
    assert accepted["evidence"] == {"ipAddress": "192.0.2.7", "userAgent": "Mozilla/5.0 (test)"}
    assert accepted["primaryContact"]["email"] == "ana@example.test"


def test_acceptance_status_after_attestation(api):
    customer = api.create_customer(country="AT", culture="de-AT", language="de")
    api.post(f"/v1/customers/{customer['id']}/agreements", json=attestation())
    body = api.get(f"/v1/customers/{customer['id']}/acceptanceStatus").get_json()
    assert body["state"] == "attested"
    assert body["isSigned"] is False
    assert body["eligibleForPurchase"] is True
    accepted = body["acceptance"]
    assert accepted["acceptanceMethod"] == "attested"
    assert "evidence" not in accepted
    assert (accepted["country"], accepted["language"]) == ("AT", "de-DE")


def test_purchase_eligibility_without_acceptance_says_what_completes_it(api):
    customer = api.create_customer()
    body = api.get(f"/v1/customers/{customer['id']}/purchaseEligibility").get_json()
    assert body["eligible"] is False
    assert body["error"]["code"] == 13605
    assert "Microsoft Customer Agreement" in body["error"]["description"]
    actions = {step["action"]: step for step in body["nextSteps"]}
    assert actions["inviteCustomer"]["uri"] == f"/v1/customers/{customer['id']}/invitations"
    assert actions["attest"]["uri"] == f"/v1/customers/{customer['id']}/agreements"


def test_reseller_is_not_offered_attestation(make_api):
    provider = make_api(PartnerKind.INDIRECT_PROVIDER, name="Provider")
    reseller = make_api(PartnerKind.INDIRECT_RESELLER, provider=provider, name="Reseller")
    customer = reseller.create_customer()
    body = reseller.get(f"/v1/customers/{customer['id']}/purchaseEligibility").get_json()
    assert [step["action"] for step in body["nextSteps"]] == ["inviteCustomer"]


def test_purchase_eligibility_after_acceptance(app, api):
    customer = api.create_customer()
    record_direct_acceptance(app, customer["id"])
    body = api.get(f"/v1/customers/{customer['id']}/purchaseEligibility").get_json()
    assert body["eligible"] is True
    assert "error" not in body
    assert body["acceptance"]["acceptanceMethod"] == "direct"


def test_cloud_agreement_attestation_does_not_make_eligible(app, api):
    """Nor can it be made any more: the catalog retires it (Partner Center since 2020-02-01)."""
    customer = api.create_customer()
    refused = api.post(
        f"/v1/customers/{customer['id']}/agreements",
        json=attestation(templateId=CLOUD, type="MicrosoftCloudAgreement"),
    )
    assert refused.status_code == 400
    problem = refused.get_json()["parameters"]["type"]
    assert problem.startswith("is retired since 2020-02-01")
    assert acceptance_rows(app) == 0
    body = api.get(f"/v1/customers/{customer['id']}/purchaseEligibility").get_json()
    assert body["eligible"] is False


def test_the_catalog_decides_which_types_are_retired(app, make_app, api, tmp_path):
    from portal.core import catalog

    shipped = catalog.SHIPPED.read_text()
    assert "retired\tMicrosoftCloudAgreement\t2020-02-01" in shipped
    unretired = tmp_path / "catalog.tsv"
    unretired.write_text(shipped.replace("retired\tMicrosoftCloudAgreement\t2020-02-01\n", ""))
    other = make_app(AGREEMENT_CATALOG=str(unretired)).test_client()
    customer = api.create_customer()
    made = other.post(
        f"/v1/customers/{customer['id']}/agreements",
        json=attestation(templateId=CLOUD, type="MicrosoftCloudAgreement"),
        headers={"Authorization": f"Bearer {api.key}"},
    )
    assert made.status_code == 201, made.get_json()
    with pytest.raises(catalog.CatalogError, match="not a date"):
        catalog.parse(shipped.replace("2020-02-01", "Feb 2020"))


@pytest.mark.mail
def test_primary_contact_is_told_of_an_attestation(app, api, smtp):

    customer = api.create_customer(company_name="Contoso Ltd")
    api.post(f"/v1/customers/{customer['id']}/agreements", json=attestation())
    with app.app_context():
        assert sending.deliver_due(app, db.session()).sent == 1
    [received] = smtp.inbox.received
    assert received.rcpt_tos == [customer["primaryContact"]["email"]]
    text = received.message.get_body(("plain",)).get_content()
    assert (
        "Fabrikam has confirmed that Tania Carr accepted this agreement for Contoso Ltd on "
        "June 14, 2024: Microsoft Customer Agreement." in " ".join(text.split())
    )


def test_failed_attestation_notifies_no_one(app, api):
    from portal.core.models import OutboxMessage

    customer = api.create_customer()
    path = f"/v1/customers/{customer['id']}/agreements"
    api.post(path, json=attestation())
    assert api.post(path, json=attestation()).status_code == 409
    with app.app_context():
        assert db.session().scalar(select(func.count()).select_from(OutboxMessage)) == 1
