"""End to end in headless Chromium: a real ``portal serve``, a real SMTP server, the partner API
over HTTP, and the customer's side in a browser, with axe-core checking every customer page.

Needs Debian's ``chromium`` and ``tests/browser/node_modules`` (axe-core):
``bash tests/setup.sh`` installs both. Playwright drives that Chromium; it never downloads one.
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from click.testing import CliRunner
from playwright.sync_api import Browser, BrowserContext, Page, Route, sync_playwright

from portal import cli
from tests.conftest import SECRET, customer_body
from tests.mailservers import SmtpServer
from tests.test_serve import free_port, stop, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PORTAL = [sys.executable, "-m", "portal.cli"]
CHROMIUM = Path("/usr/bin/chromium")
AXE = Path(__file__).parent / "browser" / "node_modules" / "axe-core" / "axe.min.js"
SETUP = "run `bash tests/setup.sh` (as root) first"
# Without the background-networking flags Chromium keeps calling home on a closed network.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa"]
NEW_PASSWORD = "correct horse battery staple"
MCA = "117a77b0-9360-443b-8795-c6dedc750cf9"


# --- the partner's side: a server, its mail, its API ----------------------------------------------


@dataclass
class Mail:
    """An invitation as it arrived at the SMTP server."""

    message: EmailMessage
    link: str
    user_name: str
    password: str


@dataclass
class Portal:
    """One running ``portal serve``, the SMTP server it sends to, and a partner's API key."""

    base_url: str
    key: str
    smtp: SmtpServer
    log: Path
    #: Addresses of the agreement documents the browser opened (served by a stand-in).
    documents: list[str] = field(default_factory=list)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        request = urllib.request.Request(
            self.base_url + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            with error:
                return error.code, json.loads(error.read() or b"null")

    def get(self, path: str) -> Any:
        status, body = self.call("GET", path)
        assert status == 200, (path, status, body)
        return body

    def invited_customer(self, **changes: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """Create a customer and send it an invitation, as a partner's tool would."""
        changes.setdefault("email", f"billing-{uuid.uuid4().hex[:8]}@contoso.example.test")
        status, customer = self.call("POST", "/v1/customers", customer_body(**changes))
        assert status == 201, customer
        status, invitation = self.call(
            "POST", f"/v1/customers/{customer['id']}/invitations", {"send": True}
        )
        assert status == 201, invitation
        return customer, invitation

    def mail_to(self, address: str, seconds: float = 15) -> EmailMessage:
        """The first message that reached the SMTP server for ``address``."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for message in self.smtp.inbox.messages:
                if address in message["To"]:
                    return message
            time.sleep(0.1)
        raise AssertionError(f"no mail for {address} in {seconds} s:\n{self.log_tail()}")

    def invitation_mail(self, address: str) -> Mail:
        message = self.mail_to(address)
        text = message.get_body(preferencelist=("plain",)).get_content()
        markup = message.get_body(preferencelist=("html",)).get_content()
        links = re.findall(re.escape(self.base_url) + r"/invite/[^\s\"<>]+", text)
        assert len(links) == 1, text
        assert html.escape(links[0]) in markup
        # The HTML body's table holds the user name, then the temporary password.
        cells = [html.unescape(c) for c in re.findall(r"<td[^>]*>([^<]*)</td>", markup)]
        assert len(cells) == 2, markup
        user_name, password = cells
        assert user_name in text
        assert password in text
        return Mail(message, links[0], user_name, password)

    def status(self, customer_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.get(f"/v1/customers/{customer_id}/acceptanceStatus")
        return result

    def is_signed(self, customer_id: str) -> bool:
        path = f"/v1/customers/{customer_id}/directSignedMicrosoftCustomerAgreementStatus"
        answer = self.get(path)
        assert set(answer) == {"isSigned"}, answer
        return bool(answer["isSigned"])

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])


@pytest.fixture
def make_portal(
    database_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Portal]]:
    """Start ``portal serve`` on a free loopback port, sending mail to a real SMTP server, and
    create a partner with ``portal partners create``. Keyword arguments add ``PORTAL_*``
    settings."""
    started: list[tuple[subprocess.Popen[str], Any]] = []

    def make(**settings: str) -> Portal:
        smtp: SmtpServer = request.getfixturevalue("smtp")
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "PORTAL_SECRET_KEY": SECRET,
            "PORTAL_DATABASE_URL": database_url,
            "PORTAL_BASE_URL": base_url,
            "PORTAL_MAIL_SERVER": smtp.host,
            "PORTAL_MAIL_PORT": str(smtp.port),
            "PORTAL_MAIL_TIMEOUT": "2",
            "PORTAL_MAIL_DEFAULT_SENDER": "Portal <portal@example.test>",
            "PORTAL_MAIL_SEND_INTERVAL": "0.2",
            **{f"PORTAL_{name}": value for name, value in settings.items()},
        }
        log = tmp_path / f"serve-{port}.log"
        output = log.open("w")
        process = subprocess.Popen(
            [*PORTAL, "serve", "--port", str(port)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
        )
        started.append((process, output))
        # The partner is made while the server boots; both only need the migrated database.
        made = CliRunner(env=env).invoke(
            cli.main, ["partners", "create", "--name", "Fabrikam", "--kind", "direct", "--json"]
        )
        assert made.exit_code == 0, made.output
        partner = json.loads(made.output)
        portal = Portal(base_url, partner["apiKey"], smtp, log)
        try:
            wait_for(f"{base_url}/v1/openapi.json", process)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{portal.log_tail()}") from exc
        return portal

    yield make
    for process, output in started:
        stop(process)
        output.close()
        # Shown with the captured output when the test failed.
        print(f"--- {output.name} (last lines) ---")
        print("\n".join(Path(output.name).read_text(errors="replace").splitlines()[-40:]))


@pytest.fixture
def portal(make_portal: Callable[..., Portal]) -> Portal:
    """A server with the default settings."""
    return make_portal()


# --- the customer's side: a browser --------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: {SETUP} (it installs Debian's chromium)")
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: {SETUP} (it runs `npm ci` in tests/browser)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def open_browser(
    browser: Browser, make_portal: Callable[..., Portal]
) -> Iterator[Callable[..., Page]]:
    """A new browser profile (context) for a portal. Asking for ``make_portal`` here closes the
    browser before the servers stop."""
    contexts: list[BrowserContext] = []

    def open_page(portal: Portal, locale: str = "en-US") -> Page:
        # bypass_csp: the pages' Content-Security-Policy (script-src 'self') would block the
        # axe-core script the test injects. It is only lifted in this test browser; visit()
        # still checks that each page it opens sends the header.
        context = browser.new_context(bypass_csp=True, locale=locale)
        context.set_default_timeout(10_000)
        contexts.append(context)

        def elsewhere(route: Route) -> None:
            # Nothing leaves the machine. The agreement documents live elsewhere, so a stand-in
            # answers for them and the address the browser asked for is kept.
            url = route.request.url
            if urlsplit(url).hostname == "aka.ms":
                portal.documents.append(url)
                route.fulfill(
                    status=200,
                    content_type="text/html",
                    body="<!DOCTYPE html><html lang=en><title>Document</title><h1>Document</h1>",
                )
            else:
                route.abort()

        context.route(lambda url: not url.startswith(portal.base_url + "/"), elsewhere)
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()


def visit(page: Page, url: str, status: int = 200) -> None:
    response = page.goto(url)
    assert response is not None
    assert response.status == status, (url, response.status)
    assert "script-src 'self'" in response.headers["content-security-policy"]


def assert_accessible(page: Page) -> None:
    """axe-core finds no WCAG 2.x A or AA violation on the page as it is now."""
    page.add_script_tag(path=str(AXE))
    violations = page.evaluate(
        """async (tags) => (await axe.run(document, {
            runOnly: {type: "tag", values: tags}, resultTypes: ["violations"],
        })).violations.map((v) => ({
            id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl,
            nodes: v.nodes.map((n) => ({target: n.target.join(" "), summary: n.failureSummary})),
        }))""",
        WCAG_TAGS,
    )
    report = []
    for violation in violations:
        report.append(f"{violation['id']} ({violation['impact']}): {violation['help']}")
        report.append(f"  {violation['helpUrl']}")
        for node in violation["nodes"]:
            report.append(f"  - {node['target']}")
            report.extend(f"      {line}" for line in (node["summary"] or "").splitlines())
    assert not violations, f"axe on {page.url}:\n" + "\n".join(report)


def heading(page: Page) -> str:
    return page.locator("main h1").inner_text()


def submit(page: Page) -> None:
    page.locator("main form button[type=submit]").click()


def sign_in_from_email(page: Page, mail: Mail) -> None:
    """Open the emailed link, sign in with the emailed credentials, land on the password page."""
    visit(page, mail.link)
    assert page.locator("#user_name").input_value() == mail.user_name
    assert_accessible(page)
    page.locator("#password").fill(mail.password)
    submit(page)
    page.wait_for_url("**/password")


def choose_password(page: Page) -> None:
    assert_accessible(page)
    page.locator("#password").fill(NEW_PASSWORD)
    page.locator("#repeat").fill(NEW_PASSWORD)
    submit(page)
    page.wait_for_url("**/agreement")


def document_links(page: Page) -> list[str]:
    return page.locator("section.agreement a").evaluate_all("links => links.map(a => a.href)")


def open_first_document(page: Page, portal: Portal) -> dict[str, list[str]]:
    """Follow the first "read the agreement" link; return the query of the address it opened."""
    page.locator("section.agreement a").first.click()
    page.wait_for_url("https://aka.ms/**")
    assert portal.documents, "the browser did not open the document"
    opened = portal.documents[-1]
    page.go_back()
    page.wait_for_url("**/agreement")
    return parse_qs(urlsplit(opened).query)


def accept(page: Page, first: str = "Ana", last: str = "Silva", email: str = "") -> None:
    page.locator("#first_name").fill(first)
    page.locator("#last_name").fill(last)
    page.locator("#email").fill(email or "ana@contoso.example.test")
    page.locator("#accept").check()
    submit(page)
    page.wait_for_url("**/account?accepted=1")


# --- the tests ------------------------------------------------------------------------------------


def test_whole_journey_from_the_emailed_link_to_is_signed(portal, open_browser):
    customer, invitation = portal.invited_customer(country="US", culture="en-US", language="en")
    assert portal.status(customer["id"])["state"] == "invited"
    assert not portal.is_signed(customer["id"])
    mail = portal.invitation_mail(invitation["to"])
    assert mail.message["Subject"] == invitation["subject"]
    assert (mail.user_name, mail.password) == (invitation["userName"], invitation["password"])

    page = open_browser(portal)
    sign_in_from_email(page, mail)
    assert portal.status(customer["id"])["state"] == "signed-in"
    assert heading(page) == "Choose your own password"
    choose_password(page)

    assert heading(page) == "Accept the Microsoft Customer Agreement"
    assert_accessible(page)
    assert page.locator("#first_name").input_value() == "Tania"  # the primary contact
    query = open_first_document(page, portal)
    assert (query["country"], query["language"]) == (["US"], ["en-US"])
    user_agent = page.evaluate("navigator.userAgent")
    accept(page, "Ana", "Silva", "ana@contoso.example.test")
    assert heading(page) == "Thank you: the agreement is accepted"
    assert "Ana Silva" in page.locator("main").inner_text()
    assert "Fabrikam, reseller, since" in page.locator("ul.partners").inner_text()
    assert_accessible(page)

    assert portal.is_signed(customer["id"])
    status = portal.status(customer["id"])
    assert status["state"] == "accepted"
    assert (status["linkOpened"], status["signedIn"]) == (True, True)
    direct = status["acceptance"]
    assert direct["templateId"] == MCA
    assert direct["type"] == "MicrosoftCustomerAgreement"
    assert (direct["country"], direct["language"]) == ("US", "en-US")
    assert direct["evidence"] == {"ipAddress": "127.0.0.1", "userAgent": user_agent}
    assert direct["primaryContact"]["firstName"] == "Ana"
    assert direct["primaryContact"]["email"] == "ana@contoso.example.test"
    assert direct["userId"] == mail.user_name
    confirmation = portal.mail_to("ana@contoso.example.test")
    assert "Microsoft Customer Agreement" in confirmation.get_body(("plain",)).get_content()

    # The link still lands, now on what was accepted.
    visit(page, mail.link)
    assert heading(page) == "The agreement has already been accepted"
    assert_accessible(page)


def test_german_customer_reads_the_german_document(portal, open_browser):
    customer, invitation = portal.invited_customer(country="DE", culture="de-DE", language="de")
    mail = portal.invitation_mail(invitation["to"])
    page = open_browser(portal, locale="de-DE")
    sign_in_from_email(page, mail)
    choose_password(page)

    # German when the portal speaks it, its English fallback until then; never missing.
    assert page.locator("html").get_attribute("lang") in {"de", "de-DE", "en"}
    links = document_links(page)
    assert links
    assert all("country=DE" in link and "language=de-DE" in link for link in links), links
    assert not page.locator("section.agreement .notice").count()  # no English fallback notice
    assert_accessible(page)
    query = open_first_document(page, portal)
    assert (query["country"], query["language"]) == (["DE"], ["de-DE"])
    accept(page)
    assert_accessible(page)

    direct = portal.status(customer["id"])["acceptance"]
    assert (direct["country"], direct["language"]) == ("DE", "de-DE")
    assert portal.is_signed(customer["id"])


def test_german_customer_sees_german_pages(portal, open_browser):
    _, invitation = portal.invited_customer(country="DE", culture="de-DE", language="de")
    mail = portal.invitation_mail(invitation["to"])
    assert "bittet" in mail.message["Subject"]  # the email is German too
    # The browser asks for English: the culture on the customer record wins.
    page = open_browser(portal, locale="en-US")
    sign_in_from_email(page, mail)
    choose_password(page)
    assert page.locator("html").get_attribute("lang") == "de"
    assert heading(page) == "Microsoft-Kundenvereinbarung annehmen"
    document = page.get_by_role("link", name="Vereinbarung lesen")
    assert "language=de-DE" in (document.get_attribute("href") or "")
    assert_accessible(page)


def test_expired_link_explains_what_to_do_and_the_password_is_dead(make_portal, open_browser):
    portal = make_portal(INVITATION_MAX_AGE="2")
    customer, invitation = portal.invited_customer()
    mail = portal.invitation_mail(invitation["to"])
    time.sleep(3.5)  # past the two seconds, whole seconds as the signed timestamp counts them

    page = open_browser(portal)
    visit(page, mail.link, status=410)
    assert heading(page) == "This invitation link has expired"
    assert "Fabrikam" in page.locator("main").inner_text()  # who to ask for a new one
    assert not page.locator("main form").count()
    assert_accessible(page)

    visit(page, portal.base_url + "/signin")
    page.locator("#user_name").fill(mail.user_name)
    page.locator("#password").fill(mail.password)
    submit(page)
    page.wait_for_load_state()
    assert urlsplit(page.url).path == "/signin"
    assert page.get_by_role("alert").inner_text() == "The user name or password is not right."
    assert_accessible(page)
    status = portal.status(customer["id"])
    assert (status["state"], status["signedIn"]) == ("invited", False)


def test_tampered_link_is_refused_and_the_real_one_still_works(portal, open_browser):
    customer, invitation = portal.invited_customer()
    mail = portal.invitation_mail(invitation["to"])
    prefix, token = mail.link.split("/invite/")
    middle = len(token) // 2
    if token[middle] == ".":
        middle += 1
    changed = "B" if token[middle] == "A" else "A"
    tampered = f"{prefix}/invite/{token[:middle]}{changed}{token[middle + 1 :]}"

    page = open_browser(portal)
    visit(page, tampered, status=404)
    assert heading(page) == "This link is not valid"
    assert not page.locator("main form").count()
    assert_accessible(page)
    assert portal.status(customer["id"])["state"] == "invited"  # not even "opened"

    sign_in_from_email(page, mail)
    assert portal.status(customer["id"])["state"] == "signed-in"


def test_mail_scanner_opening_the_link_changes_nothing(portal, open_browser):
    customer, invitation = portal.invited_customer()
    mail = portal.invitation_mail(invitation["to"])
    # What a mail scanner does: a plain GET, no cookies, no form.
    with urllib.request.urlopen(mail.link, timeout=10) as scanned:
        assert scanned.status == 200

    status = portal.status(customer["id"])
    assert status["state"] == "link-opened"
    assert (status["signedIn"], status["acceptance"], status["agreements"]) == (False, None, [])
    assert not portal.is_signed(customer["id"])
    (listed,) = portal.get(f"/v1/customers/{customer['id']}/invitations")["items"]
    assert listed["status"] in {"sending", "sent"}  # still open: not used up by the GET
    assert listed["openedAt"] is not None

    page = open_browser(portal)
    sign_in_from_email(page, mail)  # the emailed password still works
    choose_password(page)
    accept(page)
    assert portal.is_signed(customer["id"])


def test_error_and_notice_pages_are_accessible(portal, open_browser):
    customer, invitation = portal.invited_customer()
    first = portal.invitation_mail(invitation["to"])
    page = open_browser(portal)

    visit(page, first.link)
    page.locator("#password").fill("not the password at all")
    submit(page)
    page.wait_for_load_state()
    assert page.get_by_role("alert").inner_text() == "The user name or password is not right."
    assert page.locator("#password").get_attribute("aria-invalid") == "true"
    assert_accessible(page)

    sign_in_from_email(page, first)
    page.locator("#password").fill(NEW_PASSWORD)
    page.locator("#repeat").fill(NEW_PASSWORD + " again")
    submit(page)
    page.wait_for_load_state()
    assert page.get_by_role("alert").inner_text() == "The two passwords are not the same."
    assert_accessible(page)

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/signin?signed_out=1")
    assert page.get_by_role("status").inner_text() == "You have signed out."
    assert_accessible(page)

    # A second invitation replaces the first; withdrawing it leaves a withdrawn link.
    status, second = portal.call(
        "POST", f"/v1/customers/{customer['id']}/invitations", {"send": False}
    )
    assert status == 201, second
    visit(page, first.link, status=410)
    assert heading(page) == "A newer invitation replaces this one"
    assert_accessible(page)
    path = f"/v1/customers/{customer['id']}/invitations/{second['id']}"
    assert portal.call("DELETE", path)[0] in {200, 204}
    visit(page, second["url"], status=410)
    assert heading(page) == "This invitation was withdrawn"
    assert_accessible(page)

    visit(page, portal.base_url + "/no-such-page", status=404)
    assert heading(page) == "Page not found"
    assert_accessible(page)


def scrolls_sideways(page: Page) -> int:
    """How many CSS pixels the page is wider than the window (0: it fits)."""
    return int(
        page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    )


@pytest.mark.parametrize(("culture", "language"), [("de-DE", "de"), ("ar-SA", "ar")])
def test_the_journey_fits_a_phone(portal, open_browser, culture, language):
    """Customers open the emailed link on a phone more often than not: at 375 px no page of the
    journey scrolls sideways (the header's language picker wraps)."""
    country = culture.split("-")[1]
    _, invitation = portal.invited_customer(country=country, culture=culture, language=language)
    mail = portal.invitation_mail(invitation["to"])
    page = open_browser(portal)
    page.set_viewport_size({"width": 375, "height": 740})
    visit(page, mail.link)
    assert scrolls_sideways(page) == 0, "invitation page"
    page.locator("#password").fill(mail.password)
    submit(page)
    page.wait_for_url("**/password")
    assert scrolls_sideways(page) == 0, "password page"
    choose_password(page)
    assert scrolls_sideways(page) == 0, "agreement page"
    accept(page)
    assert scrolls_sideways(page) == 0, "thank-you page"
