"""The partner dashboard end to end in headless Chromium: a real ``portal serve``, a real SMTP
server, dashboard users made with ``portal partners users create``, and axe-core on every kind of
dashboard page.

The server, the SMTP server and the browser come from ``tests/test_browser.py`` (same needs:
``bash tests/setup.sh``). Unlike the customer pages there, the dashboard is driven with its
Content-Security-Policy in force, so ``dashboard.js`` (copy buttons, the mailto link, the import
progress) is tested as it runs for partners, and any CSP violation fails the page check.

Page kinds checked with axe: sign-in (also with its error and after signing out), overview
(empty, and with both charts), customers list, new customer form (also with problems), customer
created, customer page (with the attestation form, its problems, the evidence, and the
reseller's notice), invitation screen (also with a refused edit), import page (with a report,
and with a file-level error).
"""

from __future__ import annotations

import csv
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from click.testing import CliRunner
from playwright.sync_api import Browser, BrowserContext, Locator, Page, Response

from portal import cli
from tests import test_browser as customer_side
from tests.conftest import SECRET, customer_body
from tests.test_browser import AXE, MCA, WCAG_TAGS, Portal, sign_in_from_email, visit

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# The fixtures of tests/test_browser.py, under their own names: a server with its SMTP server
# (``make_portal``), Chromium (``browser``) and a customer's browser (``open_browser``).
browser = customer_side.browser
make_portal = customer_side.make_portal
open_browser = customer_side.open_browser

PASSWORD = "correct horse battery staple"
ADMIN = "avery@fabrikam.example.test"
#: Collects the page's CSP violations; installed in every document before its own scripts run.
CSP_WATCH = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""
#: Every column the import knows, in a realistic file: about 200 bytes a row.
IMPORT_HEADER = [
    "domain", "companyName", "email", "culture", "language", "country", "firstName", "lastName",
    "addressLine1", "addressLine2", "city", "state", "postalCode", "phoneNumber",
    "contactFirstName", "contactLastName", "contactEmail", "contactPhoneNumber",
]  # fmt: skip


# --- partners, their users and customers ----------------------------------------------------------


@dataclass
class Partner:
    id: str
    name: str
    #: The partner's API, over HTTP, on the same server.
    api: Portal

    def customer(self, **changes: Any) -> dict[str, Any]:
        changes.setdefault("email", f"billing@{changes.get('domain', 'contoso.example.test')}")
        status, made = self.api.call("POST", "/v1/customers", customer_body(**changes))
        assert status == 201, made
        return dict(made)


@dataclass
class Dashboard:
    """A running portal, as seen by the people who run it: the ``portal`` command and the
    partner API."""

    portal: Portal
    env: dict[str, str]

    @property
    def url(self) -> str:
        return self.portal.base_url + "/dashboard"

    def command(self, *args: str, **env: str) -> Any:
        result = CliRunner(env={**self.env, **env}).invoke(cli.main, list(args))
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    def fabrikam(self) -> Partner:
        """The direct partner ``make_portal`` created, whose key the portal's API uses."""
        listed = self.command("partners", "list", "--json")["items"]
        (found,) = [p for p in listed if p["name"] == "Fabrikam"]
        return Partner(found["id"], found["name"], self.portal)

    def partner(self, name: str, kind: str, provider: Partner | None = None) -> Partner:
        args = ["partners", "create", "--name", name, "--kind", kind, "--json"]
        if provider:
            args += ["--provider", provider.id]
        made = self.command(*args)
        return Partner(made["id"], name, replace(self.portal, key=made["apiKey"]))

    def user(self, partner: Partner, email: str, role: str = "admin-agent") -> str:
        """A dashboard user made as an operator makes one; returns the email."""
        made = self.command(
            "partners", "users", "create", partner.id, email, "--role", role, "--json",
            PORTAL_NEW_USER_PASSWORD=PASSWORD,
        )  # fmt: skip
        assert made["role"] == role
        return email


@pytest.fixture
def make_dashboard(
    make_portal: Callable[..., Portal], database_url: str
) -> Callable[..., Dashboard]:
    """A ``portal serve`` (see ``make_portal``); keyword arguments add ``PORTAL_*`` settings."""

    def make(**settings: str) -> Dashboard:
        portal = make_portal(**settings)
        env = {
            "PORTAL_SECRET_KEY": SECRET,
            "PORTAL_DATABASE_URL": database_url,
            "PORTAL_BASE_URL": portal.base_url,
        }
        return Dashboard(portal, env)

    return make


@pytest.fixture
def dashboard(make_dashboard: Callable[..., Dashboard]) -> Dashboard:
    """A server with the default settings."""
    return make_dashboard()


# --- the browser, with the pages' CSP in force ---------------------------------------------------


