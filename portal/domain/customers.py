"""Customers: creation with first credentials, look-up and paging within what a partner sees."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, bindparam, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import InstrumentedAttribute, Session, joinedload

from portal.core import credentials, fastsql, validate
from portal.core.catalog import Catalog
from portal.core.errors import CustomerNotFound, DomainTaken, InvalidFields, Problem, ProblemCode
from portal.core.models import (
    Customer,
    CustomerCredential,
    CustomerRelationship,
    EventKind,
    Partner,
    RelationshipOrigin,
    is_id,
    new_id,
    utcnow,
)
from portal.domain import events, relationships
from portal.domain.relationships import visible_to

#: The user name is ``admin@<domain>`` and must fit 254 characters.
MAX_DOMAIN = 254 - len("admin@")


@dataclass(kw_only=True)
class Address:
    """A billing address as Partner Center sends it (``defaultAddress``)."""

    country: str
    first_name: str
    last_name: str
    address_line1: str = ""
    address_line2: str = ""
    city: str = ""
    state: str = ""
    postal_code: str = ""
    phone: str = ""


@dataclass(kw_only=True)
class NewCustomer(Address):
    """What a partner gives to create a customer (Partner Center's fields, flattened): the
    billing address and the rest."""

    domain: str
    company_name: str
    email: str
    culture: str
    language: str
    #: The primary contact; by default the billing address's person and the billing email.
    contact_first_name: str = ""
    contact_last_name: str = ""
    contact_email: str = ""
    contact_phone: str = ""
    #: German customers bound by professional secrecy also accept the secrecy amendment.
    requires_secrecy_amendment: bool = False
    #: Field name (as the API spells it) for each attribute, to name problems.
    names: dict[str, str] = field(default_factory=dict)


def check(data: NewCustomer, catalog: Catalog) -> dict[str, Problem]:
    """Problems with ``data``, keyed by field name; empty when it can be created."""
    checks = {
        "domain": validate.domain(data.domain),
        "company_name": validate.text(data.company_name, 200),
        "email": validate.email(data.email),
        "culture": validate.culture(data.culture),
        "language": validate.language(data.language),
        **address_checks(data),
        "contact_first_name": validate.text(data.contact_first_name, 100, required=False),
        "contact_last_name": validate.text(data.contact_last_name, 100, required=False),
        "contact_email": validate.email(data.contact_email) if data.contact_email else None,
        "contact_phone": validate.phone(data.contact_phone),
    }
    if not checks["domain"] and len(data.domain) > MAX_DOMAIN:
        checks["domain"] = validate.too_long(MAX_DOMAIN)
    if data.requires_secrecy_amendment and data.country != "DE":
        checks["requires_secrecy_amendment"] = Problem(
            ProblemCode.GERMANY_ONLY, "applies only to customers in Germany (DE)"
        )
    checks["country"] = country_check(data.country, catalog)
    return {data.names.get(k, k): v for k, v in checks.items() if v}


def address_checks(address: Address, names_required: bool = True) -> dict[str, Problem | None]:
    """Each address field's problem (None: fine), the country aside (``country_check``). A
    customer's billing address names a person; an address merely checked need not."""
    return {
        "first_name": validate.text(address.first_name, 100, required=names_required),
        "last_name": validate.text(address.last_name, 100, required=names_required),
        "address_line1": validate.text(address.address_line1, 200, required=False),
        "address_line2": validate.text(address.address_line2, 200, required=False),
        "city": validate.text(address.city, 100, required=False),
        "state": validate.text(address.state, 100, required=False),
        "postal_code": validate.text(address.postal_code, 20, required=False),
        "phone": validate.phone(address.phone),
    }


def domain_exists(session: Session, domain: str) -> bool:
    """Whether any customer has this domain (Partner Center's ``HEAD /v1/domains/{domain}``)."""
    found = session.scalar(select(Customer.id).where(Customer.domain == domain.strip().lower()))
    return found is not None


def country_check(country: str, catalog: Catalog) -> Problem | None:
    if country in catalog.countries:
        return None
    return Problem(
        ProblemCode.UNKNOWN_COUNTRY,
        f"is an unknown country {country!r} (ISO 3166 alpha-2, e.g. DE)",
    )


@dataclass(frozen=True)
class Created:
    customer: Customer
    user_name: str
    #: The temporary password, shown to the partner once.
    password: str


def create_customer(
    session: Session,
    partner: Partner,
    data: NewCustomer,
    catalog: Catalog,
    pepper: bytes,
    actor: str,
) -> Created:
    """Create a customer and its temporary credentials; raise InvalidFields or DomainTaken."""
    data.domain = data.domain.strip().lower()
    data.culture = validate.language_tag(data.culture)
    data.language = validate.language_tag(data.language)
    problems = check(data, catalog)
    if problems:
        raise InvalidFields(problems)
    customer = Customer(
        id=new_id(),  # known before the INSERT: the credentials and the event refer to it
        created_at=utcnow(),  # the relationship began then too
        creator=partner,
        company_name=data.company_name.strip(),
        domain=data.domain,
        email=data.email,
        culture=data.culture,
        language=data.language,
        country=data.country,
        address_first_name=data.first_name.strip(),
        address_last_name=data.last_name.strip(),
        address_line1=data.address_line1.strip(),
        address_line2=data.address_line2.strip(),
        city=data.city.strip(),
        state=data.state.strip(),
        postal_code=data.postal_code.strip(),
        phone=data.phone.strip(),
        contact_first_name=(data.contact_first_name or data.first_name).strip(),
        contact_last_name=(data.contact_last_name or data.last_name).strip(),
        contact_email=data.contact_email or data.email,
        contact_phone=(data.contact_phone or data.phone).strip(),
        requires_secrecy_amendment=data.requires_secrecy_amendment,
    )
    password = credentials.new_temporary_password()
    user_name = f"admin@{data.domain}"
    credential = CustomerCredential(
        customer=customer,
        user_name=user_name,
        password_hash=credentials.hash_temporary_password(password, pepper),
        temporary=True,
    )
    # A taken domain undoes the three rows and nothing else of the caller's: by a savepoint
    # when the caller's transaction has begun, else by rolling back the one they begin.
    nested = session.in_transaction()
    try:
        # Written at once (the write lock is held the shortest time).
        with session.begin_nested() if nested else nullcontext():
            began = relationships.new(
                customer, partner, RelationshipOrigin.CREATED, began_at=customer.created_at
            )
            fastsql.insert_now(session, customer, credential, began)
            events.record(
                session,
                EventKind.CUSTOMER_CREATED,
                actor=actor,
                partner_id=partner.id,
                customer_id=customer.id,
                data={"domain": customer.domain},
                write_now=True,
            )
    except IntegrityError as exc:
        if not nested:
            session.rollback()
        raise DomainTaken(
            f"A customer with the domain {data.domain} already exists.", domain=data.domain
        ) from exc
    return Created(customer, user_name, password)


def _visible_query() -> Select[Customer]:
    partner_id: Any = bindparam("partner_id")  # the same test as for a partner's id
    return select(Customer).where(Customer.id == bindparam("customer_id"), visible_to(partner_id))


#: Built once: most partner API requests run one of them (a built statement is reused far more
#: cheaply than a new one is made).
_VISIBLE = _visible_query()
#: With what a new invitation needs: the credentials, and the creator (its contact address).
_VISIBLE_WITH_CREDENTIAL = _VISIBLE.options(
    joinedload(Customer.credential), joinedload(Customer.creator)
)


def get_visible(
    session: Session, partner_id: str, customer_id: str, *, with_credential: bool = False
) -> Customer:
    """The customer if this partner may see it; else CustomerNotFound, unknown or not.

    ``with_credential`` loads its credentials in the same query, for a caller about to change them
    (a new invitation issues a new temporary password).
    """
    query = _VISIBLE_WITH_CREDENTIAL if with_credential else _VISIBLE
    customer = None
    if is_id(customer_id):
        customer = session.scalars(
            query, {"partner_id": partner_id, "customer_id": customer_id}
        ).first()
    if customer is None:
        raise CustomerNotFound(customerId=customer_id[:64])
    return customer


def seen_through(session: Session, partner_id: str, customer_id: str) -> str | None:
    """The reseller through whose relationship a provider sees the customer (Partner Center's
    ``associatedPartnerId``); None when the partner serves the customer itself."""
    found = relationships.seen(session, partner_id, customer_id)
    return None if found is None or found.partner_id == partner_id else found.partner_id


@dataclass(frozen=True)
class Page:
    #: Each customer, with the reseller a provider sees it through (None: the partner's own).
    items: list[tuple[Customer, str | None]]
    total: int
    #: (began_at, customer id) of the last item when more follow, else None.
    after: tuple[datetime, str] | None
    #: (began_at, customer id) of the first item when some come before it, else None.
    before: tuple[datetime, str] | None = None
    #: (began_at, customer id) of the first and the last item; None when the page is empty.
    first: tuple[datetime, str] | None = None
    last: tuple[datetime, str] | None = None


#: Partner Center's customer query fields, in every spelling its clients send (the .NET SDK's
#: names and those of clients generated from its swagger), lower-cased, and what each matches.
FILTER_FIELDS: dict[str, str] = {
    "companyname": "company",
    "displayname": "company",
    "domain": "domain",
    "defaultdomainname": "domain",
    "indirectreseller": "reseller",
    "indirectcloudsolutionprovider": "provider",
}


def starts_with(field: str, value: str) -> ColumnElement[bool]:
    """Partner Center's only filter: ``field`` (a ``FILTER_FIELDS`` value) starts with
    ``value``, whatever the case; a reseller or provider by its id."""
    pattern = value.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    columns: dict[str, ColumnElement[Any]] = {
        "company": func.lower(Customer.company_name),
        "domain": Customer.domain.expression,
        "reseller": CustomerRelationship.partner_id.expression,
        "provider": CustomerRelationship.provider_id.expression,
    }
    return columns[field].like(pattern, escape="\\")


def page(
    session: Session,
    partner_id: str,
    size: int,
    after: tuple[datetime, str] | None = None,
    where: ColumnElement[bool] | None = None,
    before: tuple[datetime, str] | None = None,
) -> Page:
    """One page of the customers a partner sees, in the order it began serving them, by keyset
    (stable under inserts): the first, the one ``after`` a key or the one ``before`` a key
    (Partner Center's ``seekOperation=Previous``); ``where``: a filter (``starts_with``)."""
    partner_ids = relationships.partner_ids(session, partner_id)
    shown = relationships.shown_to(partner_id, partner_ids)
    if where is not None:
        shown = and_(shown, where)
    began = CustomerRelationship.began_at
    query = select(Customer, CustomerRelationship).join(
        CustomerRelationship, CustomerRelationship.customer_id == Customer.id
    )
    if before is not None:
        began_at, customer_id = before
        query = query.where(
            shown,
            or_(
                began < began_at,
                and_(began == began_at, CustomerRelationship.customer_id < customer_id),
            ),
        ).order_by(began.desc(), CustomerRelationship.customer_id.desc())
        rows = list(session.execute(query.limit(size + 1)))
        earlier = len(rows) > size
        rows = rows[:size][::-1]
    else:
        query = query.where(shown).order_by(began, CustomerRelationship.customer_id)
        if after is not None:
            began_at, customer_id = after
            query = query.where(
                or_(
                    began > began_at,
                    and_(began == began_at, CustomerRelationship.customer_id > customer_id),
                )
            )
        rows = list(session.execute(query.limit(size + 1)))
        earlier = after is not None
    counted = select(func.count()).select_from(CustomerRelationship)
    if where is not None:
        counted = counted.join(Customer, Customer.id == CustomerRelationship.customer_id)
    total = session.scalar(counted.where(shown))
    # Going back, the items that follow are where the caller came from.
    more = before is not None or len(rows) > size
    rows = rows[:size]
    items = [(c, None if r.partner_id == partner_id else r.partner_id) for c, r in rows]
    first = (rows[0][1].began_at, rows[0][1].customer_id) if rows else None
    last = (rows[-1][1].began_at, rows[-1][1].customer_id) if rows else None
    return Page(
        items,
        total or 0,
        last if more else None,
        first if earlier else None,
        first,
        last,
    )


# --- a customer as the customer pages show it -------------------------------------------------


@dataclass(frozen=True)
class PageCustomer:
    """A customer as the customer pages show it, and pick its language and time zone by."""

    id: str
    partner_name: str
    company_name: str
    domain: str
    culture: str
    language: str
    country: str
    #: None while the customer has no credentials.
    user_name: str | None
    contact_first_name: str
    contact_last_name: str
    contact_email: str
    contact_phone: str
    requires_secrecy_amendment: bool


#: ``PageCustomer``'s fields and where they come from.
PAGE_CUSTOMER: dict[str, InstrumentedAttribute[Any]] = {
    "id": Customer.id,
    "partner_name": Partner.name,
    "company_name": Customer.company_name,
    "domain": Customer.domain,
    "culture": Customer.culture,
    "language": Customer.language,
    "country": Customer.country,
    "user_name": CustomerCredential.user_name,
    "contact_first_name": Customer.contact_first_name,
    "contact_last_name": Customer.contact_last_name,
    "contact_email": Customer.contact_email,
    "contact_phone": Customer.contact_phone,
    "requires_secrecy_amendment": Customer.requires_secrecy_amendment,
}


def with_partner_and_credential(query: Select[*tuple[Any, ...]]) -> Select[*tuple[Any, ...]]:
    return query.join(Partner, Partner.id == Customer.creator_id).outerjoin(
        CustomerCredential, CustomerCredential.customer_id == Customer.id
    )


def page_customer_columns() -> list[Any]:
    """``PAGE_CUSTOMER``'s columns, each labelled with its field's name (for a row to hold)."""
    return [column.label(name) for name, column in PAGE_CUSTOMER.items()]


def page_customer(row: Mapping[str, Any]) -> PageCustomer:
    """A ``PageCustomer`` from a row with ``page_customer_columns``."""
    return PageCustomer(**{name: row[name] for name in PAGE_CUSTOMER})
