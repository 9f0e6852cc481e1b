"""A small model of how Partner Center's clients read answers into their classes, to deserialise
the portal's answers as they do (``tests/data/clients/sdk_models.json`` has the facts and their
sources):

- the official .NET SDK and PartnerCenter.DotNet (under the PowerShell module) use Newtonsoft:
  names match exactly, else without regard to case; unknown members are ignored; an explicit
  ``null`` for a value type (bool, int, DateTime, a non-nullable enum) throws;
- the Java SDK uses Jackson: names match exactly (case-sensitive); a null int reads as 0;
- enums: the official SDK maps an unknown string to ``Unknown``, PartnerCenter.DotNet throws on
  it, Java accepts only its exact values;
- a link's ``uri`` is a ``System.Uri`` in .NET and a ``java.net.URI`` in Java (which refuses
  unescaped spaces, quotes, braces and the like).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any


class ParseError(Exception):
    """What the client's deserialiser would throw."""


@dataclass(frozen=True)
class Client:
    name: str
    case_insensitive: bool
    #: The relationshipToPartner values it reads without throwing (None: any string).
    relationships: frozenset[str] | None
    null_int_is_zero: bool


OFFICIAL = Client("dotnet_sdk", True, None, False)
# Enum.Parse after upper-casing the first letter and each letter after "_".
POWERSHELL = Client(
    "powershell",
    True,
    frozenset(
        {"unknown", "reseller", "advisor", "syndication", "microsoftSupport", "microsoft_support"}
        | {"none", "Unknown", "Reseller", "Advisor", "Syndication", "MicrosoftSupport", "None"}
    ),
    False,
)
JAVA = Client(
    "java_sdk",
    False,
    frozenset({"unknown", "none", "reseller", "advisor", "syndication", "microsoftSupport"}),
    True,
)
CLIENTS = {client.name: client for client in (OFFICIAL, POWERSHELL, JAVA)}

STRING, BOOL, NULLABLE_BOOL, INT, DATETIME, URI, RELATIONSHIP = (
    "string",
    "bool",
    "bool?",
    "int",
    "datetime",
    "uri",
    "relationship",
)


@dataclass(frozen=True)
class Obj:
    model: str


@dataclass(frozen=True)
class Arr:
    of: Any


ATTRIBUTES = Obj("ResourceAttributes")
MODELS: dict[str, dict[str, Any]] = {
    "ResourceAttributes": {"etag": STRING, "objectType": STRING},
    "Link": {"uri": URI, "method": STRING, "headers": Arr(Obj("KeyValuePair"))},
    "KeyValuePair": {"key": STRING, "value": STRING},
    "Links": {"self": Obj("Link"), "next": Obj("Link"), "previous": Obj("Link")},
    "Address": {
        "country": STRING,
        "region": STRING,
        "city": STRING,
        "state": STRING,
        "addressLine1": STRING,
        "addressLine2": STRING,
        "postalCode": STRING,
        "firstName": STRING,
        "middleName": STRING,
        "lastName": STRING,
        "phoneNumber": STRING,
    },
    "CustomerCompanyProfile": {
        "tenantId": STRING,
        "domain": STRING,
        "companyName": STRING,
        "address": Obj("Address"),
        "email": STRING,
        "links": Obj("Links"),
        "attributes": ATTRIBUTES,
    },
    "CustomerBillingProfile": {
        "id": STRING,
        "firstName": STRING,
        "lastName": STRING,
        "email": STRING,
        "culture": STRING,
        "language": STRING,
        "companyName": STRING,
        "defaultAddress": Obj("Address"),
        "links": Obj("Links"),
        "attributes": ATTRIBUTES,
    },
    "UserCredentials": {"userName": STRING, "password": STRING},
    "Customer": {
        "id": STRING,
        "commerceId": STRING,
        "companyProfile": Obj("CustomerCompanyProfile"),
        "billingProfile": Obj("CustomerBillingProfile"),
        "relationshipToPartner": RELATIONSHIP,
        "allowDelegatedAccess": NULLABLE_BOOL,
        "userCredentials": Obj("UserCredentials"),
        "customDomains": Arr(STRING),
        "associatedPartnerId": STRING,
        "links": Obj("Links"),
        "attributes": ATTRIBUTES,
    },
    "Contact": {"firstName": STRING, "lastName": STRING, "email": STRING, "phoneNumber": STRING},
    "Agreement": {
        "userId": STRING,
        "primaryContact": Obj("Contact"),
        "templateId": STRING,
        "dateAgreed": DATETIME,
        "type": STRING,
        "agreementLink": URI,
    },
    "AgreementMetaData": {
        "templateId": STRING,
        "agreementType": STRING,
        "agreementLink": URI,
        "versionRank": INT,
    },
    "AgreementDocument": {
        "displayUri": STRING,
        "downloadUri": STRING,
        "language": STRING,
        "country": STRING,
    },
    "DirectSignedCustomerAgreementStatus": {"isSigned": BOOL},
}