@pytest.fixture
def open_dashboard(
    browser: Browser, make_portal: Callable[..., Portal]
) -> Iterator[Callable[[Dashboard], Page]]:
    """A new browser profile for a dashboard, allowed to use the clipboard. Unlike
    ``open_browser`` it keeps the Content-Security-Policy: axe is injected through the DevTools
    protocol instead of a ``<script>`` element. Asking for ``make_portal`` here closes the
    browser before the servers stop."""
    contexts: list[BrowserContext] = []

    def open_page(dashboard: Dashboard) -> Page:
        base_url = dashboard.portal.base_url
        context = browser.new_context(locale="en-US", timezone_id="UTC")
        context.set_default_timeout(10_000)
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base_url)
        context.add_init_script(CSP_WATCH)
        # Nothing leaves the machine.
        context.route(lambda url: not url.startswith(base_url + "/"), lambda route: route.abort())
        contexts.append(context)
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()


def check_page(page: Page) -> None:
    """The page as it is now: no CSP violation, and no WCAG 2.x A or AA violation by axe."""
    blocked = page.evaluate("window.__cspViolations")
    assert blocked == [], f"CSP violations on {page.url}: {blocked}"
    if not page.evaluate("typeof axe === 'object'"):
        page.evaluate(AXE.read_text())
    violations = page.evaluate(
        """async (tags) => (await axe.run(document, {
            runOnly: {type: "tag", values: tags}, resultTypes: ["violations"],
        })).violations.map((v) => ({
            id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.map((n) => ({target: n.target.join(" "), summary: n.failureSummary})),
        }))""",
        WCAG_TAGS,
    )
    report = []
    for violation in violations:
        report.append(f"{violation['id']} ({violation['impact']}): {violation['help']}")
        for node in violation["nodes"]:
            report.append(f"  - {node['target']}")
            report.extend(f"      {line}" for line in (node["summary"] or "").splitlines())
    assert not violations, f"axe on {page.url}:\n" + "\n".join(report)


def press(page: Page, control: Locator) -> Response:
    """Click a control that loads a page (a form's button, a link); the response that came."""
    with page.expect_navigation() as navigation:
        control.click()
    response = navigation.value
    assert response is not None
    assert "script-src 'self'" in response.headers["content-security-policy"]
    return response


def button(page: Page, name: str) -> Locator:
    return page.get_by_role("button", name=name, exact=True)


def heading(page: Page) -> str:
    return page.locator("main h1").inner_text()


def sign_in(page: Page, dashboard: Dashboard, email: str, password: str = PASSWORD) -> None:
    visit(page, dashboard.url + "/signin")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    assert press(page, button(page, "Sign in")).status == 200
    assert urlsplit(page.url).path == "/dashboard/"


def open_customer(page: Page, dashboard: Dashboard, customer: dict[str, Any]) -> None:
    visit(page, f"{dashboard.url}/customers/{customer['id']}")
    assert heading(page) == customer["companyProfile"]["companyName"]


def state_badge(page: Page) -> str:
    return page.locator("main h1 + p .state").inner_text()


def section(page: Page, name: str) -> Locator:
    return page.get_by_role("region", name=name)


def clipboard(page: Page) -> str:
    return str(page.evaluate("navigator.clipboard.readText()"))


# --- the tests ------------------------------------------------------------------------------------


def test_sign_in_wrong_password_then_right_one_then_sign_out(dashboard, open_dashboard):
    email = dashboard.user(dashboard.fabrikam(), ADMIN)
    page = open_dashboard(dashboard)

    # A page behind the sign-in sends there, and comes back after it.
    visit(page, dashboard.url + "/customers")
    assert urlsplit(page.url).path == "/dashboard/signin"
    assert heading(page) == "Sign in to the partner dashboard"
    assert not page.get_by_role("button", name="Sign out").count()
    check_page(page)

    page.get_by_label("Email").fill(email.upper())
    page.get_by_label("Password").fill("not the password at all")
    assert press(page, button(page, "Sign in")).status == 401
    assert page.get_by_role("alert").inner_text() == "The email or password is not right."
    password = page.get_by_label("Password")
    assert password.get_attribute("aria-invalid") == "true"
    assert password.input_value() == ""  # never sent back
    assert page.get_by_label("Email").input_value() == email.upper()
    check_page(page)

    password.fill(PASSWORD)
    assert press(page, button(page, "Sign in")).status == 200
    assert urlsplit(page.url).path == "/dashboard/customers"
    assert heading(page) == "Customers"
    assert "Fabrikam" in page.locator("header .brand").inner_text()

    press(page, page.get_by_role("link", name="Overview"))
    assert heading(page) == "Overview"
    check_page(page)  # the overview of a partner without customers

    press(page, button(page, "Sign out"))
    assert urlsplit(page.url).path == "/dashboard/signin"
    assert page.get_by_role("status").inner_text() == "You have signed out."
    check_page(page)
    visit(page, dashboard.url + "/")
    assert urlsplit(page.url).path == "/dashboard/signin"


