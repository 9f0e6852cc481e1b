"""Two partners serving one customer: the acceptance follows the customer, every other dealing
stays the partner's own (issue 16)."""

from __future__ import annotations

import json
from typing import Any

from portal.core import db
from portal.core.models import Customer, Partner, PartnerKind
from portal.domain import relationships
from tests.test_api_agreements import MCA, attestation
from tests.test_dashboard import add_user, sign_in
from tests.test_pages import accept, change_password, invited, sign_in_from_link


def share(app: Any, customer_id: str, partner: Any, accepted: bool = False) -> None:
    """The partner begins a relationship with the customer, as accepting its request does."""
    with app.app_context():
        session = db.session()
        relationships.begin(
            session,
            session.get_one(Customer, customer_id),
            session.get_one(Partner, partner.partner_id),
            accepted_by="admin@contoso.example.test",
            accepted=accepted,
        )
        session.commit()


def accepted_customer(app: Any, api: Any, client: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """A customer of ``api`` that accepted through ``api``'s invitation, in ``client``."""
    customer, made = invited(api)
    sign_in_from_link(client, made)
    change_password(client)
    assert accept(client).status_code == 302
    client.post("/signout", data={})
    return customer, made


def test_the_second_partner_sees_the_acceptance_and_nothing_of_the_first(app, client, make_api):
    first = make_api(name="First Partner Ltd")
    second = make_api(name="Second Partner Ltd")
    customer, made = accepted_customer(app, first, client)
    assert (
        first.post(f"/v1/customers/{customer['id']}/agreements", json=attestation()).status_code
        == 201
    )
    assert second.get(f"/v1/customers/{customer['id']}").status_code == 404
    share(app, customer["id"], second, accepted=True)
    cid = customer["id"]

    read = second.get(f"/v1/customers/{cid}").get_json()
    assert read["id"] == cid
    assert "associatedPartnerId" not in read
    assert cid in [c["id"] for c in second.get("/v1/customers").get_json()["items"]]
    status = second.get(f"/v1/customers/{cid}/directSignedMicrosoftCustomerAgreementStatus")
    assert status.get_json()["isSigned"] is True
    mine = second.get(f"/v1/customers/{cid}/agreements?agreementType=MicrosoftCustomerAgreement")
    items = mine.get_json()["items"]
    assert len(items) == 1  # the customer's own acceptance; not the first partner's attestation
    assert items[0]["templateId"] == MCA
    assert items[0]["primaryContact"]["email"] == "ana@contoso.example.test"
    theirs = first.get(f"/v1/customers/{cid}/agreements?agreementType=MicrosoftCustomerAgreement")
    assert len(theirs.get_json()["items"]) == 2

    assert second.get(f"/v1/customers/{cid}/invitations").get_json()["items"] == []
    assert second.get(f"/v1/customers/{cid}/invitations/{made['id']}").status_code == 404
    again = second.post(f"/v1/customers/{cid}/invitations", json={})
    assert again.status_code == 409
    assert again.get_json()["errorName"] == "CustomerAlreadyAccepted"

    add_user(app, second.partner_id, "admin@second.example.test")
    sign_in(client, "admin@second.example.test")
    page = client.get(f"/dashboard/customers/{cid}").get_data(as_text=True)
    assert customer["companyProfile"]["companyName"] in page
    assert "First Partner" not in page
    assert "someone@example.test" not in page  # the first partner's attestation contact
    assert made["id"] not in page
    evidence = json.loads(client.get(f"/dashboard/customers/{cid}/evidence.json").data)
    (direct,) = evidence["acceptances"]
    assert direct["method"] == "direct"
    assert direct["ipAddress"] == direct["userAgent"] == ""
    csv = client.get("/dashboard/customers.csv").get_data(as_text=True)
    assert cid in csv
    assert "First Partner" not in csv


def test_the_first_partner_keeps_its_evidence_and_sees_nothing_of_the_second(app, client, make_api):
    first = make_api(name="First Partner Ltd")
    second = make_api(name="Second Partner Ltd")
    customer, _ = accepted_customer(app, first, client)
    share(app, customer["id"], second, accepted=True)
    cid = customer["id"]
    assert (
        second.post(
            f"/v1/customers/{cid}/agreements",
            json=attestation(
                primaryContact={"firstName": "S", "lastName": "P", "email": "second@example.test"}
            ),
        ).status_code
        == 201
    )
    items = first.get(f"/v1/customers/{cid}/agreements?agreementType=*").get_json()["items"]
    assert "second@example.test" not in json.dumps(items)
    add_user(app, first.partner_id, "admin@first.example.test")
    sign_in(client, "admin@first.example.test")
    page = client.get(f"/dashboard/customers/{cid}").get_data(as_text=True)
    assert "Second Partner" not in page
    assert "second@example.test" not in page
    evidence = json.loads(client.get(f"/dashboard/customers/{cid}/evidence.json").data)
    (direct,) = evidence["acceptances"]
    assert direct["ipAddress"] == "127.0.0.1"
    assert direct["userAgent"] == "TestBrowser/1.0"


def test_a_shared_customer_not_yet_accepted_reports_unsigned_to_both(app, make_api):
    first = make_api(name="First Partner Ltd")
    second = make_api(name="Second Partner Ltd")
    customer = first.create_customer()
    share(app, customer["id"], second)
    for partner in (first, second):
        status = partner.get(
            f"/v1/customers/{customer['id']}/directSignedMicrosoftCustomerAgreementStatus"
        )
        assert status.get_json()["isSigned"] is False
    # The customer has its account from the first partner's invitation: the second asks for the
    # relationship, it does not send new credentials.
    refused = second.post(f"/v1/customers/{customer['id']}/invitations", json={})
    assert refused.status_code == 409
    assert refused.get_json()["errorName"] == "CustomerHasAccount"
    assert second.get(f"/v1/customers/{customer['id']}/invitations").get_json()["items"] == []


def test_a_provider_sees_a_shared_customer_once(app, make_api):
    provider = make_api(PartnerKind.INDIRECT_PROVIDER, name="Provider")
    reseller = make_api(PartnerKind.INDIRECT_RESELLER, provider=provider, name="Reseller")
    customer = provider.create_customer()
    share(app, customer["id"], reseller)
    listed = [c["id"] for c in provider.get("/v1/customers").get_json()["items"]]
    assert listed == [customer["id"]]
    assert provider.get("/v1/customers").get_json()["totalCount"] == 1
    assert [c["id"] for c in reseller.get("/v1/customers").get_json()["items"]] == [customer["id"]]
