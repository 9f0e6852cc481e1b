"""A relationship request in headless Chromium, in German and Arabic: a customer who came with
one partner's invitation accepts a second partner's request and the agreement on one page (axe
clean), and the second partner's tools see it at once.

Uses the servers, mail and browser of ``tests/test_browser.py``.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from typing import Any

import pytest
from click.testing import CliRunner

from portal import cli
from tests import test_browser as customer_side
from tests.conftest import SECRET
from tests.test_browser import (
    Portal,
    assert_accessible,
    choose_password,
    heading,
    sign_in_from_email,
    visit,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

browser = customer_side.browser
make_portal = customer_side.make_portal
portal = customer_side.portal
open_browser = customer_side.open_browser


def second_partner(portal: Portal, database_url: str, name: str, country: str) -> Portal:
    """Another partner of the same portal (``portal partners create``), as a ``Portal`` whose
    calls carry its key."""
    env = {**os.environ, "PORTAL_SECRET_KEY": SECRET, "PORTAL_DATABASE_URL": database_url}
    made = CliRunner(env=env).invoke(
        cli.main,
        ["partners", "create", "--name", name, "--kind", "direct", "--country", country, "--json"],
    )
    assert made.exit_code == 0, made.output
    return Portal(portal.base_url, json.loads(made.output)["apiKey"], portal.smtp, portal.log)


@pytest.mark.parametrize(
    ("language", "country", "culture"), [("de", "DE", "de-DE"), ("ar", "AE", "ar-AE")]
)
def test_a_customer_accepts_a_second_partners_request_and_the_agreement_on_one_page(
    portal: Portal, open_browser: Any, database_url: str, language: str, country: str, culture: str
) -> None:
    customer, invitation = portal.invited_customer(
        country=country, culture=culture, language=language
    )
    mail = portal.invitation_mail(invitation["to"])
    second = second_partner(portal, database_url, "Northwind Traders", country)
    link = second.get("/v1/customers/relationshiprequests")["url"]
    status = f"/v1/customers/{customer['id']}"
    assert second.call("GET", status)[0] == 404

    page = open_browser(portal, locale=culture)
    visit(page, link)  # a stranger: who asks, and a sign-in; nothing about any customer
    assert page.locator("html").get_attribute("lang") == language
    assert "Northwind Traders" in heading(page)
    assert page.locator("#user_name").count() == 1
    assert_accessible(page)

    sign_in_from_email(page, mail)  # the customer's account, from the first invitation
    choose_password(page)
    visit(page, link)
    assert page.locator("html").get_attribute("lang") == language
    if language == "ar":
        assert page.locator("html").get_attribute("dir") == "rtl"
    english = "Northwind Traders asks to become your partner"
    assert heading(page) != english  # translated
    assert page.locator("section.agreement").count() >= 1  # not accepted yet: the agreement too
    assert_accessible(page)
    page.locator("#first_name").fill("Ana")
    page.locator("#last_name").fill("Silva")
    page.locator("#email").fill("ana@contoso.example.test")
    page.locator("#accept").check()
    page.locator("button[name=answer][value=accept]").click()
    page.wait_for_url("**/account")
    assert "Northwind Traders" in page.locator("main .notice").inner_text()
    assert page.locator("ul.partners li").count() == 2
    assert_accessible(page)

    assert second.call("GET", status)[0] == 200
    signed = f"{status}/directSignedMicrosoftCustomerAgreementStatus"
    assert second.get(signed) == {"isSigned": True}
    assert portal.get(signed) == {"isSigned": True}
    accepted = second.get(f"{status}/acceptanceStatus")
    assert accepted["state"] == "accepted"
    relationships = second.get(f"{status}/relationships")
    assert relationships["items"] == []  # a direct partner has no two-tier partners on it
    assert urllib.parse.urlsplit(link).path.startswith("/relationship/")