def test_new_customer_form_shows_the_credentials_once(dashboard, open_dashboard, open_browser):
    page = open_dashboard(dashboard)
    sign_in(page, dashboard, dashboard.user(dashboard.fabrikam(), ADMIN))
    press(page, page.get_by_role("navigation").get_by_role("link", name="New customer"))
    assert heading(page) == "New customer"
    check_page(page)

    page.locator("#company_name").fill("Contoso Web")
    page.locator("#domain").fill("not a domain")
    page.locator("#email").fill("billing@contoso-web.example.test")
    page.locator("#culture").fill("de-DE")
    page.locator("#first_name").fill("Jonas")
    page.locator("#last_name").fill("Weber")
    page.locator("#country").select_option("DE")
    page.locator("#contact_email").fill("jonas@contoso-web.example.test")
    assert press(page, button(page, "Create customer")).status == 400
    alert = page.get_by_role("alert")
    assert "Enter a domain name such as contoso.example." in alert.inner_text()
    assert page.locator("#domain").get_attribute("aria-invalid") == "true"
    assert page.locator("#company_name").input_value() == "Contoso Web"  # the rest is kept
    check_page(page)
    alert.get_by_role("link").first.click()  # the summary leads to the field
    assert page.evaluate("document.activeElement.id") == "domain"

    page.locator("#domain").fill("contoso-web.example.test")
    assert press(page, button(page, "Create customer")).status == 201
    assert heading(page) == "Customer created"
    warning = page.get_by_role("alert").inner_text()
    assert "This is the only time the password is shown." in warning
    user_name = page.locator("#user-name").inner_text()
    password = page.locator("#password").inner_text()
    assert user_name == "admin@contoso-web.example.test"
    assert len(password) >= 12, password
    assert page.locator("#user-name").is_visible()
    assert page.locator("#password").is_visible()
    copy = button(page, "Copy password")
    assert copy.is_visible()  # shown by dashboard.js
    copy.click()
    assert clipboard(page) == password
    check_page(page)

    press(page, page.get_by_role("link", name="Go to the customer and invite them"))
    assert heading(page) == "Contoso Web"
    assert state_badge(page) == "Not invited"
    assert password not in page.content()  # shown once
    check_page(page)

    # The credentials are real: the customer can sign in with them.
    customer_page = open_browser(dashboard.portal)
    visit(customer_page, dashboard.portal.base_url + "/signin")
    customer_page.locator("#user_name").fill(user_name)
    customer_page.locator("#password").fill(password)
    customer_page.locator("main form button[type=submit]").click()
    customer_page.wait_for_url("**/password")

    press(page, page.get_by_role("navigation").get_by_role("link", name="Customers"))
    row = page.get_by_role("row").filter(has_text="Contoso Web")
    assert "contoso-web.example.test" in row.inner_text()
    page.get_by_label("Search company, domain or email").fill("contoso-web")
    press(page, button(page, "Show"))
    assert page.locator("table.customers tbody tr").count() == 1
    check_page(page)


