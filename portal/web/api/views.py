"""The partner API under ``/v1``: Partner Center's names and shapes, bearer API keys, JSON only.

Handlers parse input, call the domain, shape the output and own the commit. No handler touches the
session cookie, so no API response sets one.
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from cryptography.fernet import Fernet
from flask import Blueprint, Response, current_app, g, jsonify, request
from flask.typing import ResponseReturnValue
from itsdangerous import BadSignature, URLSafeSerializer

from portal.core import catalog, db, validate
from portal.core.errors import (
    AGREEMENT_REQUIRED_CODE,
    AGREEMENT_REQUIRED_DESCRIPTION,
    CustomerNotFound,
    InvalidBody,
    InvalidFields,
    InvalidParameter,
    NoDocuments,
    NotFound,
    Problem,
    ProblemCode,
    TemplateNotFound,
    Unauthorized,
    UnsupportedMediaType,
)
from portal.core.models import (
    AcceptanceMethod,
    AgreementAcceptance,
    Customer,
    DeliveryStatus,
    Invitation,
    OutboxMessage,
    Partner,
    PersonalRequest,
    RelationshipState,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookStatus,
    is_id,
    iso,
)
from portal.domain import (
    acceptance,
    countries,
    customers,
    idempotency,
    invitations,
    partners,
    relationship_requests,
    relationships,
    webhooks,
)
from portal.domain.acceptance import Contact, Status
from portal.i18n import languages

bp = Blueprint("api", __name__, url_prefix="/v1")

OPENAPI = Path(__file__).parent / "openapi.json"
_PAGE_SALT = "portal.customers-page"
#: Beyond Partner Center: the customer also accepts the German professional secrecy amendment.
SECRECY_FIELD = "professionalSecrecyAmendment"
#: Endpoints that check the key themselves (``openapi``: none needed; the status: in its one query).
_OWN_AUTH = {"api.openapi", "api.direct_signed_status"}


# --- authentication ---------------------------------------------------------------------------


def _bearer() -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 200:
        raise Unauthorized()
    return token


#: Partner Center's tracking headers: the SDKs send both on every request, and expect them back.
TRACKING_HEADERS = ("MS-RequestId", "MS-CorrelationId")
_TRACKING_VALUE = re.compile(r"[A-Za-z0-9._:-]{1,64}\Z")


class SlashTolerantPaths:
    """WSGI middleware: ``/v1//customers`` (and ``/v1//v1/customers``) is ``/v1/customers``.

    PartnerCenter.DotNet (under the PowerShell module) and the Java SDK request a link's uri
    as ``"/v1/" + uri``; Partner Center's own uris begin with ``/`` or ``/v1/``, so partners'
    scripts following links (ours or ones they build the same way) ask for these paths."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path: str = environ.get("PATH_INFO", "")
        if path.startswith("/v1//"):
            rest = path[4:].lstrip("/")
            if rest.startswith("v1/"):
                rest = rest[3:].lstrip("/")
            environ["PATH_INFO"] = "/v1/" + rest
        return self.app(environ, start_response)


@bp.after_app_request
def echo_tracking_headers(response: Response) -> Response:
    """Every answer under /v1 (errors and unknown paths too) carries ``MS-RequestId`` and
    ``MS-CorrelationId``: the request's, or new ones when it sent none (or an unusable one)."""
    if request.path.startswith("/v1/") or request.path == "/v1":
        for name in TRACKING_HEADERS:
            sent = request.headers.get(name, "")
            response.headers[name] = sent if _TRACKING_VALUE.match(sent) else str(uuid.uuid4())
    return response


@bp.before_request
def authenticate() -> ResponseReturnValue | None:
    if request.endpoint in _OWN_AUTH:
        return None
    # Before the request's own session begins (on SQLite a writer's holds the write lock).
    replayed = _replay_or_claim()
    if replayed is not None:
        return replayed
    partner = partners.partner_for_key(db.session(), _bearer())
    if partner is None:
        raise Unauthorized()
    g.partner = partner
    return None


def _replay_or_claim() -> Response | None:
    """A POST or DELETE with ``MS-RequestId`` is claimed before it runs; a retry of one that was
    answered gets that answer back (``portal.domain.idempotency``)."""
    if request.method not in ("POST", "DELETE"):
        return None
    request_id = request.headers.get("MS-RequestId", "")
    if not _TRACKING_VALUE.match(request_id):
        return None
    print_ = idempotency.fingerprint(
        request.method, request.path, request.query_string, request.get_data()
    )
    with db.engine().connect() as connection:  # on SQLite, no write lock to look
        partner_id = partners.partner_id_for_key(connection, _bearer())
    if partner_id is None:
        raise Unauthorized()
    found = idempotency.claim(db.engine(), partner_id, request_id, print_, _seal())
    if found is None:
        g.claimed = (partner_id, request_id)
        return None
    response = jsonify(found.body) if found.body is not None else Response()
    response.status_code = found.status
    if found.location:
        response.headers["Location"] = found.location
    return response


def _seal() -> Fernet:
    if "seal" not in g:
        g.seal = idempotency.sealer(current_app.config["SECRET_KEY"], _bearer())
    seal: Fernet = g.seal
    return seal


@bp.after_request
def answer_claimed(response: Response) -> Response:
    """Store the answer to a claimed request; a 5xx or 429 (worth retrying) lets the claim go."""
    claimed = g.pop("claimed", None)
    if claimed is None:
        return response
    db.end_session()  # the view committed what it meant to; its session must not hold a lock
    partner_id, request_id = claimed
    if response.status_code >= 500 or response.status_code == 429:
        idempotency.release(db.engine(), partner_id, request_id)
    else:
        idempotency.answer(
            db.engine(),
            partner_id,
            request_id,
            response.status_code,
            response.get_json(silent=True) if response.is_json else None,
            response.headers.get("Location"),
            _seal(),
        )
    return response


