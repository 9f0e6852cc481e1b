"""Partner Center's own clients against the portal: the requests the official .NET SDK, the
PowerShell module (on PartnerCenter.DotNet) and the Java SDK put on the wire, replayed from
``tests/data/clients/`` (read from their public sources: bodies in their casing with their
nulls, their headers, query strings and pagers), and every answer read back with a model of the
client's classes (``tests/sdk_models.py``). A partner's script must work with only the base URL
and the key changed."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from portal.core.models import PartnerKind
from tests import sdk_models
from tests.conftest import Api

CLIENTS = Path(__file__).parent / "data" / "clients"
#: Enough customers for two pages of the clients' size=40 queries.
CROWD = 45
#: What the portal answers on purpose with something other than 2xx.
EXPECTED_STATUS = {
    # The domain is free until the customer is created: New-PartnerCustomer goes on.
    ("HEAD", "/v1/domains/{domain}"): 404,
    # Partner Center deletes customers in its sandbox only; the portal never does.
    ("DELETE", "/v1/customers/{customerId}"): 405,
}


def _requests(client: str) -> list[dict[str, Any]]:
    recorded: list[dict[str, Any]] = json.loads((CLIENTS / f"{client}.json").read_text())[
        "requests"
    ]
    return [r for r in recorded if r.get("method")]  # the rest: calls the client has not


def link_path(client: str, uri: str) -> str:
    """The path each client requests for a link's ``uri`` (their sources, in the fixtures)."""
    if client == "dotnet_sdk":  # "/v1/" + uri, unless it already begins with /v1
        return uri if uri.lower().startswith("/v1") else "/v1/" + uri.lstrip("/")
    return "/v1/" + uri  # PartnerCenter.DotNet and Java, verbatim


class Replay:
    """One client's session: the partner, what it created, the last page it read."""

    def __init__(self, client: str, api: Api, reseller: Api) -> None:
        self.client = client
        self.model = sdk_models.CLIENTS[client]
        self.api = api
        self.reseller = reseller
        self.customer_id = ""
        self.creates = 0
        self.pages: list[dict[str, Any]] = []
        self.pages_seen: list[list[str]] = []

    def latest(self, has: Any) -> dict[str, Any]:
        """The last page read that ``has`` what the request goes on from."""
        return next(page for page in reversed(self.pages) if has(page))

    def body(self, recorded: Any) -> Any:
        text = json.dumps(recorded)
        text = text.replace("<indirect reseller partner id guid>", self.reseller.partner_id)
        text = text.replace('"<guid>"', json.dumps(str(uuid.uuid4())))
        return json.loads(text)

    def send(self, recorded: dict[str, Any]) -> Any:
        method, path = recorded["method"], recorded["path"]
        headers = {key: value for key, value in recorded["headers"].items()}
        headers["Authorization"] = f"Bearer {self.api.key}"
        for name in ("MS-RequestId", "MS-CorrelationId"):
            if headers.get(name) == "<guid>":
                headers[name] = str(uuid.uuid4())
        query = recorded.get("raw_query") or (
            urlencode(recorded["query"]) if recorded.get("query") else ""
        )
        token = headers.get("MS-ContinuationToken", "")
        if token.startswith("<token from links."):
            # A pager: the link the last page gave, requested as this client builds it.
            which = "next" if "links.next" in token else "previous"
            page = self.latest(lambda p: p["links"][which] is not None)
            link = page["links"][which]
            path, _, query = link_path(self.client, link["uri"]).partition("?")
            headers.update({h["key"]: h["value"] for h in link["headers"]})
        elif token in ("<continuationToken>", "<token>"):
            page = self.latest(lambda p: p["continuationToken"])
            headers["MS-ContinuationToken"] = page["continuationToken"]
        path = path.replace("{customerId}", self.customer_id)
        data = None
        if recorded.get("body") is not None:
            body = self.body(recorded["body"])
            if path == "/v1/customers" and method == "POST":
                self.creates += 1
                if self.creates > 1:  # the same company again: another domain
                    domain = f"n{self.creates}-contoso-example.onmicrosoft.com"
                    for key in ("CompanyProfile", "companyProfile"):
                        if key in body:
                            body[key]["Domain" if "Domain" in body[key] else "domain"] = domain
            data = json.dumps(body).encode()
        return self.api.client.open(
            path,
            method=method,
            query_string=query,
            headers=headers,
            data=data,
        ), headers

    def check(self, recorded: dict[str, Any]) -> None:
        response, sent = self.send(recorded)
        name = recorded["name"]
        template = recorded["path"].replace("contoso-example.onmicrosoft.com", "{domain}")
        expected = EXPECTED_STATUS.get((recorded["method"], template))
        if expected is None:
            assert 200 <= response.status_code < 300, (name, response.get_json())
        else:
            assert response.status_code == expected, (name, response.status_code)
            if recorded["method"] != "HEAD":
                # An error the SDKs read: ApiFault's code and description.
                error = response.get_json()
                assert error["code"], name
                assert error["description"], name
        # The tracking headers come back as sent.
        assert response.headers["MS-RequestId"] == sent["MS-RequestId"], name
        assert response.headers["MS-CorrelationId"] == sent["MS-CorrelationId"], name
        model = recorded.get("response_model")
        if model is None or expected is not None:
            return
        answer = response.get_json()
        if model == "bool":
            assert answer is True, name
            return
        read = sdk_models.read(self.model, sdk_models.Obj(model), answer)
        self.learn(recorded, read)

    def learn(self, recorded: dict[str, Any], read: dict[str, Any]) -> None:
        model = recorded["response_model"]
        if model == "Customer" and recorded["method"] == "POST":
            assert read["userCredentials"]["password"], "credentials in the creation answer"
            assert read["relationshipToPartner"] == "reseller"
            if not self.customer_id:
                self.customer_id = read["id"]
        if model == "Customer" and recorded["method"] == "GET":
            assert read["id"] == self.customer_id
            assert read["companyProfile"]["domain"] == "contoso-example.onmicrosoft.com"
            assert read["billingProfile"]["culture"] == "en-US"
        if model.startswith("SeekBasedResourceCollection"):
            self.pages.append(read)
            ids = [item["id"] for item in read["items"]]
            assert ids, recorded["name"]
            self.pages_seen.append(ids)
        if model == "ResourceCollection<Agreement>":
            types = {item["type"] for item in read["items"]}
            assert types <= {"MicrosoftCustomerAgreement"}
        if model == "Agreement":
            assert read["primaryContact"]["email"] == "someone@example.com"
            assert read["dateAgreed"].year == 2018
        if model == "DirectSignedCustomerAgreementStatus":
            assert read["isSigned"] is False  # attested, not accepted directly