def test_invitation_sent_from_the_customer_page(dashboard, open_dashboard, open_browser):
    fabrikam = dashboard.fabrikam()
    contact = "tania@northwind-traders.example.test"
    customer = fabrikam.customer(
        company_name="Northwind Traders", domain="northwind-traders.example.test", email=contact
    )
    page = open_dashboard(dashboard)
    sign_in(page, dashboard, dashboard.user(fabrikam, ADMIN))
    press(page, page.get_by_role("navigation").get_by_role("link", name="Customers"))
    check_page(page)
    press(page, page.get_by_role("link", name="Northwind Traders"))
    assert heading(page) == "Northwind Traders"
    check_page(page)

    invite = section(page, "Invite")
    assert invite.get_by_label("Put the temporary password in the email").is_checked()
    invite.get_by_label("Send it to the primary contact now").check()
    created = press(page, button(page, "Create invitation"))
    assert created.status == 200
    assert 'data-copy="body" hidden' in created.text()  # hidden unless dashboard.js runs
    assert heading(page) == "Invitation for Northwind Traders"
    assert page.get_by_role("status").inner_text() == f"It is queued for sending to {contact}."
    notice = page.locator("#password-notice").inner_text()
    shown = re.fullmatch(
        r"The temporary password is (\S+)\. It is in the email below until the invitation is "
        r"used up, withdrawn or replaced\.",
        notice,
    )
    assert shown, notice
    subject = page.locator("#subject").inner_text()
    body = page.get_by_label("The email (you may edit it").input_value()
    check_page(page)

    # The email as it reached the SMTP server: its subject, link and credentials.
    mail = dashboard.portal.invitation_mail(contact)
    assert mail.message["Subject"] == subject
    assert mail.message["To"].addresses[0].addr_spec == contact
    assert mail.link.startswith(dashboard.portal.base_url + "/invite/")
    assert mail.link in body
    assert (mail.user_name, mail.password) == ("admin@northwind-traders.example.test", shown[1])
    plain = mail.message.get_body(preferencelist=("plain",)).get_content()
    assert plain.replace("\r\n", "\n").strip() == body.replace("\r\n", "\n").strip()

    # "Copy to clipboard", shown by dashboard.js, copies the email.
    copy = button(page, "Copy to clipboard")
    assert copy.is_visible()
    copy.click()
    assert clipboard(page) == body

    # "Open in email" carries the recipient, the subject and the body, and follows edits.
    def mailto() -> tuple[str, dict[str, str]]:
        href = page.get_by_role("link", name="Open in email").get_attribute("href") or ""
        assert href.startswith("mailto:"), href
        parts = urlsplit(href)
        query = dict(part.split("=", 1) for part in parts.query.split("&"))
        return unquote(parts.path), {name: unquote(value) for name, value in query.items()}

    to, query = mailto()
    assert to == contact
    assert query["subject"] == subject
    assert query["body"].replace("\r\n", "\n") == body.replace("\r\n", "\n")
    assert mail.link in query["body"]
    edited = "Hello Tania & team,\n100% of this is for you: " + mail.link
    page.get_by_label("The email (you may edit it").fill(edited)
    to, query = mailto()
    assert (to, query["subject"], query["body"]) == (contact, subject, edited)

    # "See the HTML email" opens the email as the customer gets it, in a sandbox.
    with page.context.expect_page() as opened:
        page.get_by_role("link", name="See the HTML email").click()
    email_page = opened.value
    email_page.wait_for_load_state()
    assert email_page.locator(f'a[href="{mail.link}"]').count() >= 1
    assert email_page.evaluate("window.origin") == "null"  # sandboxed: an origin of its own
    email_page.close()

    # The partner sees the delivery on the customer page ...
    press(page, page.get_by_role("link", name="Back to Northwind Traders"))
    assert state_badge(page) == "Invited"
    invitations = section(page, "Invitations")
    assert invitations.get_by_role("cell", name=contact).count() == 1
    deadline = time.monotonic() + 15
    while "Delivered to the mail server" not in invitations.inner_text():
        assert time.monotonic() < deadline, invitations.inner_text()
        page.wait_for_timeout(200)
        page.reload()
    check_page(page)

    # ... and, once the customer has followed the emailed link, that they signed in.
    customer_page = open_browser(dashboard.portal)
    sign_in_from_email(customer_page, mail)
    page.reload()
    assert state_badge(page) == "Signed in"
    timeline = section(page, "Timeline").inner_text()
    assert "Invitation created" in timeline
    assert "Customer signed in" in timeline
    check_page(page)

    # The invitation screen again, from the table: no password notice, the email text as sent
    # (it holds the password because the partner chose to put it in the email).
    press(page, invitations.get_by_role("link").first)
    assert heading(page) == "Invitation for Northwind Traders"
    assert not page.get_by_role("alert").count()
    assert page.get_by_label("The email (you may edit it").input_value() == body
    assert button(page, "Copy to clipboard").is_visible()
    check_page(page)
    assert customer["id"] in page.url

    # "Send" sends the text as the partner edited it; not without the link, though.
    email_text = page.get_by_label("The email (you may edit it")
    email_text.fill("Hello Tania,\n\nPlease accept.")
    refused = press(page, button(page, f"Send it to {contact}"))
    assert refused.status == 400
    assert "must contain the invitation link" in page.get_by_role("alert").inner_text()
    assert email_text.input_value() == "Hello Tania,\n\nPlease accept."  # kept, to put right
    check_page(page)
    edited = f"Hello Tania & team,\n\nPlease accept <today>:\n{mail.link}\n\nAvery"
    email_text.fill(edited)
    press(page, button(page, f"Send it to {contact}"))
    assert heading(page) == "Northwind Traders"
    inbox, deadline = dashboard.portal.smtp.inbox, time.monotonic() + 15
    while len(received := [m for m in inbox.messages if contact in m["To"]]) < 2:
        assert time.monotonic() < deadline, dashboard.portal.log_tail()
        time.sleep(0.1)
    resent = received[1]
    assert resent["Subject"] == subject
    assert resent.get_body(preferencelist=("plain",)).get_content().replace("\r\n", "\n") == edited
    markup = resent.get_body(preferencelist=("html",)).get_content()
    assert f'<a href="{mail.link}"' in markup
    assert "Tania &amp; team" in markup
    assert "&lt;today&gt;" in markup


