"""Every shipped language, rendered: the customer's pages and emails leave no English behind.

Each language's whole journey is rendered (invitation email, landing page, sign-in, password
change, agreement with its form errors, account, confirmation email, the withdrawn, invalid and
error pages) beside the same journey for an English-speaking customer in the same country. A
piece of English text from the English journey that turns up in the other language's journey is
a string that fell back to English: missing from the catalog, or never passed through gettext.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

import pytest
from babel import Locale
from babel.messages.pofile import read_po
from sqlalchemy import select

from portal import LOCALES
from portal.core import db
from portal.core.models import OutboxMessage
from portal.i18n import wording
from portal.mail import sending
from tests.test_pages import accept, change_password, csrf, link_path, sign_in_from_link

#: Each shipped language, with a country whose customers read it and its culture.
SHIPPED = {
    "de": ("DE", "de-DE"),
    "fr": ("FR", "fr-FR"),
    "es": ("ES", "es-ES"),
    "it": ("IT", "it-IT"),
    "nl": ("NL", "nl-NL"),
    "pt_BR": ("BR", "pt-BR"),
    "ja": ("JP", "ja-JP"),
    "zh_Hans": ("SG", "zh-Hans-SG"),
    "pl": ("PL", "pl-PL"),
    "sv": ("SE", "sv-SE"),
    "ar": ("SA", "ar-SA"),
}


def test_every_shipped_language_is_tested() -> None:
    shipped = {p.parent.parent.name for p in LOCALES.glob("*/LC_MESSAGES/messages.po")}
    assert shipped == set(SHIPPED)


class _Text(HTMLParser):
    """Visible text and the attributes people read (labels for screen readers, titles)."""

    def __init__(self) -> None:
        super().__init__()
        self.pieces: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in {"script", "style", "option"}:  # option: language names are endonyms
            self._skip += 1
        for name, value in attrs:
            if name in {"aria-label", "title", "alt", "placeholder"} and value:
                self.pieces.append(value)

    def handle_endtag(self, tag: str) -> None:
        if tag in {"script", "style", "option"} and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.pieces.append(data)


#: Data that is the same in every language: names, addresses, links, numbers.
_DATA = re.compile(
    r"https?://\S+|[\w.+-]+@[\w.-]+|[\w-]+(\.[\w-]+)*\.example\.test|\b[\w-]{20,}\b|\d[\d:., ]*"
)
_NAMES = ("Fabrikam", "Contoso Ltd", "Tania", "Carr", "Ana", "Silva", "Microsoft", "UTC")


def segments(html_or_text: str, is_html: bool = True) -> set[str]:
    """Text pieces that carry words of the interface, with the data taken out."""
    if is_html:
        parser = _Text()
        parser.feed(html_or_text)
        pieces = parser.pieces
    else:
        pieces = html_or_text.splitlines()
    found = set()
    for piece in pieces:
        text = " ".join(piece.split())
        bare = _DATA.sub("", text)
        for name in _NAMES:
            bare = bare.replace(name, "")
        if len(re.findall(r"[^\W\d_]", bare)) >= 3:  # at least a word left once data is gone
            found.add(text)
    return found


def journey(api: Any, app: Any, client: Any, country: str, culture: str) -> dict[str, Any]:
    """Every page and email one customer meets, rendered, by name. The browser asks for the
    customer's language too, as theirs would (pages before sign-in know no customer)."""
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = culture
    language = culture.split("-")[0]
    customer = api.create_customer(
        country=country, culture=culture, language=language, company_name="Contoso Ltd"
    )
    path = f"/v1/customers/{customer['id']}/invitations"
    first = api.post(path, json={}).get_json()
    made = api.post(path, json={}).get_json()  # the first link is now replaced
    seen: dict[str, Any] = {
        "invitation.txt": (first["subject"] + "\n" + made["textBody"], False),
        "invitation.html": (made["htmlBody"], True),
        "replaced": (client.get(link_path(first)).get_data(as_text=True), True),
        "landing": (client.get(link_path(made)).get_data(as_text=True), True),
    }
    failed = sign_in_from_link(client, made, password="not the password, no")
    seen["signin-failed"] = (failed.get_data(as_text=True), True)
    sign_in_from_link(client, made)
    seen["password"] = (client.get("/password").get_data(as_text=True), True)
    short = client.post(
        "/password",
        data={"csrf_token": csrf(client.get("/password")), "password": "x", "repeat": "x"},
    )
    seen["password-short"] = (short.get_data(as_text=True), True)
    change_password(client)
    seen["agreement"] = (client.get("/agreement").get_data(as_text=True), True)
    refused = accept(client, accept="", email="not an address")
    seen["agreement-problems"] = (refused.get_data(as_text=True), True)
    accept(client)
    seen["account"] = (client.get("/account?accepted=1").get_data(as_text=True), True)
    seen["accepted-link"] = (client.get(link_path(made)).get_data(as_text=True), True)
    seen["not-found"] = (client.get("/nowhere").get_data(as_text=True), True)
    seen["invalid-link"] = (client.get("/invite/broken").get_data(as_text=True), True)
    with app.app_context():
        message = (
            db.session()
            .scalars(
                select(OutboxMessage).where(
                    OutboxMessage.customer_id == customer["id"], OutboxMessage.kind != "invitation"
                )
            )
            .one()
        )
        seen["confirmation.txt"] = (message.subject + "\n" + message.text_body, False)
        seen["confirmation.html"] = (message.html_body, True)
    client.post("/signout", data={"csrf_token": csrf(client.get("/account"))})
    seen["signed-out"] = (client.get("/signin?signed_out=1").get_data(as_text=True), True)
    return seen