@bp.teardown_request
def release_unanswered(_exc: BaseException | None) -> None:
    """A request that ended without an answer (an exception past every handler) lets its claim
    go, so a retry runs it again."""
    claimed = g.pop("claimed", None)
    if claimed is not None:
        db.end_session()
        idempotency.release(db.engine(), *claimed)


def _partner() -> Partner:
    partner: Partner = g.partner
    return partner


# --- reading JSON bodies ----------------------------------------------------------------------


#: Longest number accepted in a body (no field takes a number; Python would spend time on
#: a thousand digits, and refuse more with a message about its own settings).
MAX_DIGITS = 100


class _Refused(ValueError):
    """A JSON value the API does not take, in the client's terms."""


def _whole_number(text: str) -> int:
    if len(text.lstrip("-")) > MAX_DIGITS:
        raise _Refused(f"a number has more than {MAX_DIGITS} digits")
    return int(text)


def _no_constant(name: str) -> Any:
    raise _Refused(f"{name} is not a JSON value")


def _json_body(optional: bool = False) -> dict[str, Any]:
    """The body as a JSON object. ``optional``: an empty body, or ``null``, is an empty object.

    Only ``application/json`` is read as JSON (415 otherwise); every problem is said in the
    client's terms, with where it is.
    """
    data = request.get_data(cache=False)  # 413 past MAX_CONTENT_LENGTH, however it is framed
    if optional and not data.strip():
        return {}
    if request.mimetype != "application/json":
        raise UnsupportedMediaType(contentType=(request.content_type or "")[:100])
    charset = request.mimetype_params.get("charset", "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        raise UnsupportedMediaType(
            "The request body must be UTF-8 JSON (charset=utf-8, or none).", charset=charset
        )
    try:
        text = data.decode("utf-8-sig")  # a byte order mark is no error
    except UnicodeDecodeError as exc:
        raise InvalidBody(
            f"The request body is not UTF-8 text (byte {exc.start + 1} cannot be read)."
        ) from exc
    try:
        body = json.loads(text, parse_int=_whole_number, parse_constant=_no_constant)
    except RecursionError as exc:
        raise InvalidBody("The request body is nested too deeply.") from exc
    except json.JSONDecodeError as exc:
        raise InvalidBody(
            f"The request body is not valid JSON: {exc.msg} (line {exc.lineno}, column "
            f"{exc.colno})."
        ) from exc
    except _Refused as exc:
        raise InvalidBody(f"The request body cannot be read: {exc}.") from exc
    if optional and body is None:
        return {}
    if not isinstance(body, dict):
        raise InvalidBody("The request body must be a JSON object.")
    return body


#: JSON can spell lone UTF-16 surrogates (\\ud800) and NUL (\\u0000): neither is text, and
#: neither can be stored.
_NOT_TEXT = re.compile("[\x00\ud800-\udfff]")
_MUST_BE_OBJECT = Problem(ProblemCode.WRONG_TYPE, "must be an object")
_MUST_BE_STRING = Problem(ProblemCode.WRONG_TYPE, "must be a string")
_MUST_BE_BOOLEAN = Problem(ProblemCode.WRONG_TYPE, "must be true or false")
_MUST_BE_STRINGS = Problem(ProblemCode.WRONG_TYPE, "must be a list of strings")
_NOT_VALID_TEXT = Problem(ProblemCode.WRONG_TYPE, "contains characters that are not valid text")
_NOT_DATE = Problem(ProblemCode.NOT_DATE, "is not an ISO 8601 date such as 2024-06-14T00:00:00Z")
_GIVEN_TWICE = Problem(
    ProblemCode.WRONG_TYPE, "is given more than once, in different cases, with different values"
)


_ABSENT = object()


class Fields:
    """Reads fields out of a JSON body, naming every missing or wrong-typed one at once.

    Names are matched without regard to case, and ``null`` is a field left out, as
    Newtonsoft.Json reads them: the .NET SDK and the PowerShell module send PascalCase names
    (``"PrimaryContact"``) with every unset field written out as ``null``. Problems name the
    documented (camelCase) path.
    """

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.problems: dict[str, Problem] = {}

    def _lookup(self, path: str, absent: Any = None) -> Any:
        """The value at ``path``; ``absent`` when a key on the way is missing."""
        value: Any = self.body
        walked = []
        for part in path.split("."):
            walked.append(part)
            if value is None:
                return absent
            if not isinstance(value, dict):
                self.problems.setdefault(".".join(walked[:-1]), _MUST_BE_OBJECT)
                return absent
            found = self._member(value, part, ".".join(walked))
            if found is _ABSENT:
                return absent
            value = found
        return value

    def _member(self, obj: dict[str, Any], name: str, path: str) -> Any:
        """``obj``'s member ``name`` in any case; ``_ABSENT`` when there is none (or only
        nulls), and a problem when two spellings carry different values."""
        lowered = name.lower()
        spellings = [v for k, v in obj.items() if k.lower() == lowered and v is not None]
        if not spellings:
            return _ABSENT
        if any(v != spellings[0] for v in spellings[1:]):
            self.problems.setdefault(path, _GIVEN_TWICE)
            return _ABSENT
        return spellings[0]

    def string(self, path: str, required: bool = True) -> str:
        value = self._lookup(path)
        if value is None:
            if required:
                self.problems.setdefault(path, validate.REQUIRED)
            return ""
        if not isinstance(value, str):
            self.problems.setdefault(path, _MUST_BE_STRING)
            return ""
        if _NOT_TEXT.search(value):
            self.problems.setdefault(path, _NOT_VALID_TEXT)
            return ""
        if required and not value.strip():
            self.problems.setdefault(path, validate.REQUIRED)
        return value

    def strings(self, path: str) -> list[str]:
        """A list of strings; an absent field is an empty list."""
        value = self._lookup(path)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            self.problems.setdefault(path, _MUST_BE_STRINGS)
            return []
        return list(value)

    def boolean(self, path: str, default: bool) -> bool:
        value = self._lookup(path, absent=_ABSENT)
        if value is _ABSENT or value is None:  # null counts as left out, as for every field
            return default
        if not isinstance(value, bool):
            self.problems.setdefault(path, _MUST_BE_BOOLEAN)
            return default
        return value

    def check(self) -> None:
        if self.problems:
            raise InvalidFields(self.problems)