def test_attestation_with_the_date_picker(dashboard, open_dashboard):
    fabrikam = dashboard.fabrikam()
    fabrikam.customer(company_name="Invited Co", domain="invited.example.test")
    contact = "tania@adatum.example.test"
    customer = fabrikam.customer(company_name="Adatum", domain="adatum.example.test", email=contact)
    page = open_dashboard(dashboard)
    sign_in(page, dashboard, dashboard.user(fabrikam, ADMIN))
    open_customer(page, dashboard, customer)
    assert state_badge(page) == "Not invited"
    form = section(page, "Attest acceptance")
    date = form.get_by_label("Date of acceptance")
    assert date.get_attribute("type") == "date"
    today = datetime.now(UTC).date()
    assert date.get_attribute("max") in {today.isoformat(), (today + timedelta(1)).isoformat()}
    assert form.get_by_label("First name").input_value() == "Tania"  # the primary contact
    assert form.get_by_label("Email").input_value() == contact
    check_page(page)

    # The date picker refuses a future date before anything is sent ...
    future = (today + timedelta(days=3)).isoformat()
    date.fill(future)
    button(page, "Attest").click()
    assert date.evaluate("input => input.validity.rangeOverflow")
    assert urlsplit(page.url).path == f"/dashboard/customers/{customer['id']}"
    assert dashboard.portal.status(customer["id"])["acceptance"] is None

    # ... and so does the server, for a browser that lets it through.
    date.evaluate("input => input.removeAttribute('max')")
    assert press(page, button(page, "Attest")).status == 400
    alert = page.get_by_role("alert")
    assert "The date cannot be in the future." in alert.inner_text()
    date = section(page, "Attest acceptance").get_by_label("Date of acceptance")
    assert date.get_attribute("aria-invalid") == "true"
    assert date.input_value() == future  # kept for correcting
    check_page(page)
    assert dashboard.portal.status(customer["id"])["acceptance"] is None

    past = today - timedelta(days=40)
    date.fill(past.isoformat())
    assert press(page, button(page, "Attest")).status == 200
    assert urlsplit(page.url).query == "done=attested"
    assert state_badge(page) == "Attested"
    assert "Your attestation was recorded" in page.get_by_role("status").inner_text()
    assert "Acceptance is already recorded for this customer." in (
        section(page, "Attest acceptance").inner_text()
    )
    assert not page.locator("#attest-date").count()
    evidence = section(page, "Acceptance evidence")
    facts = dict(
        zip(
            evidence.locator("dt").all_inner_texts(),
            evidence.locator("dd").all_inner_texts(),
            strict=True,
        )
    )
    assert facts["How"] == "Attested by the partner"
    assert facts["Who"] == f"Tania Carr · {contact} · 1234567890"
    assert MCA in facts["Agreement"]
    assert f"{past:%B} {past.day}, {past.year}" in facts["When"]
    assert evidence.get_by_role("link", name="Download the evidence (JSON)").is_visible()
    assert "Partner attested acceptance" in section(page, "Timeline").inner_text()
    check_page(page)

    status = dashboard.portal.status(customer["id"])
    assert status["state"] == "attested"
    assert status["acceptance"]["dateAgreed"].startswith(past.isoformat())
    assert status["acceptance"]["primaryContact"]["email"] == contact
    assert dashboard.portal.mail_to(contact)  # the contact was told
    visit(page, dashboard.url + "/customers?state=attested")
    (listed,) = page.locator("table.customers tbody tr").all_inner_texts()
    assert "Adatum" in listed


def test_indirect_reseller_is_told_why_and_who_instead_of_the_form(dashboard, open_dashboard):
    provider = dashboard.partner("Northwind Distribution", "indirect-provider")
    reseller = dashboard.partner("Tailspin Toys", "indirect-reseller", provider)
    customer = reseller.customer(company_name="Resold Co", domain="resold.example.test")
    page = open_dashboard(dashboard)
    sign_in(page, dashboard, dashboard.user(reseller, "admin@tailspin.example.test"))
    assert "Tailspin Toys" in page.locator("header .brand").inner_text()
    open_customer(page, dashboard, customer)

    attest = section(page, "Attest acceptance")
    notice = attest.locator(".notice").inner_text()
    assert "Indirect resellers cannot attest that a customer accepted." in notice
    assert "Ask your indirect provider, Northwind Distribution, to attest" in notice
    assert not attest.locator("form").count()
    assert not page.locator(f"form[action$='/customers/{customer['id']}/attest']").count()
    assert not page.get_by_label("Date of acceptance").count()
    assert not button(page, "Attest").count()
    assert button(page, "Create invitation").is_visible()  # inviting is still theirs
    check_page(page)