@pytest.mark.parametrize("sdk", ["dotnet_sdk", "powershell", "java_sdk"])
def test_client_session_replays(make_api, sdk):
    provider = make_api(PartnerKind.INDIRECT_PROVIDER, name="Contoso Provider")
    reseller = make_api(PartnerKind.INDIRECT_RESELLER, provider=provider, name="Reseller")
    replay = Replay(sdk, provider, reseller)
    recorded = _requests(sdk)
    creates = [r for r in recorded if (r["method"], r["path"]) == ("POST", "/v1/customers")]
    assert creates, "every client creates customers"
    # Creation first (the others need the customer), then the crowd that makes pages.
    before = [r for r in recorded if r["path"].startswith(("/v1/domains", "/v1/validations"))]
    for request in before + creates:
        replay.check(request)
    for n in range(CROWD):
        provider.create_customer(company_name=f"Contoso Crowd {n}")
    for request in recorded:
        if request not in before + creates:
            replay.check(request)
    # Following the next links walked forward: pages differ.
    assert len(replay.pages_seen) >= 3
    firsts = [page[0] for page in replay.pages_seen]
    assert len(set(firsts)) > 1


def test_every_client_reads_every_answer_of_a_session_with_paging(make_api):
    """The pager of each client from the first page to the last: every customer once."""
    api = make_api()
    made = [api.create_customer(company_name=f"Contoso {n}")["id"] for n in range(7)]
    for name, model in sdk_models.CLIENTS.items():
        seen: list[str] = []
        page = api.get("/v1/customers?size=3").get_json()
        while True:
            read = sdk_models.read(
                model, sdk_models.Obj("SeekBasedResourceCollection<Customer>"), page
            )
            seen += [item["id"] for item in read["items"]]
            link = read["links"]["next"]
            if link is None:
                break
            headers = {h["key"]: h["value"] for h in link["headers"]}
            page = api.get(link_path(name, link["uri"]), headers=headers).get_json()
        assert seen == made, name


def test_the_model_refuses_what_the_clients_refuse():
    """The model can fail: the answers it would not read."""
    collection = sdk_models.Obj("SeekBasedResourceCollection<Customer>")
    bad_link = {"items": [], "links": {"next": {"uri": 'customers?filter={"a"}', "headers": []}}}
    with pytest.raises(sdk_models.ParseError):
        sdk_models.read(sdk_models.JAVA, collection, bad_link)
    status = sdk_models.Obj("DirectSignedCustomerAgreementStatus")
    with pytest.raises(sdk_models.ParseError):
        sdk_models.read(sdk_models.OFFICIAL, status, {"isSigned": None})
    customer = sdk_models.Obj("Customer")
    with pytest.raises(sdk_models.ParseError):
        sdk_models.read(sdk_models.POWERSHELL, customer, {"relationshipToPartner": "RESELLER!"})
    with pytest.raises(sdk_models.ParseError):
        sdk_models.read(sdk_models.JAVA, customer, {"relationshipToPartner": "microsoft_support"})
    metadata = sdk_models.Obj("AgreementMetaData")
    with pytest.raises(sdk_models.ParseError):
        sdk_models.read(sdk_models.OFFICIAL, metadata, {"versionRank": None})
    assert sdk_models.read(sdk_models.JAVA, metadata, {"versionRank": None})["versionRank"] == 0
    # Names: any case for .NET, exact for Java.
    shouted = {"IsSigned": True}
    assert sdk_models.read(sdk_models.OFFICIAL, status, shouted)["isSigned"] is True
    assert sdk_models.read(sdk_models.JAVA, status, shouted)["isSigned"] is None