def _parse_date(value: str, field: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise InvalidFields({field: _NOT_DATE}) from exc


# --- shaping output ---------------------------------------------------------------------------


def _collection(items: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "totalCount": len(items),
        "items": items,
        **extra,
        "attributes": {"objectType": "Collection"},
    }


def customer_json(customer: Customer, through: str | None = None) -> dict[str, Any]:
    """A customer in Partner Center's shape; ``through``: the reseller a provider sees it
    through (``associatedPartnerId``), None for the partner's own customer."""
    body: dict[str, Any] = {
        "id": customer.id,
        "companyProfile": {
            "tenantId": customer.id,
            "domain": customer.domain,
            "companyName": customer.company_name,
            "attributes": {"objectType": "CustomerCompanyProfile"},
        },
        "billingProfile": {
            "firstName": customer.address_first_name,
            "lastName": customer.address_last_name,
            "email": customer.email,
            "culture": customer.culture,
            "language": customer.language,
            "companyName": customer.company_name,
            "defaultAddress": {
                "country": customer.country,
                "city": customer.city,
                "state": customer.state,
                "addressLine1": customer.address_line1,
                "addressLine2": customer.address_line2,
                "postalCode": customer.postal_code,
                "firstName": customer.address_first_name,
                "lastName": customer.address_last_name,
                "phoneNumber": customer.phone,
            },
            "attributes": {"objectType": "CustomerBillingProfile"},
        },
        "primaryContact": {
            "firstName": customer.contact_first_name,
            "lastName": customer.contact_last_name,
            "email": customer.contact_email,
            "phoneNumber": customer.contact_phone,
        },
        # Partner Center's: what the caller is to the customer. Every customer a partner sees,
        # it serves as a reseller (an indirect one too, as Partner Center says it).
        "relationshipToPartner": "reseller",
        SECRECY_FIELD: customer.requires_secrecy_amendment,
        "createdAt": iso(customer.created_at),
        "links": {"self": {"uri": f"/v1/customers/{customer.id}", "method": "GET"}},
        "attributes": {"objectType": "Customer"},
    }
    if through is not None:
        # Partner Center's name for the reseller a provider's customer belongs to.
        body["associatedPartnerId"] = through
    return body


def agreement_json(acceptance: AgreementAcceptance, *, evidence: bool = False) -> dict[str, Any]:
    agreement = catalog.current().by_template(acceptance.template_id)
    result: dict[str, Any] = {
        "primaryContact": {
            "firstName": acceptance.first_name,
            "lastName": acceptance.last_name,
            "email": acceptance.email,
            "phoneNumber": acceptance.phone,
        },
        "templateId": acceptance.template_id,
        "dateAgreed": iso(acceptance.date_agreed),
        "type": acceptance.agreement_type,
        "agreementLink": agreement.link if agreement else "",
        "userId": acceptance.recorded_by,
        "acceptanceMethod": acceptance.method.value,
        "attributes": {"objectType": "Agreement"},
    }
    if evidence:
        result.update(
            id=acceptance.id,
            versionRank=acceptance.version_rank,
            recordedAt=iso(acceptance.recorded_at),
            country=acceptance.country,
            language=acceptance.language,
            documentUri=acceptance.document_uri,
        )
        if acceptance.method is AcceptanceMethod.DIRECT:
            result["evidence"] = {
                "ipAddress": acceptance.ip_address,
                "userAgent": acceptance.user_agent,
            }
    return result


# --- customers --------------------------------------------------------------------------------


@bp.post("/customers")
@db.reads_first
def create_customer() -> ResponseReturnValue:
    fields = Fields(_json_body())
    address = "billingProfile.defaultAddress"
    names = {
        "domain": "companyProfile.domain",
        "company_name": "billingProfile.companyName",
        "email": "billingProfile.email",
        "culture": "billingProfile.culture",
        "language": "billingProfile.language",
        "country": f"{address}.country",
        "first_name": f"{address}.firstName",
        "last_name": f"{address}.lastName",
        "address_line1": f"{address}.addressLine1",
        "address_line2": f"{address}.addressLine2",
        "city": f"{address}.city",
        "state": f"{address}.state",
        "postal_code": f"{address}.postalCode",
        "phone": f"{address}.phoneNumber",
        "contact_first_name": "primaryContact.firstName",
        "contact_last_name": "primaryContact.lastName",
        "contact_email": "primaryContact.email",
        "contact_phone": "primaryContact.phoneNumber",
    }
    required = {
        "domain",
        "company_name",
        "email",
        "culture",
        "language",
        "country",
        "first_name",
        "last_name",
    }
    values = {attr: fields.string(path, attr in required) for attr, path in names.items()}
    secrecy = fields.boolean(SECRECY_FIELD, False)
    # A provider creates a customer for one of its indirect resellers, as in Partner Center.
    associated = fields.string("associatedPartnerId", required=False) or None
    fields.check()
    names["requires_secrecy_amendment"] = SECRECY_FIELD
    data = customers.NewCustomer(**values, requires_secrecy_amendment=secrecy, names=names)
    partner = relationship_requests.requester(
        db.session(), _partner(), associated, field="associatedPartnerId"
    )
    # Nothing is written yet: end the transaction that checked the key, so the one that writes
    # (on SQLite, holding the write lock) begins after the checks and the hashing.
    db.session().commit()
    created = customers.create_customer(
        db.session(),
        partner,
        data,
        catalog.current(),
        current_app.extensions["portal.peppers"][0],
        actor=f"partner:{_partner().id}",
    )
    db.session().commit()
    body = customer_json(created.customer, through=partner.id if associated else None)
    body["userCredentials"] = {"userName": created.user_name, "password": created.password}
    response = jsonify(body)
    response.status_code = 201
    response.headers["Location"] = f"/v1/customers/{created.customer.id}"
    return response


@bp.route("/domains/<domain>", methods=["HEAD", "GET"])
def domain_exists(domain: str) -> ResponseReturnValue:
    """Partner Center's domain check: 200 when a customer has the domain, 404 when it is free
    (the PowerShell module's New-PartnerCustomer asks before it creates)."""
    if not customers.domain_exists(db.session(), domain):
        raise NotFound("No customer has this domain.", domain=domain[:254])
    return jsonify({"domain": domain.strip().lower(), "exists": True})


@bp.get("/countryvalidationrules/<country>")
def country_validation_rules(country: str) -> ResponseReturnValue:
    """Partner Center's ``CountryValidationRules``: what the portal checks in an address there,
    and the cultures and languages the customer agreement is published in."""
    found = countries.rules(country.upper(), catalog.current())
    if found is None:
        raise NotFound("No such country (ISO 3166 alpha-2, e.g. DE).", country=country[:50])
    return jsonify(found)


@bp.post("/validations/address")
def validate_address() -> ResponseReturnValue:
    """Partner Center's address check: ``true``, or 400 naming each field that would be
    refused in a customer's ``defaultAddress``."""
    fields = Fields(_json_body())
    names = {
        "country": "country",
        "first_name": "firstName",
        "last_name": "lastName",
        "address_line1": "addressLine1",
        "address_line2": "addressLine2",
        "city": "city",
        "state": "state",
        "postal_code": "postalCode",
        "phone": "phoneNumber",
    }
    values = {attr: fields.string(path, attr == "country") for attr, path in names.items()}
    fields.check()
    address = customers.Address(**values)
    checks = customers.address_checks(address, names_required=False)
    checks["country"] = customers.country_check(address.country, catalog.current())
    problems = {names[key]: problem for key, problem in checks.items() if problem}
    if problems:
        raise InvalidFields(problems)
    return jsonify(True)


def _page_serializer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt=_PAGE_SALT)


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 9) or not low <= int(raw) <= high:
        raise InvalidParameter(
            f"{name} must be a whole number from {low} to {high}.", **{name: raw[:50]}
        )
    return int(raw)