def _csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([IMPORT_HEADER, *rows])
    return path


def _row(domain: str, company: str, country: str = "US", culture: str = "en-US") -> list[str]:
    language = culture.split("-")[0]
    return [
        domain, company, f"billing@{domain}", culture, language, country, "Ann", "Lee",
        "1 Main Street", "Building 4, Floor 2", "Redmond", "WA", "98052", "+1 425 555 0100",
        "Ann", "Lee", f"ann.lee@{domain}", "+1 425 555 0101",
    ]  # fmt: skip


def test_csv_import_of_500_rows_with_progress_then_bad_rows(
    make_dashboard, open_dashboard, tmp_path
):
    dashboard = make_dashboard(IMPORT_MAX_BYTES="200000")
    many = _csv(
        tmp_path / "customers.csv",
        [_row(f"bulk{n:03}.example.test", f"Bulk {n:03} Trading") for n in range(500)],
    )
    # More than the 64 KiB other forms may send, less than the import's own limit.
    assert 64 * 1024 < many.stat().st_size < 200_000
    page = open_dashboard(dashboard)
    sign_in(page, dashboard, dashboard.user(dashboard.fabrikam(), ADMIN))
    press(page, page.get_by_role("navigation").get_by_role("link", name="Import"))
    assert heading(page) == "Import customers"
    assert page.locator("#import-progress").is_hidden()
    check_page(page)

    page.get_by_label("CSV file").set_input_files(many)
    # Every value the bar takes, as the script sets it.
    page.evaluate(
        """() => {
            window.progressValues = [];
            const bar = document.getElementById("progress");
            new MutationObserver(() => window.progressValues.push(bar.value))
                .observe(bar, {attributes: true, attributeFilter: ["value"]});
        }"""
    )
    started = datetime.now(UTC)
    button(page, "Import").click()
    assert button(page, "Import").is_disabled()  # no second import on top while it runs
    progress = page.locator("#progress")
    # Part-way: polled while the import runs, the bar stands between none and all of the rows
    # (the observer's record covers a value the polling would have missed between two looks).
    page.wait_for_function(
        """() => { const bar = document.getElementById("progress");
                   return (bar.max === 500 && bar.value > 0 && bar.value < 500)
                       || window.progressValues.some((value) => value > 0 && value < 500); }""",
        polling=50,
    )
    page.get_by_text("500 of 500 rows done").wait_for(timeout=300_000)
    took = datetime.now(UTC) - started
    page.get_by_text("500 created, 0 with problems").wait_for()
    assert progress.get_attribute("value") == "500"
    assert progress.get_attribute("max") == "500"
    seen = page.evaluate("window.progressValues")
    assert seen == sorted(seen), seen
    assert [v for v in seen if 0 < v < 500], seen
    assert seen[-1] == 500
    assert page.get_by_role("status").inner_text() == "500 of 500 rows done"

    report = page.locator("#report-rows tr")
    assert report.count() == 500
    lines = page.locator("#report-rows tr td:first-child").all_inner_texts()
    assert lines == [str(n) for n in range(2, 502)]
    assert set(page.locator("#report-rows tr td:nth-child(3)").all_inner_texts()) == {
        "Customer created"
    }
    assert report.nth(0).get_by_role("link").inner_text() == "bulk000.example.test"
    assert report.nth(499).get_by_role("link").inner_text() == "bulk499.example.test"
    assert button(page, "Import").is_enabled()
    check_page(page)
    print(f"500 rows imported in the browser in {took.total_seconds():.1f} s")

    # The link in a row leads to its customer, who has an invitation.
    press(page, report.nth(7).get_by_role("link"))
    assert heading(page) == "Bulk 007 Trading"
    assert state_badge(page) == "Invited"
    visit(page, dashboard.url + "/")
    totals = page.locator("tfoot").inner_text()
    assert totals.split() == ["All", "customers", "500"], totals

    # A file with bad rows: each is reported by its line, the good ones are kept.
    mixed = _csv(
        tmp_path / "mixed.csv",
        [
            _row("good1.example.test", "Good One"),  # line 2
            _row("not a domain", "Bad Domain"),  # 3
            _row("good2.example.test", "Good Two", "DE", "de-DE"),  # 4
            _row("nowhere.example.test", "No Country", country="XX"),  # 5
            _row("bulk042.example.test", "Taken"),  # 6: imported above
            _row("good3.example.test", ""),  # 7: no company name
            _row("good4.example.test", "Good Four"),  # 8
        ],
    )
    visit(page, dashboard.url + "/import")
    page.get_by_label("CSV file").set_input_files(mixed)
    button(page, "Import").click()
    page.get_by_text("7 of 7 rows done").wait_for()
    page.get_by_text("3 created, 4 with problems").wait_for()
    results = {
        int(row.locator("td").nth(0).inner_text()): row.locator("td").nth(2)
        for row in page.locator("#report-rows tr").all()
    }
    assert sorted(results) == [2, 3, 4, 5, 6, 7, 8]
    assert [line for line, cell in results.items() if cell.inner_text() == "Customer created"] == [
        2,
        4,
        8,
    ]
    problems = {line: results[line].locator(".problem").inner_text() for line in (3, 5, 6, 7)}
    assert all(problems.values()), problems
    assert "domain" in problems[3].lower(), problems
    assert "country" in problems[5].lower(), problems
    assert "already" in problems[6].lower(), problems
    assert "companyname" in problems[7].lower().replace(" ", ""), problems
    check_page(page)

    # A file that cannot be read at all is refused as a whole, in words.
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("name,city\nContoso,Redmond\n", encoding="utf-8")
    visit(page, dashboard.url + "/import")
    page.get_by_label("CSV file").set_input_files(wrong)
    button(page, "Import").click()
    message = page.get_by_role("alert")
    message.get_by_text("the header row lacks the columns").wait_for()
    assert "domain, companyName" in message.inner_text()
    check_page(page)

    # So is a file larger than the import takes, with the server's words, not the script's.
    huge = _csv(tmp_path / "huge.csv", [_row(f"h{n}.example.test", "Huge") for n in range(1200)])
    assert huge.stat().st_size > 200_000
    page.get_by_label("CSV file").set_input_files(huge)
    button(page, "Import").click()
    page.get_by_role("alert").get_by_text("Too much data").wait_for()
    assert "The form sent more data than the portal accepts." in (
        page.get_by_role("alert").inner_text()
    )
    assert page.locator("#report-rows tr").count() == 0
    check_page(page)


