"""Which partners may serve which customers, by country: the data in ``regions.tsv``.

A partner may form a relationship with a customer in its own country or region, or in a country an
``allow`` row names for the partner's country. The rule and its exceptions are data, read once.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_PATH = Path(__file__).with_name("regions.tsv")


class RegionsError(Exception):
    """The regions file is malformed (names the line)."""


@dataclass(frozen=True)
class Regions:
    #: A country's region; countries in no region are not here.
    region_of: dict[str, str] = field(default_factory=dict)
    #: Exceptions: the countries partners in a country may also serve.
    also: dict[str, frozenset[str]] = field(default_factory=dict)

    def region(self, country: str) -> str:
        """The country's region, or the country itself when it is in none."""
        return self.region_of.get(country, country)

    def may_serve(self, partner_country: str, customer_country: str) -> bool:
        if not partner_country or not customer_country:
            return False
        return self.region(partner_country) == self.region(
            customer_country
        ) or customer_country in self.also.get(partner_country, frozenset())


def _countries(text: str, line: int) -> list[str]:
    found = text.split()
    for code in found:
        if len(code) != 2 or not code.isascii() or not code.isupper():
            raise RegionsError(f"line {line}: {code!r} is not an ISO 3166 country code")
    if not found:
        raise RegionsError(f"line {line}: no countries")
    return found


def parse(text: str) -> Regions:
    region_of: dict[str, str] = {}
    also: dict[str, set[str]] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip("\n")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cells = line.split("\t")
        if cells[0] == "region" and len(cells) == 3 and cells[1].strip():
            for country in _countries(cells[2], number):
                if country in region_of:
                    raise RegionsError(
                        f"line {number}: {country} is already in {region_of[country]}"
                    )
                region_of[country] = cells[1].strip()
        elif cells[0] == "allow" and len(cells) == 3:
            (partner_country,) = _countries(cells[1], number)[:1]
            also.setdefault(partner_country, set()).update(_countries(cells[2], number))
        else:
            raise RegionsError(
                f"line {number}: expected 'region<TAB>NAME<TAB>COUNTRIES' or "
                "'allow<TAB>COUNTRY<TAB>COUNTRIES'"
            )
    return Regions(region_of, {k: frozenset(v) for k, v in also.items()})


@functools.cache
def load(path: Path = DEFAULT_PATH) -> Regions:
    return parse(path.read_text(encoding="utf-8"))