@dataclass(frozen=True)
class _Place:
    """Where a continuation token stands: its page's first and last item, size and filter.
    A seek query sends only ``seekOperation`` and the token, so the token carries the rest."""

    first: tuple[datetime, str] | None
    last: tuple[datetime, str] | None
    size: int
    filter: str | None

    def dumps(self) -> str:
        def key(item: tuple[datetime, str] | None) -> list[str] | None:
            return [item[0].isoformat(), item[1]] if item else None

        return _page_serializer().dumps([key(self.first), key(self.last), self.size, self.filter])


def _read_place(token: str) -> _Place:
    def key(item: Any) -> tuple[datetime, str] | None:
        return (datetime.fromisoformat(item[0]), str(item[1])) if item else None

    try:
        loaded = _page_serializer().loads(token)
        if len(loaded) == 2:  # a token of the portal before 2026-12: the last item only
            return _Place(None, key(loaded), 0, None)
        first, last, size, raw_filter = loaded
        return _Place(key(first), key(last), int(size), raw_filter)
    except (BadSignature, ValueError, TypeError, IndexError) as exc:
        raise InvalidParameter(
            "continuationToken is not one this API gave out.", continuationToken=token[:50]
        ) from exc


_SEEK_OPERATIONS = {"next", "previous", "first"}


@bp.get("/customers")
def list_customers() -> ResponseReturnValue:
    """Partner Center's customer list: ``size`` (0: the default), ``filter``, and paging by
    ``seekOperation`` (Next, Previous, First) with the continuation token, in the query or in
    ``MS-ContinuationToken`` as the links and the SDKs' seek queries send it."""
    config = current_app.config
    token = request.args.get("continuationToken") or request.headers.get("MS-ContinuationToken")
    place = _read_place(token) if token else None
    # size=0, as the SDKs' simple query sends it, means the default page size.
    size = _int_arg("size", place.size if place else 0, 0, config["API_MAX_PAGE_SIZE"])
    size = size or config["API_PAGE_SIZE"]
    raw_filter = request.args.get("filter") or (place.filter if place else None)
    where = _customer_filter(raw_filter) if raw_filter else None
    seek = request.args.get("seekOperation", "Next" if place else "First")
    if seek.lower() not in _SEEK_OPERATIONS:
        raise InvalidParameter(
            "seekOperation must be Next, Previous or First.", seekOperation=seek[:50]
        )
    # Without a token every operation starts from the beginning: the first page.
    after = before = None
    if place is not None and seek.lower() == "next":
        after = place.last
    elif place is not None and seek.lower() == "previous":
        before = place.first
    if place is not None and seek.lower() != "first" and not (after or before):
        # Only a token of the portal before 2026-12 (it knew its page's last item only).
        raise InvalidParameter(
            "This continuation token cannot go back: ask for the first page again.",
            seekOperation=seek[:50],
        )
    page = customers.page(db.session(), _partner().id, size, after, where, before)
    links: dict[str, Any] = {"self": {"uri": request.full_path.rstrip("?"), "method": "GET"}}
    body: dict[str, Any] = {
        "totalCount": page.total,
        "count": len(page.items),
        "items": [customer_json(c, through) for c, through in page.items],
        "links": links,
        "attributes": {"objectType": "Collection"},
    }
    if page.after is None and page.before is None:
        return jsonify(body)
    token = _Place(page.first, page.last, size, raw_filter).dumps()
    # Relative to /v1 and without a leading slash: the official SDK prepends "/v1/" when the
    # uri does not begin with "/v1", PartnerCenter.DotNet (PowerShell) and the Java SDK always
    # do, so this is the one form all three request as /v1/customers?…
    query = f"size={size}&continuationToken={token}"
    if raw_filter:
        query += "&filter=" + quote(raw_filter, safe="")
    for name, there, operation in (
        ("next", page.after, "Next"),
        ("previous", page.before, "Previous"),
    ):
        if there is not None:
            links[name] = {
                "uri": f"customers?{query}&seekOperation={operation}",
                "method": "GET",
                "headers": [{"key": "MS-ContinuationToken", "value": token}],
            }
    if page.after is not None:
        body["continuationToken"] = token
    return jsonify(body)