def _kept_as_english(locale: str) -> set[str]:
    """Texts the translators deliberately left as the English (same msgstr as msgid)."""
    with open(LOCALES / locale / "LC_MESSAGES" / "messages.po", "rb") as handle:
        catalog = read_po(handle)
    return {m.id for m in catalog if m.id and isinstance(m.id, str) and m.string == m.id}


@pytest.mark.parametrize("locale", sorted(SHIPPED))
def test_every_page_and_email_is_in_the_customers_language(
    make_app: Any, make_api: Any, app: Any, locale: str
) -> None:
    country, culture = SHIPPED[locale]
    api = make_api()
    english = journey(api, app, app.test_client(), country, "en-US")
    theirs = journey(api, app, app.test_client(), country, culture)
    kept = _kept_as_english(locale)
    leftovers = {}
    for name, (rendered, is_html) in theirs.items():
        english_pieces = segments(english[name][0], english[name][1])
        left = {p for p in english_pieces & segments(rendered, is_html) if p not in kept}
        if left:
            leftovers[name] = sorted(left)
    assert leftovers == {}
    # The page says which language it is in, and which way it runs.
    expected_lang = str(Locale.parse(locale)).replace("_", "-")
    assert f'<html lang="{expected_lang}"' in theirs["agreement"][0]
    direction = "rtl" if locale == "ar" else "ltr"
    assert f'dir="{direction}"' in theirs["agreement"][0]
    assert f'dir="{direction}"' in theirs["invitation.html"][0]


def test_the_english_journey_is_really_compared() -> None:
    """The comparison finds English that is left in a page (so the test above can fail)."""
    page = "<main><h1>Accept the agreement</h1><p>Contoso Ltd · 12:30</p></main>"
    assert segments(page) == {"Accept the agreement"}
    assert segments(page.replace("Accept the agreement", "Vereinbarung annehmen")) == {
        "Vereinbarung annehmen"
    }


def test_person_names_follow_the_locale(app: Any) -> None:
    from flask_babel import force_locale

    with app.test_request_context():
        with force_locale("ja"):
            assert wording.person_name("Taro", "Yamada") == "Yamada Taro"
        with force_locale("de"):
            assert wording.person_name("Jonas", "Weber") == "Jonas Weber"
        assert wording.person_name("", "Weber") == "Weber"


@pytest.mark.parametrize(
    ("country", "expected"),
    [("DE", "Europe/Berlin"), ("JP", "Asia/Tokyo"), ("US", "UTC"), ("ES", "UTC"), ("", "UTC")],
)
def test_customer_time_zone_is_the_countrys_where_it_has_one(country: str, expected: str) -> None:
    winter = datetime(2026, 1, 15, 12, tzinfo=UTC)
    assert str(wording.customer_zone(country, winter)) == expected


def test_customer_time_zone_changes_exactly_when_the_clocks_do() -> None:
    # Ukraine's zones (Kyiv, and Simferopol on Moscow time) share an offset only in summer.
    change = datetime(2026, 3, 29, 1, tzinfo=UTC)  # Kyiv moves to summer time
    second = timedelta(seconds=1)
    assert str(wording.customer_zone("UA", change - second)) == "UTC"
    assert str(wording.customer_zone("UA", change)) == "Europe/Kyiv"
    assert str(wording.customer_zone("UA", change + 14 * 60 * second)) == "Europe/Kyiv"
    assert str(wording.customer_zone("UA", change - 14 * 60 * second)) == "UTC"


@pytest.mark.mail
def test_german_email_shows_german_time(app: Any, api: Any, smtp: Any) -> None:
    customer = api.create_customer(country="DE", culture="de-DE", language="de")
    made = api.post(f"/v1/customers/{customer['id']}/invitations", json={"send": True}).get_json()
    expires = datetime.fromisoformat(made["expiresAt"].replace("Z", "+00:00"))
    local = expires.astimezone(wording.customer_zone("DE", expires))
    with app.app_context():
        assert sending.deliver_due(app, db.session()).sent == 1
    [received] = smtp.inbox.received
    text = received.message.get_body(("plain",)).get_content()
    assert f"{local:%H:%M}" in text
    assert re.search(r"\bMES?Z\b", text)  # Central European (Summer) Time, as Germans write it
    assert urlsplit(made["url"]).path in text


def test_the_document_follows_the_language_and_says_when_it_cannot(api: Any, app: Any) -> None:
    """Austria reading German gets the de-DE document; Japan reading Spanish gets the en-US one
    (Japan publishes ja-JP and en-US only), and the page says so, in Spanish."""
    pages = {}
    for country, culture in (("AT", "de-AT"), ("JP", "es-ES")):
        client = app.test_client()
        customer = api.create_customer(country=country, culture=culture, language=culture[:2])
        made = api.post(f"/v1/customers/{customer['id']}/invitations", json={}).get_json()
        sign_in_from_link(client, made)
        change_password(client)
        pages[country] = client.get("/agreement").get_data(as_text=True)
    assert "country=AT&amp;language=de-DE" in pages["AT"]
    assert 'class="notice"' not in pages["AT"]
    assert "country=JP&amp;language=en-US" in pages["JP"]
    spanish = _translation(
        "es",
        "This agreement is not published in your language for your "
        "country; the link opens the English version.",
    )
    assert spanish
    assert spanish in pages["JP"]


def _translation(locale: str, msgid: str) -> str:
    with open(LOCALES / locale / "LC_MESSAGES" / "messages.po", "rb") as handle:
        message = read_po(handle).get(msgid)
    return str(message.string) if message is not None else ""
