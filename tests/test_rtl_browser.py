"""Arabic in headless Chromium: the pages run right to left and their layout is mirrored.

Uses the servers, mail and browser of ``tests/test_browser.py``.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page

from tests import test_browser as customer_side
from tests.test_browser import assert_accessible, choose_password, sign_in_from_email

pytestmark = [pytest.mark.browser, pytest.mark.slow]

browser = customer_side.browser
make_portal = customer_side.make_portal
portal = customer_side.portal
open_browser = customer_side.open_browser


def _box(page: Page, selector: str) -> dict[str, float]:
    box = page.locator(selector).first.bounding_box()
    assert box is not None, selector
    return box


def test_arabic_pages_run_right_to_left_and_mirror_the_layout(portal, open_browser):
    _, invitation = portal.invited_customer(country="AE", culture="ar-AE", language="ar")
    mail = portal.invitation_mail(invitation["to"])
    assert mail.message.get_body(("html",)).get_content().count('dir="rtl"') >= 1
    page = open_browser(portal, locale="ar-AE")
    sign_in_from_email(page, mail)
    choose_password(page)
    html = page.locator("html")
    assert html.get_attribute("lang") == "ar"
    assert html.get_attribute("dir") == "rtl"
    assert page.evaluate("getComputedStyle(document.body).direction") == "rtl"
    # Mirrored: the brand starts at the right edge and the account controls sit to its left;
    # labels and fields line up on the right.
    brand, nav = _box(page, "header .brand"), _box(page, "header nav")
    assert brand["x"] > nav["x"]
    label, field = _box(page, "label[for=first_name]"), _box(page, "#first_name")
    assert abs((label["x"] + label["width"]) - (field["x"] + field["width"])) < 2
    checkbox, its_label = _box(page, "#accept"), _box(page, "label[for=accept]")
    assert checkbox["x"] > its_label["x"]  # the box comes first, on the right
    assert_accessible(page)


def test_english_pages_run_left_to_right(portal, open_browser):
    _, invitation = portal.invited_customer()
    mail = portal.invitation_mail(invitation["to"])
    page = open_browser(portal)
    sign_in_from_email(page, mail)
    choose_password(page)
    assert page.locator("html").get_attribute("dir") == "ltr"
    brand, nav = _box(page, "header .brand"), _box(page, "header nav")
    assert brand["x"] < nav["x"]
    checkbox, its_label = _box(page, "#accept"), _box(page, "label[for=accept]")
    assert checkbox["x"] < its_label["x"]