_OPERATORS = {"starts_with", "startswith"}


def _customer_filter(raw: str) -> Any:
    """Partner Center's customer query, ``{"Field": …, "Value": …, "Operator": "starts_with"}``,
    with its names in any case and its fields and operator in every spelling real clients send;
    anything else is a 400 naming what."""

    def refuse(why: str) -> InvalidParameter:
        return InvalidParameter(f"filter {why}.", filter=raw[:200])

    try:
        parsed = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise refuse(
            'is not JSON such as {"Field": "CompanyName", "Value": "cont", '
            '"Operator": "starts_with"}'
        ) from exc
    if not isinstance(parsed, dict):
        raise refuse("must be a JSON object")
    named = {str(key).lower(): value for key, value in parsed.items()}
    unknown = sorted(set(named) - {"field", "value", "operator", "fieldtype"})
    if unknown:
        raise refuse(f"has unknown members {', '.join(unknown)}")
    # The Java SDK adds "fieldType": "String", the only type a customer field has.
    if str(named.get("fieldtype", "String")).lower() != "string":
        raise refuse("fieldType must be String")
    field, value, operator = (named.get(name) for name in ("field", "value", "operator"))
    if not isinstance(field, str) or field.lower() not in customers.FILTER_FIELDS:
        raise refuse(
            "Field must be one of CompanyName, Domain, IndirectReseller, "
            "IndirectCloudSolutionProvider (or DisplayName, DefaultDomainName)"
        )
    if not isinstance(value, str) or not value or len(value) > 200 or validate.has_control(value):
        raise refuse("Value must be a text of 1 to 200 characters")
    if not isinstance(operator, str) or operator.lower() not in _OPERATORS:
        raise refuse("Operator must be starts_with (or StartsWith): the only one there is")
    return customers.starts_with(customers.FILTER_FIELDS[field.lower()], value)


def _seen_by() -> list[str]:
    """The partners whose dealings the caller sees: itself and, for a provider, its resellers."""
    return relationships.partner_ids(db.session(), _partner().id)


def _visible_customer(customer_id: str, with_credential: bool = False) -> Customer:
    customer_id = customer_id.lower()
    if not is_id(customer_id):
        raise CustomerNotFound(customerId=customer_id[:64])
    return customers.get_visible(
        db.session(), _partner().id, customer_id, with_credential=with_credential
    )


@bp.get("/customers/relationshiprequests")
def relationship_request() -> ResponseReturnValue:
    """The caller's reusable reseller relationship request link (Partner Center's shape); a
    provider's on behalf of one of its resellers with ``indirectResellerId``."""
    partner = relationship_requests.requester(
        db.session(), _partner(), request.args.get("indirectResellerId")
    )
    provider_id = request.args.get("indirectCloudSolutionProviderId")
    if provider_id and provider_id.lower() != (partner.provider_id or ""):
        raise relationship_requests.NotYourPartner(indirectCloudSolutionProviderId=provider_id[:64])
    links = invitations.LinkSettings.from_config(current_app.config)
    return jsonify(
        {
            "url": relationship_requests.url(links, partner),
            "attributes": {"objectType": "RelationshipRequest"},
        }
    )


@bp.get("/customers/<customer_id>/relationships")
def customer_relationships(customer_id: str) -> ResponseReturnValue:
    """The customer's two-tier partners the caller may know of: a provider sees its resellers
    on the customer, a reseller its provider; nobody sees other partners."""
    customer = _visible_customer(customer_id)
    me = _partner()
    items = []
    for found in relationships.listed(db.session(), customer_id=customer.id, partner_id=me.id):
        if found.state is not RelationshipState.ACTIVE:
            continue
        if found.partner_id != me.id:  # my reseller's
            items.append(_partner_relationship(found.partner, "is_indirect_reseller_of"))
        elif found.provider_id is not None and found.partner.provider is not None:
            provider = found.partner.provider
            items.append(_partner_relationship(provider, "is_indirect_cloud_solution_provider_of"))
    return jsonify(_collection(items))


def _partner_relationship(partner: Partner, relationship_type: str) -> dict[str, Any]:
    return {
        "id": partner.id,
        "name": partner.name,
        "relationshipType": relationship_type,
        "state": "active",
        "location": partner.country,
        "attributes": {"objectType": "PartnerRelationship"},
    }


@bp.get("/customers/<customer_id>")
def get_customer(customer_id: str) -> ResponseReturnValue:
    customer = _visible_customer(customer_id)
    through = customers.seen_through(db.session(), _partner().id, customer.id)
    return jsonify(customer_json(customer, through))


# --- agreements -------------------------------------------------------------------------------


def _agreement_types() -> list[str]:
    wanted = request.args.get("agreementType", catalog.DEFAULT_AGREEMENT_TYPE)
    found = catalog.current().of_type(wanted)
    if not found:
        raise InvalidParameter(
            f"agreementType must be one of {', '.join(catalog.current().types)} or *.",
            agreementType=wanted[:64],
        )
    return [a.type for a in found]


@bp.get("/agreements")
def list_agreements() -> ResponseReturnValue:
    types = _agreement_types()
    items = [
        {
            "templateId": a.template_id,
            "agreementType": a.type,
            "agreementLink": a.link,
            "versionRank": a.version_rank,
        }
        for a in catalog.current().agreements
        if a.type in types
    ]
    return jsonify(_collection(items))


