"""The agreement catalog file: shipped content and checks that stop a broken one."""

from __future__ import annotations

from pathlib import Path

import pytest

from portal.core import catalog

#: A copy of the reference table the shipped catalog was built from.
REFERENCE = Path(__file__).parent / "data" / "agreement-document-languages.tsv"
GOOD_AGREEMENT = (
    "agreement\tMicrosoftCustomerAgreement\t117a77b0-9360-443b-8795-c6dedc750cf9\t0\t"
    "https://aka.ms/customeragreement\tMicrosoft Customer Agreement\t"
    "https://docs.example.test/{country}/{language}\thttps://docs.example.test/{country}/{language}.pdf"
)


def test_shipped_catalog_has_the_three_agreements_and_245_countries():
    shipped = catalog.load()
    assert shipped.types == [
        "MicrosoftCustomerAgreement",
        "MicrosoftCloudAgreement",
        "ProfessionalSecrecyAmendment",
    ]
    mca = shipped.by_type("MicrosoftCustomerAgreement")
    assert mca.template_id == "117a77b0-9360-443b-8795-c6dedc750cf9"
    assert len(mca.documents) == 245
    assert mca.documents["AT"] == ("en-US", "de-DE")
    assert mca.documents["JP"] == ("en-US", "ja-JP")
    assert shipped.by_type("MicrosoftCloudAgreement").template_id == (
        "998b88de-aa99-4388-a42c-1b3517d49490"
    )
    secrecy = shipped.by_type("ProfessionalSecrecyAmendment")
    assert set(secrecy.documents) == {"DE"}
    assert set(secrecy.documents["DE"]) == {"de-DE", "en-US"}


def test_shipped_documents_match_the_reference_table():
    rows = {}
    for line in REFERENCE.read_text().splitlines():
        if line.startswith("#") or line.startswith("country\t") or not line.strip():
            continue
        code, _name, languages = line.split("\t")
        rows[code] = tuple(languages.split())
    assert catalog.load().by_type("MicrosoftCustomerAgreement").documents == rows


def test_secrecy_amendment_falls_back_to_its_own_country():
    document = catalog.load().by_type("ProfessionalSecrecyAmendment").document("FR", "fr-FR")
    assert (document.country, document.language) == ("DE", "en-US")
    assert document.country_fallback
    assert document.language_fallback


def test_operator_catalog_is_used(tmp_path, monkeypatch):
    from portal import create_app

    own = tmp_path / "own.tsv"
    own.write_text(
        GOOD_AGREEMENT + "\ndocument\tMicrosoftCustomerAgreement\tUS\tUnited States\ten-US\n"
    )
    monkeypatch.setenv("PORTAL_AGREEMENT_CATALOG", str(own))
    loaded = create_app().extensions["portal.catalog"]
    assert loaded.types == ["MicrosoftCustomerAgreement"]
    assert loaded.by_type("MicrosoftCustomerAgreement").document().display_uri == (
        "https://docs.example.test/US/en-US"
    )


@pytest.mark.parametrize(
    ("lines", "line", "message"),
    [
        (["agreement\tX"], 2, "8 tab-separated fields"),
        ([GOOD_AGREEMENT, GOOD_AGREEMENT], 3, "appears twice"),
        ([GOOD_AGREEMENT.replace("117a77b0", "117A77B0")], 2, "not a lower-case GUID"),
        ([GOOD_AGREEMENT.replace("\t0\t", "\tfirst\t")], 2, "versionRank"),
        ([GOOD_AGREEMENT.replace("https://aka.ms", "http://aka.ms")], 2, "https://"),
        ([GOOD_AGREEMENT.replace("{language}.pdf", "{lang}.pdf")], 2, "unknown placeholders"),
        ([GOOD_AGREEMENT, "document\tOther\tUS\tUnited States\ten-US"], 3, "no agreement row"),
        ([GOOD_AGREEMENT, "document\tMicrosoftCustomerAgreement\tus\tUS\ten-US"], 3, "two-letter"),
        ([GOOD_AGREEMENT, "document\tMicrosoftCustomerAgreement\tUS\tUS\ten_us"], 3, "not a tag"),
        ([GOOD_AGREEMENT, "document\tMicrosoftCustomerAgreement\tUS\tUS\t"], 3, "no languages"),
        (
            [
                GOOD_AGREEMENT,
                "document\tMicrosoftCustomerAgreement\tUS\tUS\ten-US",
                "document\tMicrosoftCustomerAgreement\tUS\tUS\ten-US",
            ],
            4,
            "appears twice",
        ),
        (
            [GOOD_AGREEMENT, "documents\tMicrosoftCustomerAgreement\tUS\tUS\ten-US"],
            3,
            "unknown row kind",
        ),
    ],
)
def test_broken_catalog_names_the_line(tmp_path, lines, line, message):
    path = tmp_path / "broken.tsv"
    path.write_text("# header\n" + "\n".join(lines) + "\n")
    with pytest.raises(catalog.CatalogError, match=message) as caught:
        catalog.load(path)
    assert f"line {line}:" in str(caught.value)
    assert str(path) in str(caught.value)


def test_empty_or_unreadable_catalog(tmp_path):
    empty = tmp_path / "empty.tsv"
    empty.write_text("# nothing\n")
    with pytest.raises(catalog.CatalogError, match="declares no agreements"):
        catalog.load(empty)
    with pytest.raises(catalog.CatalogError, match="cannot be read"):
        catalog.load(tmp_path / "missing.tsv")
