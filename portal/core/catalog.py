"""The agreement catalog: agreement templates and their regional documents.

Loaded from a tab-separated data file (``catalog.tsv`` in the package, or the file named by
``PORTAL_AGREEMENT_CATALOG``) and checked line by line at start-up; the file's header explains it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from flask import Flask, current_app

from portal.core.models import is_id

SHIPPED = Path(__file__).parent / "catalog.tsv"

CUSTOMER_AGREEMENT = "MicrosoftCustomerAgreement"
CLOUD_AGREEMENT = "MicrosoftCloudAgreement"
SECRECY_AMENDMENT = "ProfessionalSecrecyAmendment"
#: What ``agreementType`` means when a Partner Center call leaves it out (backward compatibility).
DEFAULT_AGREEMENT_TYPE = CLOUD_AGREEMENT
FALLBACK_COUNTRY = "US"
FALLBACK_LANGUAGE = "en-US"

_TYPE = re.compile(r"^[A-Za-z][A-Za-z0-9]{2,63}$")
COUNTRY = re.compile(r"^[A-Z]{2}$")
#: Language tags as documents use them: ``de-DE``, ``sr-Latn-RS``.
LANGUAGE = re.compile(r"^[a-z]{2,3}(-[A-Z][a-z]{3})?-[A-Z]{2}$")
_PLACEHOLDER = re.compile(r"\{([^}]*)\}")


class CatalogError(Exception):
    """The catalog file cannot be used; the message names the file and line."""


class NoDocuments(LookupError):
    """The template exists but publishes no regional documents."""


@dataclass(frozen=True)
class Document:
    """The regional document of one template, after the fallbacks."""

    template_id: str
    country: str
    language: str
    display_uri: str
    download_uri: str
    #: True when the requested language is not published for the country.
    language_fallback: bool
    #: True when the requested country has no document of its own.
    country_fallback: bool


@dataclass
class Agreement:
    type: str
    template_id: str
    version_rank: int
    link: str
    name: str
    display_pattern: str
    download_pattern: str
    #: country code -> languages published there, in catalog order
    documents: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: Since when partners may no longer attest it (a ``retired`` row); None while they may.
    retired_since: date | None = None

    def document(self, country: str | None = None, language: str | None = None) -> Document:
        """The document for ``country`` and ``language``, falling back as Partner Center does.

        Country codes are case-sensitive, as in Partner Center. A language matches exactly (any
        case), else by its primary subtag (``de-AT`` reads ``de-DE``), else en-US.
        """
        if not self.documents:
            raise NoDocuments(self.template_id)
        wanted_country = country or FALLBACK_COUNTRY
        chosen_country = wanted_country
        if chosen_country not in self.documents:
            chosen_country = (
                FALLBACK_COUNTRY
                if FALLBACK_COUNTRY in self.documents
                else next(iter(self.documents))
            )
        published = self.documents[chosen_country]
        chosen_language = _match_language(language or FALLBACK_LANGUAGE, published)
        fallback = chosen_language is None
        if chosen_language is None:
            chosen_language = FALLBACK_LANGUAGE if FALLBACK_LANGUAGE in published else published[0]
        values = {"country": chosen_country, "language": chosen_language}
        return Document(
            template_id=self.template_id,
            country=chosen_country,
            language=chosen_language,
            display_uri=self.display_pattern.format(**values),
            download_uri=self.download_pattern.format(**values),
            language_fallback=fallback,
            country_fallback=chosen_country != wanted_country,
        )


def _match_language(wanted: str, published: tuple[str, ...]) -> str | None:
    lowered = wanted.replace("_", "-").lower()
    for language in published:
        if language.lower() == lowered:
            return language
    primary = lowered.split("-", 1)[0]
    for language in published:
        if language.lower().split("-", 1)[0] == primary:
            return language
    return None


class Catalog:
    def __init__(self, agreements: list[Agreement]) -> None:
        self.agreements = agreements
        self._by_template = {a.template_id: a for a in agreements}
        self._by_type = {a.type: a for a in agreements}
        #: Every country some document covers, with its English name.
        self.countries: dict[str, str] = {}

    def by_template(self, template_id: str) -> Agreement | None:
        return self._by_template.get(template_id)

    def by_type(self, agreement_type: str) -> Agreement | None:
        return self._by_type.get(agreement_type)

    def of_type(self, agreement_type: str) -> list[Agreement]:
        """Agreements of one type, or all for ``*``."""
        if agreement_type == "*":
            return list(self.agreements)
        found = self._by_type.get(agreement_type)
        return [found] if found else []

    @property
    def types(self) -> list[str]:
        return [a.type for a in self.agreements]


def load(path: Path | str | None = None) -> Catalog:
    """Read and check a catalog file; raise CatalogError naming the first bad line."""
    path = Path(path) if path else SHIPPED
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogError(f"agreement catalog {path}: cannot be read ({exc})") from exc
    return parse(text, str(path))


def parse(text: str, name: str = "catalog") -> Catalog:
    agreements: dict[str, Agreement] = {}
    template_ids: set[str] = set()
    countries: dict[str, str] = {}

    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip("\r")
        if not line.strip() or line.startswith("#"):
            continue

        def fail(message: str, line_number: int = number) -> CatalogError:
            return CatalogError(f"agreement catalog {name}, line {line_number}: {message}")

        cells = line.split("\t")
        kind = cells[0]
        if kind == "agreement":
            if len(cells) != 8:
                raise fail(
                    f"an agreement row has 8 tab-separated fields, this one has {len(cells)}"
                )
            _, type_, template_id, rank, link, title, display, download = cells
            if not _TYPE.match(type_):
                raise fail(
                    f"agreement type {type_!r} is not a plain name such as {CUSTOMER_AGREEMENT}"
                )
            if type_ in agreements:
                raise fail(f"agreement type {type_} appears twice")
            if not is_id(template_id):
                raise fail(f"templateId {template_id!r} is not a lower-case GUID")
            if template_id in template_ids:
                raise fail(f"templateId {template_id} appears twice")
            if not rank.isdigit():
                raise fail(f"versionRank {rank!r} is not a whole number")
            for label, url in (
                ("agreementLink", link),
                ("display URI", display),
                ("download URI", download),
            ):
                if not url.startswith("https://"):
                    raise fail(f"{label} {url!r} must start with https://")
            for label, pattern in (("display URI", display), ("download URI", download)):
                unknown = set(_PLACEHOLDER.findall(pattern)) - {"country", "language"}
                if unknown:
                    raise fail(
                        f"{label} uses unknown placeholders {sorted(unknown)}; "
                        "only {country} and {language} are replaced"
                    )
            if not title.strip():
                raise fail("the agreement's name is empty")
            agreements[type_] = Agreement(
                type_, template_id, int(rank), link, title.strip(), display, download
            )
            template_ids.add(template_id)
        elif kind == "retired":
            if len(cells) != 3:
                raise fail(f"a retired row has 3 tab-separated fields, this one has {len(cells)}")
            _, type_, since = cells
            agreement = agreements.get(type_)
            if agreement is None:
                raise fail(f"retired {type_!r}, which no agreement row above declares")
            try:
                agreement.retired_since = date.fromisoformat(since)
            except ValueError as exc:
                raise fail(f"retired since {since!r} is not a date such as 2020-02-01") from exc
        elif kind == "document":
            if len(cells) != 5:
                raise fail(f"a document row has 5 tab-separated fields, this one has {len(cells)}")
            _, type_, country, country_name, languages = cells
            agreement = agreements.get(type_)
            if agreement is None:
                raise fail(f"document for {type_!r}, which no agreement row above declares")
            if not COUNTRY.match(country):
                raise fail(f"country {country!r} is not a two-letter upper-case ISO 3166 code")
            if country in agreement.documents:
                raise fail(f"country {country} appears twice for {type_}")
            published = tuple(languages.split())
            if not published:
                raise fail(f"country {country} lists no languages")
            for language in published:
                if not LANGUAGE.match(language):
                    raise fail(f"language {language!r} is not a tag such as de-DE")
            if len(set(published)) != len(published):
                raise fail(f"country {country} lists a language twice")
            agreement.documents[country] = published
            countries.setdefault(country, country_name.strip() or country)
        else:
            raise CatalogError(
                f"agreement catalog {name}, line {number}: unknown row kind {kind!r}; "
                "rows start with 'agreement', 'document' or 'retired'"
            )

    if not agreements:
        raise CatalogError(f"agreement catalog {name}: declares no agreements")
    catalog = Catalog(list(agreements.values()))
    catalog.countries = countries
    return catalog


def of(app: Flask) -> Catalog:
    """The catalog ``app`` loaded at start (``create_app``)."""
    found: Catalog = app.extensions["portal.catalog"]
    return found


def current() -> Catalog:
    """The catalog of the app handling this request."""
    return of(current_app)