@bp.get("/agreementtemplates/<template_id>/document")
def agreement_document(template_id: str) -> ResponseReturnValue:
    agreement = catalog.current().by_template(template_id)
    if agreement is None:
        raise TemplateNotFound(templateId=template_id[:64])
    country = request.args.get("country", catalog.FALLBACK_COUNTRY)
    language = request.args.get("language", catalog.FALLBACK_LANGUAGE)
    if not catalog.COUNTRY.match(country):
        raise InvalidParameter(
            "country must be a two-letter upper-case code such as DE.", country=country[:50]
        )
    if len(language) > 35 or not all(p.isalnum() for p in language.replace("_", "-").split("-")):
        raise InvalidParameter("language must be a tag such as de-DE.", language=language[:50])
    try:
        document = agreement.document(country, language)
    except catalog.NoDocuments as exc:
        raise NoDocuments(templateId=template_id) from exc
    return jsonify(
        {
            "displayUri": document.display_uri,
            "downloadUri": document.download_uri,
            "language": document.language,
            "country": document.country,
        }
    )


@bp.post("/customers/<customer_id>/agreements")
def attest(customer_id: str) -> ResponseReturnValue:
    partner = _partner()
    customer = _visible_customer(customer_id)
    fields = Fields(_json_body())
    contact = Contact(
        first_name=fields.string("primaryContact.firstName"),
        last_name=fields.string("primaryContact.lastName"),
        email=fields.string("primaryContact.email"),
        phone=fields.string("primaryContact.phoneNumber", required=False),
    )
    template_id = fields.string("templateId")
    agreement_type = fields.string("type")
    date_text = fields.string("dateAgreed")
    fields.check()
    recorded = acceptance.attest(
        db.session(),
        partner,
        customer,
        catalog.current(),
        agreement_type=agreement_type,
        template_id=template_id,
        date_agreed=_parse_date(date_text, "dateAgreed"),
        contact=contact,
    )
    acceptance.notify_attestation(
        db.session(),
        partner,
        customer,
        recorded,
        catalog.current(),
        base_url=current_app.config["BASE_URL"],
        locales=languages.available_locales(),
    )
    db.session().commit()
    response = jsonify(agreement_json(recorded))
    response.status_code = 201
    return response


@bp.get("/customers/<customer_id>/agreements")
def customer_agreements(customer_id: str) -> ResponseReturnValue:
    customer = _visible_customer(customer_id)
    found = acceptance.acceptances(
        db.session(), customer.id, _agreement_types(), seen_by=_seen_by()
    )
    return jsonify(_collection([agreement_json(a) for a in found]))


@bp.get("/customers/<customer_id>/directSignedMicrosoftCustomerAgreementStatus")
def direct_signed_status(customer_id: str) -> ResponseReturnValue:
    key = _bearer()
    customer_id = customer_id.lower()
    if not is_id(customer_id):
        customer_id = ""  # matches no customer; the key is still checked
    result = acceptance.direct_signed_status(db.engine(), key, customer_id)
    if not result.key_valid:
        raise Unauthorized()
    if not result.customer_visible:
        raise CustomerNotFound(customerId=customer_id)
    return jsonify({"isSigned": result.is_signed})


def _status_json(status: Status) -> dict[str, Any]:
    chosen = status.direct or status.attested
    return {
        "customerId": status.customer.id,
        "state": status.state,
        "isSigned": status.direct is not None,
        "eligibleForPurchase": status.eligible,
        "invited": status.invited_at is not None,
        "invitedAt": iso(status.invited_at),
        "linkOpened": status.opened_at is not None,
        "linkOpenedAt": iso(status.opened_at),
        "signedIn": status.signed_in_at is not None,
        "signedInAt": iso(status.signed_in_at),
        "acceptance": agreement_json(chosen, evidence=True) if chosen else None,
        "agreements": [agreement_json(a, evidence=True) for a in status.acceptances],
    }


@bp.get("/customers/<customer_id>/acceptanceStatus")
def acceptance_status(customer_id: str) -> ResponseReturnValue:
    customer = _visible_customer(customer_id)
    return jsonify(_status_json(acceptance.status(db.session(), customer, _seen_by())))


@bp.get("/customers/<customer_id>/purchaseEligibility")
def purchase_eligibility(customer_id: str) -> ResponseReturnValue:
    partner = _partner()
    customer = _visible_customer(customer_id)
    status = acceptance.status(db.session(), customer, _seen_by())
    body: dict[str, Any] = {
        "customerId": customer.id,
        "eligible": status.eligible,
        "state": status.state,
    }
    if status.eligible:
        chosen = status.direct or status.attested
        assert chosen is not None  # noqa: S101 - eligible means one of them is set
        body["acceptance"] = agreement_json(chosen, evidence=True)
        return jsonify(body)
    body["error"] = {
        "code": AGREEMENT_REQUIRED_CODE,
        "errorName": "CustomerAgreementNotAccepted",
        "description": AGREEMENT_REQUIRED_DESCRIPTION,
        "message": AGREEMENT_REQUIRED_DESCRIPTION,
        "errorMessageExtended": f"InternalErrorCode={AGREEMENT_REQUIRED_CODE}",
        "isRetryable": False,
        "parameters": {},
    }
    steps = [
        {
            "action": "inviteCustomer",
            "description": "Send the customer an invitation to accept the agreement on the portal.",
            "method": "POST",
            "uri": f"/v1/customers/{customer.id}/invitations",
        }
    ]
    if partner.may_attest:
        steps.append(
            {
                "action": "attest",
                "description": "Confirm that the customer has accepted the agreement.",
                "method": "POST",
                "uri": f"/v1/customers/{customer.id}/agreements",
            }
        )
    body["nextSteps"] = steps
    return jsonify(body)


# --- invitations ------------------------------------------------------------------------------


def _links() -> invitations.LinkSettings:
    return invitations.LinkSettings.from_config(current_app.config)


