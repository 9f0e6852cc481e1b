"""Two partners serving one customer: the acceptance follows the customer, every other dealing
stays the partner's own (issue 16)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from portal.core import db
from portal.core.models import (
    AgreementAcceptance,
    Customer,
    Event,
    EventKind,
    Invitation,
    OutboxMessage,
    Partner,
    PartnerKind,
    RelationshipState,
)
from portal.domain import relationships
from tests.conftest import relationship_of
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


# --- the customer removes a partner --------------------------------------------------------------


def test_a_customer_removes_a_partner_who_loses_access_at_once(app, client, make_api):
    from tests.test_dashboard import csrf

    first = make_api(name="First Partner Ltd")
    second = make_api(name="Second Partner Ltd")
    add_user(app, second.partner_id, "admin@second.example.test")
    customer, made = invited(first)
    cid = customer["id"]
    share(app, cid, second)
    sign_in_from_link(client, made)
    change_password(client)
    accept(client)
    account = client.get("/account").get_data(as_text=True)
    assert "First Partner Ltd" in account
    assert "Second Partner Ltd" in account
    path = f"/account/partners/{second.partner_id}/remove"
    form = client.get(path)
    assert form.status_code == 200
    assert "Second Partner Ltd" in form.get_data(as_text=True)
    assert client.post(path, data={}).status_code == 400  # no CSRF token: nothing changes
    assert second.get(f"/v1/customers/{cid}").status_code == 200
    removed = client.post(path, data={"csrf_token": csrf(form)})
    assert removed.status_code == 302
    account = client.get("/account").get_data(as_text=True)
    assert "Second Partner Ltd is no longer your partner." in account
    assert f"/account/partners/{second.partner_id}/remove" not in account
    assert f"/account/partners/{first.partner_id}/remove" in account

    assert second.get(f"/v1/customers/{cid}").status_code == 404
    assert cid not in [c["id"] for c in second.get("/v1/customers").get_json()["items"]]
    status = f"/v1/customers/{cid}/directSignedMicrosoftCustomerAgreementStatus"
    assert second.get(status).status_code == 404
    assert first.get(status).get_json()["isSigned"] is True
    assert client.post(path, data={"csrf_token": csrf(form)}).status_code == 404  # once only

    with app.app_context():
        relationship = relationship_of(cid, second.partner_id)
        assert relationship.state is RelationshipState.REMOVED
        assert relationship.removed_by == f"customer:{made['userName']}"
        event = (
            db.session()
            .scalars(select(Event).where(Event.kind == EventKind.RELATIONSHIP_REMOVED))
            .one()
        )
        assert (event.partner_id, event.customer_id) == (second.partner_id, cid)
        notice = (
            db.session()
            .scalars(
                select(OutboxMessage).where(OutboxMessage.kind == relationships.REMOVAL_NOTICE)
            )
            .one()
        )
        assert notice.to_address == "admin@second.example.test"
        assert notice.partner_id == second.partner_id
        assert customer["companyProfile"]["companyName"] in notice.subject
        assert "Second Partner Ltd can no longer see this customer" in notice.text_body

    partner_browser = app.test_client()
    sign_in(partner_browser, "admin@second.example.test")
    assert partner_browser.get(f"/dashboard/customers/{cid}").status_code == 404
    assert cid not in partner_browser.get("/dashboard/customers.csv").get_data(as_text=True)
    assert customer["companyProfile"]["companyName"] not in partner_browser.get(
        "/dashboard/customers"
    ).get_data(as_text=True)


def test_a_customer_cannot_remove_a_partner_it_does_not_have(app, client, make_api):
    from tests.test_dashboard import csrf

    first = make_api(name="First Partner Ltd")
    stranger = make_api(name="Stranger Ltd")
    _, made = invited(first)
    sign_in_from_link(client, made)
    change_password(client)
    accept(client)
    page = client.get("/account")
    for partner_id in (stranger.partner_id, "not-an-id"):
        path = f"/account/partners/{partner_id}/remove"
        assert client.get(path).status_code == 404
        assert client.post(path, data={"csrf_token": csrf(page)}).status_code == 404


def test_removing_a_partner_needs_a_signed_in_customer(app, client, make_api):
    first = make_api(name="First Partner Ltd")
    customer = first.create_customer()
    from tests.test_dashboard import csrf

    path = f"/account/partners/{first.partner_id}/remove"
    refused = client.post(path, data={"csrf_token": csrf(client.get("/signin"))})
    assert refused.status_code == 302
    assert "/signin" in refused.headers["Location"]
    assert first.get(f"/v1/customers/{customer['id']}").status_code == 200


# --- isolation on every route, with a shared customer --------------------------------------------


def _customer_routes() -> list[tuple[str, str]]:
    """Every (method, path) of the API that names a customer, from the OpenAPI document: a new
    route is swept without being listed here."""
    document = json.loads((Path(__file__).parents[1] / "portal/web/api/openapi.json").read_text())
    return [
        (method, path)
        for path, item in document["paths"].items()
        if "{customerId}" in path
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    ]


def test_every_customer_route_is_404_for_a_partner_without_a_relationship(app, client, make_api):
    first = make_api(name="First Partner Ltd")
    second = make_api(name="Second Partner Ltd")
    outsider = make_api(name="Outsider Ltd")
    customer, made = accepted_customer(app, first, client)
    share(app, customer["id"], second, accepted=True)
    routes = _customer_routes()
    assert len(routes) >= 10
    for method, template in routes:
        path = template.replace("{customerId}", customer["id"]).replace(
            "{invitationId}", made["id"]
        )
        response = outsider.client.open(
            path,
            method=method.upper(),
            headers={"Authorization": f"Bearer {outsider.key}"},
            json=attestation() if method == "post" else None,
        )
        assert response.status_code == 404, (method, path, response.get_json())
        # The second partner serves the customer, but the first partner's invitation is not its.
        if "{invitationId}" in template:
            theirs = second.client.open(
                path, method=method.upper(), headers={"Authorization": f"Bearer {second.key}"}
            )
            assert theirs.status_code == 404, (method, path)
    with app.app_context():
        session = db.session()
        assert session.scalar(select(func.count()).select_from(AgreementAcceptance)) == 1
        invitation = session.get_one(Invitation, made["id"])
        assert invitation.revoked_at is None


def test_the_second_partners_dashboard_cannot_touch_the_first_partners_invitation(
    app, client, make_api
):
    from tests.test_dashboard import csrf

    first = make_api(name="First Partner Ltd")
    second = make_api(name="Second Partner Ltd")
    customer, made = accepted_customer(app, first, client)
    share(app, customer["id"], second, accepted=True)
    add_user(app, second.partner_id, "admin@second.example.test")
    browser = app.test_client()
    sign_in(browser, "admin@second.example.test")
    token = csrf(browser.get("/dashboard/customers"))
    base = f"/dashboard/customers/{customer['id']}/invitations/{made['id']}"
    for method, path in (
        ("get", base),
        ("get", base + "/email.html"),
        ("post", base + "/send"),
        ("post", base + "/withdraw"),
    ):
        response = getattr(browser, method)(path, data={"csrf_token": token})
        assert response.status_code == 404, (method, path)
    assert browser.get(f"/dashboard/customers/{customer['id']}").status_code == 200
    with app.app_context():
        assert db.session().get_one(Invitation, made["id"]).revoked_at is None


def test_every_dashboard_route_of_a_shared_customer_is_404_for_an_outsider(app, client, make_api):
    from tests.test_dashboard import csrf

    first = make_api(name="First Partner Ltd")
    second = make_api(name="Second Partner Ltd")
    outsider = make_api(name="Outsider Ltd")
    customer, made = accepted_customer(app, first, client)
    share(app, customer["id"], second, accepted=True)
    add_user(app, outsider.partner_id, "admin@outsider.example.test")
    browser = app.test_client()
    sign_in(browser, "admin@outsider.example.test")
    token = csrf(browser.get("/dashboard/customers"))
    base = f"/dashboard/customers/{customer['id']}"
    for method, path in (
        ("get", base),
        ("get", base + "/evidence.json"),
        ("get", base + "/receipt.pdf"),
        ("get", f"{base}/invitations/{made['id']}"),
        ("get", f"{base}/invitations/{made['id']}/email.html"),
        ("post", base + "/invitations"),
        ("post", f"{base}/invitations/{made['id']}/send"),
        ("post", f"{base}/invitations/{made['id']}/withdraw"),
        ("post", base + "/attest"),
    ):
        response = getattr(browser, method)(path, data={"csrf_token": token})
        assert response.status_code == 404, (method, path)
    for path in ("/dashboard/customers", "/dashboard/customers.csv", "/dashboard/"):
        assert customer["id"] not in browser.get(path).get_data(as_text=True), path
    with app.app_context():
        assert db.session().scalar(select(func.count()).select_from(AgreementAcceptance)) == 1


# --- attestations are the attesting partner's own -------------------------------------------------


def test_two_partners_may_attest_the_same_contact_each_once(app, make_api):
    first = make_api(name="First Partner Ltd")
    second = make_api(name="Second Partner Ltd")
    customer = first.create_customer()
    share(app, customer["id"], second)
    path = f"/v1/customers/{customer['id']}/agreements"
    assert first.post(path, json=attestation()).status_code == 201
    theirs = second.post(path, json=attestation())
    assert theirs.status_code == 201, theirs.get_json()  # not "already exists": its own record
    again = second.post(path, json=attestation())
    assert again.status_code == 409
    assert again.get_json()["code"] == 600061
    for partner in (first, second):
        listed = partner.get(f"{path}?agreementType=MicrosoftCustomerAgreement").get_json()
        assert len(listed["items"]) == 1  # each sees its own attestation only


def test_0014_gives_each_attestation_a_key_naming_its_partner(empty_database):
    from alembic import command
    from sqlalchemy import text

    from portal.domain.acceptance import Contact, attestation_key
    from tests.test_relationships import OLD_ACCEPTANCE, _customer, _partner

    engine = db.make_engine(empty_database)
    db.upgrade(engine, "0008")
    when = datetime(2025, 5, 4, 3, 2, 1, tzinfo=UTC)
    with engine.begin() as connection:
        partner = _partner(connection, "Direct", PartnerKind.DIRECT)
        customer = _customer(connection, partner, "a.example.test", when)
    db.upgrade(engine, "0013")
    old = hashlib.sha256("\x00".join(["a", "b", "a@example.test", ""]).encode()).hexdigest()
    with engine.begin() as connection:
        values = {"at": when.replace(tzinfo=None), "customer_id": customer}
        connection.execute(
            OLD_ACCEPTANCE, {"id": "1", "method": "attested", "key": old, "by": partner, **values}
        )
        connection.execute(
            OLD_ACCEPTANCE, {"id": "2", "method": "direct", "key": "direct", "by": "x", **values}
        )
        connection.execute(text("UPDATE agreement_acceptances SET partner_id = :p"), {"p": partner})
    db.upgrade(engine)
    read = "SELECT id, dedupe_key FROM agreement_acceptances ORDER BY id"
    with engine.connect() as connection:
        keys = dict(connection.execute(text(read)).all())
    assert keys == {
        "1": attestation_key(partner, Contact("A", "B", "a@example.test", "")),
        "2": "direct",
    }
    command.downgrade(db.alembic_config(engine), "0013")
    with engine.connect() as connection:
        assert dict(connection.execute(text(read)).all()) == {"1": old, "2": "direct"}
    engine.dispose()
