"""The visual check: every customer page and every email (HTML), in every language, at a
phone's width and a desktop's, as Chromium draws them. It fails when a page scrolls sideways,
text sticks out of the window or covers other text, or an English string shows on a page in
another language. Screenshots are kept in ``test-artifacts/visual/LOCALE/`` (or under
``$PORTAL_TEST_ARTIFACTS``) for people to look at.

The pages and emails are those ``portal i18n preview LOCALE`` writes (sample data, no server);
the dashboard's are checked against a running server in ``test_dashboard_visual``.
"""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from playwright.sync_api import Browser

from portal import cli
from tests import test_browser as customer_side
from tests import test_dashboard_browser as dashboard_side
from tests import visual

# The browser tests' fixtures, under their own names: Chromium, a server with its SMTP server,
# and the dashboard's people and data.
browser = customer_side.browser
make_portal = customer_side.make_portal
make_dashboard = dashboard_side.make_dashboard
dashboard = dashboard_side.dashboard

ROOT = Path(__file__).parent.parent
LOCALES = sorted(
    [
        "en",
        *(path.parent.parent.name for path in (ROOT / "locales").glob("*/LC_MESSAGES/messages.po")),
    ]
)
#: A phone (the customer's usual way in) and a desktop.
WIDTHS = {"phone": (375, 740), "desktop": (1280, 900)}
#: A long receiver address, as partners' systems have them.
WEBHOOK_URL = "https://hooks.fabrikam.example/partner-center/customer-agreement/events/v2/receive"
ARTIFACTS = Path(os.environ.get("PORTAL_TEST_ARTIFACTS") or ROOT / "test-artifacts") / "visual"

pytestmark = pytest.mark.slow


def english_for(locale: str) -> set[str]:
    if locale == "en":
        return set()
    return visual.english_strings(ROOT / "locales" / locale / "LC_MESSAGES" / "messages.po")


@pytest.mark.parametrize("locale", LOCALES)
def test_customer_pages_and_emails_look_right(browser: Browser, tmp_path: Path, locale: str):
    written = tmp_path / locale
    result = CliRunner().invoke(cli.main, ["i18n", "preview", locale, "--out", str(written)])
    assert result.exit_code == 0, result.output
    pages = sorted(written.glob("*.html"))
    assert len(pages) >= 10, pages
    look = Looker(locale)
    for name, (width, height) in WIDTHS.items():
        context = browser.new_context(viewport={"width": width, "height": height})
        # Nothing leaves the machine (the pages' links to documents and icons go nowhere).
        context.route(lambda url: not url.startswith("file://"), lambda route: route.abort())
        page = context.new_page()
        for path in pages:
            page.goto(path.as_uri())
            look(page, path.stem, name)
        context.close()
    assert not look.problems, "\n".join(look.problems)


class Looker:
    """Screenshots a page into the artifacts and notes what is wrong with it."""

    def __init__(self, locale: str) -> None:
        self.english = english_for(locale)
        self.shots = ARTIFACTS / locale
        self.shots.mkdir(parents=True, exist_ok=True)
        self.problems: list[str] = []

    def __call__(self, page: Any, label: str, width: str) -> None:
        page.screenshot(path=str(self.shots / f"{label}-{width}.png"), full_page=True)
        self.problems += [f"{label} ({width}): {p}" for p in visual.layout_problems(page)]
        if width == "desktop":
            found = visual.untranslated(page, self.english)
            self.problems += [f"{label}: untranslated {text!r}" for text in found]


@pytest.mark.parametrize("locale", LOCALES)
def test_dashboard_pages_look_right(browser: Browser, dashboard: Any, locale: str) -> None:
    """Every dashboard page, with customers in several states (and so both charts drawn), in
    ``locale`` at both widths; Arabic charts drawn mirrored."""
    fabrikam = dashboard.fabrikam()
    email = dashboard.user(fabrikam, dashboard_side.ADMIN)
    customer = fabrikam.customer(company_name="Contoso Kundenvereinbarungsverwaltung GmbH")
    for n in range(3):
        fabrikam.customer(company_name=f"Waiting {n}")
    status, invited = fabrikam.api.call("POST", f"/v1/customers/{customer['id']}/invitations", {})
    assert status == 201, invited
    # A country, so that the partner has relationship requests to show (and a personal one).
    made = CliRunner(env=dashboard.env).invoke(cli.main, ["partners", "country", fabrikam.id, "US"])
    assert made.exit_code == 0, made.output
    status, request = fabrikam.api.call(
        "POST",
        "/v1/relationshiprequests",
        {"domain": "northwind.example", "email": "it@northwind.example", "language": "en"},
    )
    assert status == 201, request
    # A webhook with a delivery: another customer's invitation link, opened, is an event it is
    # told of (its address does not resolve, so the delivery waits with an error).
    status, hook = fabrikam.api.call("POST", "/v1/webhooks", {"url": WEBHOOK_URL})
    assert status == 201, hook
    other = fabrikam.customer(company_name="Northwind Traders", domain="northwind.example.test")
    status, link = fabrikam.api.call("POST", f"/v1/customers/{other['id']}/invitations", {})
    assert status == 201, link
    with urllib.request.urlopen(link["url"], timeout=10) as opened:
        assert opened.status == 200
    base = dashboard.url
    paths = {
        "overview": "/",
        "customers": "/customers",
        "customer": f"/customers/{customer['id']}",
        "invitation": f"/customers/{customer['id']}/invitations/{invited['id']}",
        "new-customer": "/customers/new",
        "import": "/import",
        "requests": "/relationships",
        "personal-request": f"/relationships/{request['id']}",
        "webhooks": "/webhooks",
        "webhook": f"/webhooks/{hook['id']}",
    }
    look = Looker(locale)
    for name, (width, height) in WIDTHS.items():
        context = browser.new_context(viewport={"width": width, "height": height})
        context.route(
            lambda url: not url.startswith(base.removesuffix("/dashboard")), lambda r: r.abort()
        )
        page = context.new_page()
        visual_pages = [("signin", "/signin")]
        customer_side.visit(page, base + "/signin")
        choose_language(page, locale)
        for label, path in visual_pages + [(key, value) for key, value in paths.items()]:
            if label == "overview":  # signed in from here on, whatever the labels say
                page.locator("main input[name=email]").fill(email)
                page.locator("main input[name=password]").fill(dashboard_side.PASSWORD)
                with page.expect_navigation():
                    page.locator("main form button[type=submit]").click()
            customer_side.visit(page, base + path)
            look(page, f"dashboard-{label}", name)
        # The page that shows a new webhook's secret, once: the answer to the form.
        customer_side.visit(page, base + "/webhooks")
        page.locator("main input[name=url]").fill(f"{WEBHOOK_URL}?width={name}")
        page.locator("main input[name=events]").first.check()
        with page.expect_navigation():
            page.locator("main form button[type=submit]").click()
        look(page, "dashboard-webhook-created", name)
        context.close()
    assert not look.problems, "\n".join(look.problems)


def choose_language(page: Any, locale: str) -> None:
    """Pick ``locale`` in the header's language list, as a person does."""
    page.locator("#lang").select_option(locale)
    with page.expect_navigation():
        page.locator("form.language button[type=submit]").click()
    assert page.locator("html").get_attribute("lang") == locale.replace("_", "-")