def test_overview_draws_both_charts(dashboard, open_dashboard):
    fabrikam = dashboard.fabrikam()
    for n in range(2):
        fabrikam.customer(company_name=f"Waiting {n}", domain=f"waiting{n}.example.test")
    invited = fabrikam.customer(company_name="Invited Co", domain="invited.example.test")
    status, _ = fabrikam.api.call("POST", f"/v1/customers/{invited['id']}/invitations", {})
    assert status == 201
    done = fabrikam.customer(company_name="Done Co", domain="done.example.test")
    status, _ = fabrikam.api.call(
        "POST",
        f"/v1/customers/{done['id']}/agreements",
        {
            "primaryContact": {"firstName": "Tania", "lastName": "Carr", "email": "t@done.test"},
            "templateId": MCA,
            "dateAgreed": "2026-01-02T00:00:00Z",
            "type": "MicrosoftCustomerAgreement",
        },
    )
    assert status == 201

    page = open_dashboard(dashboard)
    sign_in(page, dashboard, dashboard.user(fabrikam, ADMIN))
    charts = page.locator("svg.chart")
    assert charts.count() == 2
    funnel = page.get_by_role("img", name="Customers at each step")
    weekly = page.get_by_role("img", name="Acceptances recorded in each of the last twelve weeks")
    for chart in (funnel, weekly):
        assert chart.is_visible()
        box = chart.bounding_box()
        assert box is not None
        assert box["width"] > 100, box
        assert box["height"] > 50, box
    assert funnel.locator("> title").text_content() == "Customers at each step"
    assert weekly.locator("> title").text_content() == (
        "Acceptances recorded in each of the last twelve weeks"
    )

    # One bar per step, each titled with its count; longer for more customers.
    bars = {
        rect.locator("title").text_content(): rect.bounding_box()
        for rect in funnel.locator("rect").all()
    }
    assert set(bars) == {
        "Not invited: 2", "Invited: 1", "Link opened: 0", "Signed in: 0",
        "Accepted: 0", "Attested: 1",
    }  # fmt: skip
    assert bars["Not invited: 2"]["width"] == pytest.approx(2 * bars["Invited: 1"]["width"], 0.05)
    assert bars["Invited: 1"]["width"] > 10
    assert bars["Attested: 1"]["width"] == pytest.approx(bars["Invited: 1"]["width"], 0.05)
    assert (bars["Accepted: 0"] or {"width": 0})["width"] < 1

    # Twelve weeks; this week's column holds the one attestation just recorded.
    columns = weekly.locator("rect")
    assert columns.count() == 12
    titles = [str(rect.locator("title").text_content()) for rect in columns.all()]
    assert [t.rsplit(": ", 1)[1] for t in titles] == ["0"] * 11 + ["1"]
    last = columns.nth(11).bounding_box()
    assert last is not None
    assert last["height"] > 10
    assert last["width"] > 10
    check_page(page)

    # The funnel's table leads to the customers at a step.
    press(page, page.get_by_role("link", name="Not invited", exact=True))
    assert page.locator("table.customers tbody tr").count() == 2
    check_page(page)


