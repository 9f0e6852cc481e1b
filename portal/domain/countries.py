"""What Partner Center's clients ask about a country and an address before they create a
customer: ``GET /v1/countryvalidationrules/{country}`` and ``POST /v1/validations/address``
(the PowerShell module's New-PartnerCustomer asks both unless told ``-DisableValidation``).

The rules say what the portal itself checks: no address field is required beyond the country
and the person's name; the cultures are those the agreement is published in for the country.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from portal.core.catalog import CUSTOMER_AGREEMENT, Catalog

STATES = Path(__file__).parent.parent / "core" / "states.tsv"


@functools.cache
def states() -> dict[str, tuple[str, ...]]:
    """Country code -> its states, as ``states.tsv`` lists them."""
    found: dict[str, list[str]] = {}
    for line in STATES.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            country, _, state = line.partition("\t")
            found.setdefault(country.strip(), []).append(state.strip())
    return {country: tuple(names) for country, names in found.items()}


def cultures(country: str, catalog: Catalog) -> list[str]:
    """The cultures the customer agreement is published in for ``country`` (the country's own
    first: de-DE before en-US in Germany), en-US if none."""
    agreement = catalog.by_type(CUSTOMER_AGREEMENT)
    published = list(agreement.documents.get(country, ())) if agreement else []
    published.sort(key=lambda culture: not culture.endswith(f"-{country}"))
    return published or ["en-US"]


def rules(country: str, catalog: Catalog) -> dict[str, Any] | None:
    """Partner Center's ``CountryValidationRules`` for ``country``; None for an unknown one."""
    if country not in catalog.countries:
        return None
    supported = cultures(country, catalog)
    languages = list(dict.fromkeys(culture.split("-")[0] for culture in supported))
    return {
        "iso2Code": country,
        "defaultCulture": supported[0],
        "isCityRequired": False,
        "isPostalCodeRequired": False,
        "isStateRequired": False,
        "isVatIdSupported": False,
        "isTaxIdSupported": False,
        "isTaxIdOptional": True,
        "supportedCulturesList": supported,
        "supportedLanguagesList": languages,
        "supportedStatesList": list(states().get(country, ())),
        "countryCallingCodesList": [],
        "attributes": {"objectType": "CountryValidationRules"},
    }