def _collection(item: str, seek: bool) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "totalCount": INT,
        "items": Arr(Obj(item)),
        "links": Obj("Links"),
        "attributes": ATTRIBUTES,
    }
    if seek:
        fields["continuationToken"] = STRING
    return fields


for _item in ("Customer", "AgreementMetaData", "Agreement"):
    MODELS[f"ResourceCollection<{_item}>"] = _collection(_item, seek=False)
    MODELS[f"SeekBasedResourceCollection<{_item}>"] = _collection(_item, seek=True)

#: What java.net.URI refuses unescaped, and a % not followed by two hex digits.
_NOT_IN_JAVA_URI = re.compile(r'[\s"<>\\^`{|}]|%(?![0-9A-Fa-f]{2})')


def read(client: Client, kind: Any, value: Any, where: str = "$") -> Any:
    """``value`` read as ``kind`` the way ``client`` does; ParseError where it would throw."""
    if isinstance(kind, Obj):
        if value is None:
            return None
        if not isinstance(value, dict):
            raise ParseError(f"{where}: {kind.model} must be an object, not {value!r}")
        return _read_object(client, kind.model, value, where)
    if isinstance(kind, Arr):
        if value is None:
            return None
        if not isinstance(value, list):
            raise ParseError(f"{where}: must be an array, not {value!r}")
        return [read(client, kind.of, item, f"{where}[{n}]") for n, item in enumerate(value)]
    return _read_scalar(client, kind, value, where)


def _read_object(client: Client, model: str, value: dict[str, Any], where: str) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, kind in MODELS[model].items():
        if name in value:
            present, found = True, value[name]
        elif client.case_insensitive:
            spellings = [v for k, v in value.items() if k.lower() == name.lower()]
            present, found = bool(spellings), spellings[-1] if spellings else None
        else:
            present, found = False, None
        if present:
            result[name] = read(client, kind, found, f"{where}.{name}")
        else:
            result[name] = None  # left out: the class's default
    return result


def _read_scalar(client: Client, kind: str, value: Any, where: str) -> Any:
    if isinstance(value, dict | list):
        raise ParseError(f"{where}: {kind} cannot be read from {value!r}")
    if kind == STRING:
        return None if value is None else str(value)
    if kind in (BOOL, NULLABLE_BOOL):
        if value is None:
            if kind == BOOL and client.case_insensitive:
                raise ParseError(f"{where}: null for a bool")
            return None
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if isinstance(value, bool):
            return value
        raise ParseError(f"{where}: {value!r} is not a bool")
    if kind == INT:
        if value is None:
            if client.null_int_is_zero:
                return 0
            raise ParseError(f"{where}: null for an int")
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ParseError(f"{where}: {value!r} is not an int")
        try:
            return int(value)
        except ValueError as exc:
            raise ParseError(f"{where}: {value!r} is not an int") from exc
    if kind == DATETIME:
        if value is None:
            if client.case_insensitive:
                raise ParseError(f"{where}: null for a DateTime")
            return None
        try:
            return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError as exc:
            raise ParseError(f"{where}: {value!r} is not a date") from exc
    if kind == URI:
        if value is None:
            return None
        if not client.case_insensitive and _NOT_IN_JAVA_URI.search(str(value)):
            raise ParseError(f"{where}: java.net.URI refuses {value!r}")
        if client.case_insensitive and not str(value).strip():
            raise ParseError(f"{where}: an empty Uri")
        return str(value)
    if kind == RELATIONSHIP:
        if value is None and client.case_insensitive:
            raise ParseError(f"{where}: null for a non-nullable enum")
        if client.relationships is not None and value not in client.relationships:
            raise ParseError(f"{where}: {value!r} is not a CustomerPartnerRelationship")
        return value
    raise AssertionError(f"unknown kind {kind}")