def test_the_dashboard_fits_a_phone(dashboard, open_dashboard):
    """At 375 px no dashboard page scrolls sideways: the menu wraps, and a wide table scrolls
    within itself."""
    fabrikam = dashboard.fabrikam()
    email = dashboard.user(fabrikam, ADMIN)
    customer = fabrikam.customer(company_name="Kundenvereinbarungsverwaltungsgesellschaft mbH")
    status, invited = fabrikam.api.call("POST", f"/v1/customers/{customer['id']}/invitations", {})
    assert status == 201, invited
    page = open_dashboard(dashboard)
    page.set_viewport_size({"width": 375, "height": 740})
    sign_in(page, dashboard, email)
    pages = ("/", "/customers", f"/customers/{customer['id']}", "/customers/new", "/import")
    invitation = f"/customers/{customer['id']}/invitations/{invited['id']}"
    for path in (*pages, "/relationships", "/webhooks", invitation):
        visit(page, dashboard.url + path)
        wider = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        culprits = page.evaluate(
            """[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right
               > document.documentElement.clientWidth + 1).slice(0, 5).map(e => e.tagName + '.'
               + e.className + ' ' + Math.round(e.getBoundingClientRect().width)).concat(
               [...document.querySelectorAll('body *')].filter(e => e.scrollWidth > e.clientWidth
               + 1 && getComputedStyle(e).overflowX == 'visible').slice(0, 5).map(e => 'sw:'
               + e.tagName + '.' + e.className + ' ' + e.scrollWidth + '/' + e.clientWidth))"""
        )
        assert wider == 0, (path, wider, culprits)


def test_webhooks_add_with_an_error_then_the_secret_once(dashboard, open_dashboard):
    """The Webhooks page: a private address is refused on the form, a public one is added and
    its secret shown once; axe and the page's policy hold on each state."""
    fabrikam = dashboard.fabrikam()
    email = dashboard.user(fabrikam, ADMIN)
    page = open_dashboard(dashboard)
    sign_in(page, dashboard, email)
    visit(page, dashboard.url + "/webhooks")
    check_page(page)
    page.locator("#url").fill("https://10.0.0.7/hooks")
    press(page, button(page, "Add webhook"))
    assert page.locator("#url").get_attribute("aria-invalid") == "true"
    check_page(page)
    page.locator("#url").fill("https://hooks.fabrikam.example/portal")
    page.get_by_label("agreement.accepted").check()
    press(page, button(page, "Add webhook"))
    secret = page.get_by_text("whsec_").first.text_content() or ""
    assert "whsec_" in secret
    check_page(page)
    visit(page, dashboard.url + "/webhooks")
    assert "hooks.fabrikam.example/portal" in page.content()
    assert "whsec_" not in page.content()
    check_page(page)


def test_the_api_reference_renders_within_its_policy(dashboard, open_dashboard):
    """/docs: the vendored Redoc renders the OpenAPI document with the page's CSP in force and
    nothing loaded from elsewhere (the context aborts any other address)."""
    page = open_dashboard(dashboard)
    failed: list[str] = []
    page.on("requestfailed", lambda request: failed.append(request.url))
    visit(page, dashboard.portal.base_url + "/docs")
    page.get_by_role("heading", name="List your customers").first.wait_for()
    assert page.get_by_text("Retries: MS-RequestId").count() >= 1
    blocked = page.evaluate("window.__cspViolations")
    assert blocked == [], blocked
    assert failed == [], failed


def test_the_invitation_screens_actions_are_one_size(dashboard, open_dashboard):
    """Copy, Open in email and See the HTML email sit side by side at the same height."""
    fabrikam = dashboard.fabrikam()
    email = dashboard.user(fabrikam, ADMIN)
    customer = fabrikam.customer()
    status, invited = fabrikam.api.call("POST", f"/v1/customers/{customer['id']}/invitations", {})
    assert status == 201, invited
    page = open_dashboard(dashboard)
    sign_in(page, dashboard, email)
    visit(page, f"{dashboard.url}/customers/{customer['id']}/invitations/{invited['id']}")
    actions = page.locator("main p.actions").first.locator("button:visible, a.button")
    heights = {round(box["height"]) for box in (b.bounding_box() for b in actions.all()) if box}
    assert actions.count() == 3
    assert len(heights) == 1, heights
