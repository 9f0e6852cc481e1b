"""The region rule for relationships is data (``portal/core/regions.tsv``): its reader and the
shipped file."""

from __future__ import annotations

import pytest

from portal.core import regions
from portal.core.regions import RegionsError, parse


def test_the_shipped_rule_keeps_partners_in_their_country_or_region():
    rule = regions.load()
    assert rule.may_serve("DE", "FR")  # Europe
    assert rule.may_serve("GB", "NO")
    assert rule.may_serve("US", "PR")  # the United States and its territories
    assert rule.may_serve("JP", "JP")  # a country in no region is its own
    assert not rule.may_serve("US", "DE")
    assert not rule.may_serve("JP", "KR")
    assert not rule.may_serve("", "US")  # a partner without a country serves nobody new


def test_exceptions_are_rows_too():
    rule = parse("region\tNordics\tSE NO\nallow\tSE\tFI IS\n")
    assert rule.may_serve("SE", "NO")
    assert rule.may_serve("SE", "FI")
    assert not rule.may_serve("FI", "SE")  # an exception goes one way
    assert not rule.may_serve("NO", "FI")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("region\tEurope\tDE fr\n", "line 1: 'fr' is not an ISO 3166 country code"),
        ("region\tEurope\tDE\nregion\tOther\tDE\n", "line 2: DE is already in Europe"),
        ("# a comment\nregion\tEurope\n", "line 2: expected"),
        ("allow\tSE\t\n", "line 1: no countries"),
        ("country\tDE\tEurope\n", "line 1: expected"),
    ],
)
def test_a_malformed_file_names_its_line(text, message):
    with pytest.raises(RegionsError, match=message):
        parse(text)
