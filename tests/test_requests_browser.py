"""The partner's Requests page in headless Chromium (CSP in force, axe clean): the reusable link
and its email, and a request for one company written, sent, tracked and withdrawn.

Uses the servers and browser of ``tests/test_dashboard_browser.py``.
"""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from portal import cli
from tests import test_dashboard_browser as partner_side
from tests.test_dashboard_browser import (
    ADMIN,
    button,
    check_page,
    clipboard,
    heading,
    press,
    sign_in,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

browser = partner_side.browser
make_portal = partner_side.make_portal
open_browser = partner_side.open_browser
make_dashboard = partner_side.make_dashboard
dashboard = partner_side.dashboard
open_dashboard = partner_side.open_dashboard


def test_requests_page_link_email_and_a_tracked_request(dashboard: Any, open_dashboard: Any):
    fabrikam = dashboard.fabrikam()
    runner = CliRunner(env=dashboard.env)
    set_country = runner.invoke(cli.main, ["partners", "country", fabrikam.id, "US"])
    assert set_country.exit_code == 0, set_country.output
    page = open_dashboard(dashboard)
    sign_in(page, dashboard, dashboard.user(fabrikam, ADMIN))
    press(page, page.get_by_role("navigation").get_by_role("link", name="Requests"))
    assert heading(page) == "Relationship requests"
    check_page(page)
    link = page.get_by_label("Link").input_value()
    assert link == fabrikam.api.get("/v1/customers/relationshiprequests")["url"]
    body = page.get_by_label("The email (you may edit it before you copy it or open").input_value()
    assert link in body
    button(page, "Copy to clipboard").click()
    assert clipboard(page) == body

    page.get_by_label("Domain", exact=True).fill("tailspin.example.test")
    page.get_by_label("Email", exact=True).fill("it@tailspin.example.test")
    page.locator("#language").fill("de")
    page.get_by_label("Send it now").check()
    press(page, button(page, "Write the request"))
    assert heading(page) == "Relationship request for tailspin.example.test"
    assert "Waiting to be sent" in page.locator("main").inner_text()
    check_page(page)
    mail = dashboard.portal.mail_to("it@tailspin.example.test")
    assert "Fabrikam" in mail["Subject"]
    (listed,) = fabrikam.api.get("/v1/relationshiprequests")["items"]
    assert listed["status"] == "sent"
    assert listed["url"] in mail.get_body(("plain",)).get_content()

    press(page, button(page, "Withdraw"))
    assert "Withdrawn" in page.locator("main").inner_text()
    assert page.get_by_role("button", name="Withdraw").count() == 0
    check_page(page)
    assert fabrikam.api.get(f"/v1/relationshiprequests/{listed['id']}")["status"] == "withdrawn"