def message_json(message: OutboxMessage) -> dict[str, Any]:
    return {
        "id": message.id,
        "to": message.to_address,
        "status": message.status.value,
        "attempts": message.attempts,
        "lastError": message.last_error or None,
        "createdAt": iso(message.created_at),
        "nextAttemptAt": iso(message.next_attempt_at)
        if message.status is DeliveryStatus.QUEUED
        else None,
        "sentAt": iso(message.sent_at),
    }


def invitation_json(invitation: Invitation, url: str | None = None) -> dict[str, Any]:
    """``url``: the link when the caller has it already (it is signed again otherwise)."""
    state = invitations.status(invitation)
    if url is None and invitations.is_open(invitation):
        url = _links().url(invitation)
    return {
        "id": invitation.id,
        "customerId": invitation.customer_id,
        "url": url,
        "status": state,
        "to": invitation.recipient,
        "language": invitation.language.replace("_", "-"),
        "includeCredentials": invitation.include_credentials,
        "createdAt": iso(invitation.created_at),
        "expiresAt": iso(invitation.expires_at),
        "openedAt": iso(invitation.opened_at),
        "revokedAt": iso(invitation.revoked_at),
        "messages": [message_json(m) for m in invitation.messages],
    }


@bp.post("/customers/<customer_id>/invitations")
@db.reads_first
def create_invitation(customer_id: str) -> ResponseReturnValue:
    partner = _partner()
    customer = _visible_customer(customer_id, with_credential=True)
    # The options are optional: no body, or JSON null, means the defaults.
    fields = Fields(_json_body(optional=True))
    to = fields.string("to", required=False) or None
    language = fields.string("language", required=False) or None
    options = invitations.Options(
        send=fields.boolean("send", False),
        to=to,
        language=language,
        include_credentials=fields.boolean("includeCredentials", True),
    )
    fields.check()
    actor = f"partner:{partner.id}"
    # Nothing is written yet: end the reading transaction while the email is rendered and
    # built. The one that stores the invitation is short (on SQLite it holds the write lock).
    db.session().commit()
    draft = invitations.prepare(
        customer,
        options,
        links=_links(),
        pepper=current_app.extensions["portal.peppers"][0],
        locales=languages.available_locales(),
        actor=actor,
    )
    issued = invitations.issue(db.session(), customer, draft, actor=actor, partner_id=partner.id)
    db.session().commit()
    invitation = issued.invitation
    body = invitation_json(invitation, issued.url)
    body.update(
        userName=issued.user_name,
        password=issued.password,
        subject=invitation.subject,
        textBody=invitation.text_body,
        htmlBody=invitation.html_body,
    )
    response = jsonify(body)
    response.status_code = 201
    response.headers["Location"] = f"/v1/customers/{customer.id}/invitations/{invitation.id}"
    return response


@bp.get("/customers/<customer_id>/invitations")
def list_invitations(customer_id: str) -> ResponseReturnValue:
    customer = _visible_customer(customer_id)
    found = invitations.for_customer(db.session(), customer, _partner().id)
    return jsonify(_collection([invitation_json(i) for i in found]))


@bp.get("/customers/<customer_id>/invitations/<invitation_id>")
def get_invitation(customer_id: str, invitation_id: str) -> ResponseReturnValue:
    customer = _visible_customer(customer_id)
    return jsonify(
        invitation_json(invitations.get(db.session(), customer, invitation_id, _partner().id))
    )


@bp.post("/customers/<customer_id>/invitations/<invitation_id>/resend")
def resend_invitation(customer_id: str, invitation_id: str) -> ResponseReturnValue:
    customer = _visible_customer(customer_id)
    invitation = invitations.get(db.session(), customer, invitation_id, _partner().id)
    invitations.resend(
        db.session(), invitation, current_app.config["BASE_URL"], actor=f"partner:{_partner().id}"
    )
    db.session().commit()
    db.session().refresh(invitation)
    response = jsonify(invitation_json(invitation))
    response.status_code = 202
    return response


@bp.delete("/customers/<customer_id>/invitations/<invitation_id>")
def revoke_invitation(customer_id: str, invitation_id: str) -> ResponseReturnValue:
    customer = _visible_customer(customer_id)
    invitation = invitations.get(db.session(), customer, invitation_id, _partner().id)
    invitations.revoke(db.session(), invitation, actor=f"partner:{_partner().id}")
    db.session().commit()
    db.session().refresh(invitation)
    return jsonify(invitation_json(invitation))


# --- personal relationship requests -----------------------------------------------------------


def personal_request_json(found: PersonalRequest, bodies: bool = False) -> dict[str, Any]:
    """A personal request as the API shows it; ``bodies``: with its email (while open)."""
    state = relationship_requests.state(found)
    is_open = state not in relationship_requests.CLOSED
    body: dict[str, Any] = {
        "id": found.id,
        "partnerId": found.partner_id,
        "domain": found.domain,
        "to": found.recipient,
        "language": found.language.replace("_", "-"),
        "url": relationship_requests.personal_url(_links(), found) if is_open else None,
        "status": state.value,
        "createdAt": iso(found.created_at),
        "expiresAt": iso(found.expires_at),
        "openedAt": iso(found.opened_at),
        "answeredAt": iso(found.answered_at),
        "withdrawnAt": iso(found.withdrawn_at),
        "customerId": found.customer_id if found.answer == "accepted" else None,
        "messages": [message_json(m) for m in found.messages],
        "attributes": {"objectType": "PersonalRelationshipRequest"},
    }
    if bodies and is_open:
        body.update(subject=found.subject, textBody=found.text_body, htmlBody=found.html_body)
    return body


