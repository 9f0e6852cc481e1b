"""Bulk creation of customers with their invitations from CSV: bad rows are reported by line,
good rows are kept (each row is its own transaction)."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask

from portal.core import db
from portal.core.errors import PortalError
from portal.core.models import Partner
from portal.domain import customers, invitations
from portal.i18n import languages

#: CSV columns, as the API names them; each maps to a NewCustomer attribute.
COLUMNS = {
    "domain": "domain",
    "companyname": "company_name",
    "email": "email",
    "culture": "culture",
    "language": "language",
    "country": "country",
    "firstname": "first_name",
    "lastname": "last_name",
    "addressline1": "address_line1",
    "addressline2": "address_line2",
    "city": "city",
    "state": "state",
    "postalcode": "postal_code",
    "phonenumber": "phone",
    "contactfirstname": "contact_first_name",
    "contactlastname": "contact_last_name",
    "contactemail": "contact_email",
    "contactphonenumber": "contact_phone",
}
REQUIRED = [
    "domain",
    "companyName",
    "email",
    "culture",
    "language",
    "country",
    "firstName",
    "lastName",
]
RESULT_COLUMNS = [
    "line",
    "result",
    "customerId",
    "domain",
    "invitationId",
    "userName",
    "password",
    "url",
    "error",
]


class BadFile(Exception):
    """The file as a whole cannot be read (not rows: those are reported one by one)."""


def _key(header: str) -> str:
    return re.sub(r"[^a-z0-9]", "", header.lower())


@dataclass(frozen=True)
class Row:
    line: int
    values: dict[str, str]


class TooManyRows(BadFile):
    """More rows than one import takes; found while reading, not after."""


def read(path: str | Path, max_rows: int | None = None) -> list[Row]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            return parse(handle, str(path), max_rows)
    except (OSError, UnicodeDecodeError) as exc:
        raise BadFile(f"{path}: cannot be read as UTF-8 CSV ({exc})") from exc


def parse(handle: Iterable[str], name: str = "the file", max_rows: int | None = None) -> list[Row]:
    """The rows of a CSV file whose header names the API's fields (any case, any spacing).

    With ``max_rows``, TooManyRows as soon as the file has more rows than that, or as many
    empty lines again: a file of nothing but line ends is refused after reading no further.
    """
    try:
        reader = csv.reader(handle)
        header = next(reader, None) or []
        headers = {_key(h): index for index, h in enumerate(header)}
        missing = [c for c in REQUIRED if _key(c) not in headers]
        if missing:
            raise BadFile(f"{name}: the header row lacks the columns {', '.join(missing)}")
        wanted = [(COLUMNS[key], index) for key, index in headers.items() if key in COLUMNS]
        rows: list[Row] = []
        records = 0
        for record in reader:
            records += 1
            if max_rows is not None and (len(rows) >= max_rows or records > 2 * max_rows):
                raise TooManyRows(f"{name}: more than {max_rows} rows; split it into smaller files")
            if not record:
                continue  # an empty line
            values = {
                attribute: record[index].strip() if index < len(record) else ""
                for attribute, index in wanted
            }
            rows.append(Row(reader.line_num, values))
        return rows
    except csv.Error as exc:
        raise BadFile(f"{name}: cannot be read as CSV ({exc})") from exc


@dataclass(frozen=True)
class Result:
    line: int
    ok: bool
    domain: str
    customer_id: str = ""
    invitation_id: str = ""
    user_name: str = ""
    password: str = ""
    url: str = ""
    error: str = ""

    def as_row(self) -> dict[str, str | int]:
        return {
            "line": self.line,
            "result": "created" if self.ok else "error",
            "customerId": self.customer_id,
            "domain": self.domain,
            "invitationId": self.invitation_id,
            "userName": self.user_name,
            "password": self.password,
            "url": self.url,
            "error": self.error,
        }


def import_rows(
    app: Flask,
    partner: Partner,
    rows: list[Row],
    options: invitations.Options,
    actor: str,
) -> Iterator[Result]:
    """Create each row's customer and invitation in a transaction of its own."""
    session = db.session()
    catalog = app.extensions["portal.catalog"]
    pepper = app.extensions["portal.peppers"][0]
    links = invitations.LinkSettings.from_config(app.config)
    locales = languages.available_locales()
    names = {attr: header for header, attr in COLUMNS.items()}
    for row in rows:
        domain = row.values.get("domain", "")
        try:
            given: dict[str, Any] = {attr: row.values.get(attr, "") for attr in COLUMNS.values()}
            data = customers.NewCustomer(**given, names=names)
            created = customers.create_customer(session, partner, data, catalog, pepper, actor)
            issued = invitations.create(
                session,
                created.customer,
                options,
                links=links,
                pepper=pepper,
                locales=locales,
                actor=actor,
                partner_id=partner.id,
            )
            session.commit()
        except PortalError as exc:
            session.rollback()
            yield Result(row.line, False, domain, error=exc.message)
            continue
        yield Result(
            row.line,
            True,
            domain,
            created.customer.id,
            issued.invitation.id,
            issued.user_name,
            issued.password,
            issued.url,
        )
