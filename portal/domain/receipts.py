"""The acceptance receipt as a PDF: the evidence a partner keeps, printable and signed off by date.

The labels are in English, as the evidence JSON's keys are: a receipt is a record, not a page.
Values are drawn in a font that has their glyphs: Bitstream Vera (shipped with ReportLab) for
Latin scripts, and the PDF reader's own Japanese or Chinese fonts for CJK names.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import datetime
from functools import cache
from pathlib import Path
from xml.sax.saxutils import escape

import reportlab
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import Flowable, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from portal.core.catalog import Catalog
from portal.core.models import AgreementAcceptance, Customer, utcnow

LATIN = "Vera"
LATIN_BOLD = "Vera-Bold"
JAPANESE = "HeiseiKakuGo-W5"
CHINESE = "STSong-Light"


@cache
def _fonts() -> frozenset[int]:
    """Register the fonts once; the code points Vera can draw."""
    folder = Path(reportlab.__file__).parent / "fonts"
    latin = TTFont(LATIN, str(folder / "Vera.ttf"))
    pdfmetrics.registerFont(latin)
    pdfmetrics.registerFont(TTFont(LATIN_BOLD, str(folder / "VeraBd.ttf")))
    pdfmetrics.registerFont(UnicodeCIDFont(JAPANESE))
    pdfmetrics.registerFont(UnicodeCIDFont(CHINESE))
    return frozenset(latin.face.charToGlyph)


def font_for(text: str) -> str:
    """A font with glyphs for ``text``: Vera if it has them all, else a CJK font if the text is
    Japanese or Chinese; otherwise Vera (missing glyphs show as boxes)."""
    latin = _fonts()
    if all(ord(c) in latin or c.isspace() for c in text):
        return LATIN
    if any("\u3040" <= c <= "\u30ff" for c in text):  # hiragana, katakana
        return JAPANESE
    if any("\u4e00" <= c <= "\u9fff" or "\u3400" <= c <= "\u4dbf" for c in text):
        return CHINESE
    return LATIN


def _value(text: str) -> Paragraph:
    style = ParagraphStyle("value", fontName=font_for(text), fontSize=9.5, leading=12)
    return Paragraph(escape(text) or "-", style)


def _label(text: str) -> Paragraph:
    return Paragraph(escape(text), ParagraphStyle("label", fontName=LATIN_BOLD, fontSize=9.5))


def _iso(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z") if moment else ""


def receipt_pdf(
    customer: Customer,
    acceptances: Sequence[AgreementAcceptance],
    catalog: Catalog,
    partner_name: str,
) -> bytes:
    """The receipt for ``customer``'s recorded acceptances as ``partner_name`` sees them, as PDF
    bytes."""
    _fonts()
    buffer = io.BytesIO()
    document = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=18 * mm,
        rightMargin=18 * mm,
        topMargin=18 * mm,
        bottomMargin=18 * mm,
        title=f"Acceptance receipt: {customer.company_name}",
        author="portal",
    )
    title = ParagraphStyle("title", fontName=LATIN_BOLD, fontSize=16, leading=20)
    heading = ParagraphStyle("heading", fontName=LATIN_BOLD, fontSize=12, leading=16)
    note = ParagraphStyle("note", fontName=LATIN, fontSize=8.5, leading=11)
    story: list[Flowable] = [
        Paragraph("Acceptance receipt", title),
        Spacer(1, 4 * mm),
        _table(
            [
                ("Customer", customer.company_name),
                ("Domain", customer.domain),
                ("Tenant id", customer.id),
                ("Country", customer.country),
                ("Partner", partner_name),
            ]
        ),
    ]
    if not acceptances:
        story += [Spacer(1, 6 * mm), Paragraph("No acceptance is recorded.", note)]
    for acceptance in acceptances:
        agreement = catalog.by_template(acceptance.template_id)
        how = (
            "Accepted by the customer on the portal"
            if acceptance.method.value == "direct"
            else "Attested by the partner"
        )
        story += [
            Spacer(1, 6 * mm),
            Paragraph(escape(agreement.name if agreement else acceptance.agreement_type), heading),
            Spacer(1, 2 * mm),
            _table(
                [
                    ("How", how),
                    ("Template id", acceptance.template_id),
                    ("Version rank", str(acceptance.version_rank)),
                    ("First name", acceptance.first_name),
                    ("Last name", acceptance.last_name),
                    ("Email", acceptance.email),
                    ("Phone", acceptance.phone),
                    ("Date agreed (UTC)", _iso(acceptance.date_agreed)),
                    ("Recorded at (UTC)", _iso(acceptance.recorded_at)),
                    ("Recorded by", acceptance.recorded_by),
                    ("Country, language", f"{acceptance.country} {acceptance.language}".strip()),
                    ("Document shown", acceptance.document_uri),
                    ("IP address", acceptance.ip_address),
                    ("Browser", acceptance.user_agent),
                ]
            ),
        ]
    story += [
        Spacer(1, 8 * mm),
        Paragraph(
            escape(
                f"Generated {_iso(utcnow())} from the evidence the portal recorded. The same "
                "evidence is available as JSON from the dashboard."
            ),
            note,
        ),
    ]
    document.build(story)
    return buffer.getvalue()


def _table(rows: list[tuple[str, str]]) -> Table:
    table = Table(
        [[_label(label), _value(value)] for label, value in rows],
        colWidths=[45 * mm, None],
    )
    table.setStyle(
        TableStyle(
            [
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LINEBELOW", (0, 0), (-1, -1), 0.25, colors.lightgrey),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 3),
            ]
        )
    )
    return table