@bp.post("/relationshiprequests")
def create_personal_request() -> ResponseReturnValue:
    """A reseller relationship request addressed to one company and person, as an email in
    their language: sent with ``"send": true``, else copy it from the answer."""
    fields = Fields(_json_body())
    domain = fields.string("domain")
    to = fields.string("email")
    language = fields.string("language", required=False) or None
    send = fields.boolean("send", False)
    reseller_id = fields.string("indirectResellerId", required=False) or None
    fields.check()
    requester = relationship_requests.requester(db.session(), _partner(), reseller_id)
    found = relationship_requests.create_personal(
        db.session(),
        requester,
        domain=domain,
        recipient=to,
        language=language,
        links=_links(),
        locales=languages.available_locales(),
        created_by=f"partner:{_partner().id}",
    )
    if send:
        relationship_requests.send_personal(db.session(), found, current_app.config["BASE_URL"])
    db.session().commit()
    response = jsonify(personal_request_json(found, bodies=True))
    response.status_code = 201
    response.headers["Location"] = f"/v1/relationshiprequests/{found.id}"
    return response


@bp.get("/relationshiprequests")
def list_personal_requests() -> ResponseReturnValue:
    found = relationship_requests.personal_requests(db.session(), _partner().id)
    return jsonify(_collection([personal_request_json(r) for r in found]))


@bp.get("/relationshiprequests/<request_id>")
def get_personal_request(request_id: str) -> ResponseReturnValue:
    found = relationship_requests.personal_request(db.session(), _partner().id, request_id)
    return jsonify(personal_request_json(found, bodies=True))


@bp.post("/relationshiprequests/<request_id>/resend")
def resend_personal_request(request_id: str) -> ResponseReturnValue:
    found = relationship_requests.personal_request(db.session(), _partner().id, request_id)
    # Optional: {"textBody": "..."}, the partner's edit of the email (it must keep the link).
    fields = Fields(_json_body(optional=True))
    text = fields.string("textBody", required=False) or None
    fields.check()
    relationship_requests.send_personal(
        db.session(), found, current_app.config["BASE_URL"], text_body=text
    )
    db.session().commit()
    db.session().refresh(found)
    response = jsonify(personal_request_json(found, bodies=True))
    response.status_code = 202
    return response


@bp.delete("/relationshiprequests/<request_id>")
def withdraw_personal_request(request_id: str) -> ResponseReturnValue:
    found = relationship_requests.personal_request(db.session(), _partner().id, request_id)
    relationship_requests.withdraw_personal(db.session(), found)
    db.session().commit()
    db.session().refresh(found)
    return jsonify(personal_request_json(found))


# --- webhooks -----------------------------------------------------------------------------------


def webhook_json(endpoint: WebhookEndpoint, secret: str | None = None) -> dict[str, Any]:
    result: dict[str, Any] = {
        "id": endpoint.id,
        "url": endpoint.url,
        "events": endpoint.events,
        "createdAt": iso(endpoint.created_at),
    }
    if secret is not None:
        result["secret"] = secret
    result["attributes"] = {"objectType": "Webhook"}
    return result


def delivery_json(delivery: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "eventId": delivery.event_id,
        "eventType": delivery.event_type,
        "status": delivery.status.value,
        "attempts": delivery.attempts,
        "lastStatus": delivery.last_status,
        "lastError": delivery.last_error or None,
        "createdAt": iso(delivery.created_at),
        "nextAttemptAt": iso(delivery.next_attempt_at)
        if delivery.status == WebhookStatus.QUEUED
        else None,
        "deliveredAt": iso(delivery.delivered_at),
        "payload": json.loads(delivery.payload),
        "attributes": {"objectType": "WebhookDelivery"},
    }


@bp.post("/webhooks")
def create_webhook() -> ResponseReturnValue:
    """A receiver for this partner's events; the answer carries its signing secret, once."""
    fields = Fields(_json_body())
    url = fields.string("url")
    events = fields.strings("events")
    fields.check()
    endpoint, secret = webhooks.register(
        db.session(),
        _partner(),
        url,
        events,
        webhooks.sealer_for(current_app.config),
        allow_private=bool(current_app.config["WEBHOOK_ALLOW_PRIVATE"]),
    )
    db.session().commit()
    response = jsonify(webhook_json(endpoint, secret))
    response.status_code = 201
    response.headers["Location"] = f"/v1/webhooks/{endpoint.id}"
    return response


@bp.get("/webhooks")
def list_webhooks() -> ResponseReturnValue:
    found = webhooks.endpoints(db.session(), _partner().id)
    return jsonify(_collection([webhook_json(endpoint) for endpoint in found]))


@bp.get("/webhooks/<webhook_id>")
def get_webhook(webhook_id: str) -> ResponseReturnValue:
    return jsonify(webhook_json(webhooks.endpoint(db.session(), _partner().id, webhook_id)))


@bp.delete("/webhooks/<webhook_id>")
def delete_webhook(webhook_id: str) -> ResponseReturnValue:
    endpoint = webhooks.endpoint(db.session(), _partner().id, webhook_id)
    webhooks.remove(db.session(), endpoint)
    db.session().commit()
    return Response(status=204)


@bp.get("/webhooks/<webhook_id>/deliveries")
def list_webhook_deliveries(webhook_id: str) -> ResponseReturnValue:
    endpoint = webhooks.endpoint(db.session(), _partner().id, webhook_id)
    found = webhooks.deliveries(db.session(), endpoint)
    return jsonify(_collection([delivery_json(delivery) for delivery in found]))


@bp.post("/webhooks/<webhook_id>/deliveries/<delivery_id>/resend")
def resend_webhook_delivery(webhook_id: str, delivery_id: str) -> ResponseReturnValue:
    endpoint = webhooks.endpoint(db.session(), _partner().id, webhook_id)
    delivery = webhooks.resend(db.session(), endpoint, delivery_id)
    db.session().commit()
    response = jsonify(delivery_json(delivery))
    response.status_code = 202
    return response


# --- the contract itself ----------------------------------------------------------------------


@functools.cache
def _openapi_document() -> bytes:
    return OPENAPI.read_bytes()


@bp.get("/openapi.json")
def openapi() -> Response:
    return Response(_openapi_document(), mimetype="application/json")
