"""Every redirect whose target comes from the request stays on the site: one function decides
(``redirects.local_target``), and the sign-in forms (customer and dashboard) and the language
switch use it. No input reaches a header unchecked: hostile targets never give a 500."""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest

from portal.web.redirects import local_target
from tests import test_dashboard as dash
from tests.test_pages import csrf, invited, sign_in_from_link

SITE = "https://portal.example.test/"

#: Targets a browser would take off the site, or that could not go into a header as they are.
HOSTILE = [
    "//evil.example",
    "///evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "/\t/evil.example",
    "/%09/evil.example",
    "/\n/evil.example",
    "/%0a/evil.example",
    "/%2f/evil.example",
    "/%2F%2Fevil.example",
    "https://evil.example/",
    "HTTPS://evil.example",
    "javascript:alert(1)",
    "java\tscript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "evil.example",
    "/..//evil.example",
    "/%2e%2e//evil.example",
    "/a/../..//evil.example",
    "/dashboard\r\nX-Injected: 1",
    "/dashboard%0D%0AX-Injected:%201",
    "/\u2028/evil.example",
    "/\x85/evil.example",
    "/" + "a" * 5000,
    "",
]


def stays_on_site(location: str) -> bool:
    """As a browser reads a Location: tabs and line breaks dropped, resolved against the page."""
    cleaned = re.sub(r"[\t\r\n]", "", location)
    resolved = urlsplit(urljoin(SITE, cleaned))
    return resolved.scheme == "https" and resolved.netloc == "portal.example.test"


@pytest.mark.parametrize("target", HOSTILE)
def test_hostile_targets_fall_back(target):
    assert local_target(target, "/home") == "/home"
    assert local_target(target, "/dashboard/", within="/dashboard") == "/dashboard/"


@pytest.mark.parametrize(
    ("target", "within", "expected"),
    [
        ("/account", "/", "/account"),
        ("/dashboard/customers?q=a%20b&state=invited", "/dashboard", None),
        ("/dashboard/?", "/dashboard", "/dashboard/"),  # no stray "?"
        ("/dashboard", "/dashboard", "/dashboard"),
        ("/dashboardx", "/dashboard", "DEFAULT"),
        ("/dashboard/../signin", "/dashboard", "DEFAULT"),
        ("/dashboard/../signin", "/", "/signin"),
        ("/a/./b/../c/", "/", "/a/c/"),
        ("/agreement#top", "/", "/agreement"),
        ("/überblick?wer=Zoë", "/", "/%C3%BCberblick?wer=Zo%C3%AB"),
    ],
)
def test_site_paths_are_kept_and_made_plain(target, within, expected):
    result = local_target(target, "DEFAULT", within=within)
    assert result == (target if expected is None else expected)
    assert result.isascii()


def form_next(page: Any) -> str:
    """The sign-in form's ``next`` (the language switch in the header has one too, first)."""
    found = re.findall(r'name="next" value="([^"]*)"', page.get_data(as_text=True))
    return html.unescape(found[-1])


def location(response: Any) -> str:
    assert response.status_code in (302, 303), response.status_code
    value: str = response.headers["Location"]
    assert stays_on_site(value), value
    return value


@pytest.mark.parametrize("target", HOSTILE)
def test_the_language_switch_never_leaves_the_site(client, target):
    page = client.get("/signin")
    response = client.post(
        "/language", data={"csrf_token": csrf(page), "lang": "de", "next": target}
    )
    assert location(response) == "/"


def test_the_language_switch_returns_to_the_page_it_was_on_made_plain(client):
    """The page echoes its own address into the switch: a crafted address comes back plain."""
    page = client.get("/%09/evil.example")  # a 404 page, which has the switch too
    echoed = re.search(r'name="next" value="([^"]*)"', page.get_data(as_text=True)).group(1)
    response = client.post(
        "/language", data={"csrf_token": csrf(page), "lang": "de", "next": echoed}
    )
    assert location(response) == "/"
    page = client.get("/signin?signed_out=1")
    echoed = re.search(r'name="next" value="([^"]*)"', page.get_data(as_text=True)).group(1)
    assert echoed == "/signin?signed_out=1"
    response = client.post(
        "/language", data={"csrf_token": csrf(page), "lang": "de", "next": echoed}
    )
    assert location(response) == "/signin?signed_out=1"


@pytest.mark.parametrize("target", HOSTILE)
def test_customer_sign_in_never_sends_elsewhere(app, api, target):
    _, made = invited(api)
    browser = app.test_client()
    page = browser.get("/signin", query_string={"next": target})
    assert page.status_code == 200
    response = browser.post(
        "/signin",
        data={
            "csrf_token": csrf(page),
            "user_name": made["userName"],
            "password": made["password"],
            "next": target,
        },
    )
    assert location(response) == "/password"


def test_customer_sign_in_returns_to_the_page_asked_for(app, api, client):
    from tests.test_pages import NEW_PASSWORD, change_password

    _, made = invited(api)
    sign_in_from_link(client, made)
    change_password(client)
    client.post("/signout", data={"csrf_token": csrf(client.get("/signin"))})
    asked = client.get("/agreement")
    assert location(asked).startswith("/signin?next=")
    page = client.get(asked.headers["Location"])
    response = client.post(
        "/signin",
        data={
            "csrf_token": csrf(page),
            "user_name": made["userName"],
            "password": NEW_PASSWORD,
            "next": form_next(page),
        },
    )
    assert location(response) == "/agreement"


def post_dashboard_sign_in(browser: Any, page: Any, next_: str) -> Any:
    """Sign in as Avery from the sign-in ``page``, asking to go to ``next_``."""
    return browser.post(
        "/dashboard/signin",
        data={
            "csrf_token": dash.csrf(page),
            "email": "avery@fabrikam.example.test",
            "password": dash.PASSWORD,
            "next": next_,
        },
    )


@pytest.mark.parametrize("target", HOSTILE)
def test_dashboard_sign_in_never_sends_elsewhere(app, api, target):
    dash.add_user(app, api.partner_id, "avery@fabrikam.example.test")
    browser = app.test_client()
    page = browser.get("/dashboard/signin", query_string={"next": target})
    assert page.status_code == 200
    assert location(post_dashboard_sign_in(browser, page, target)) == "/dashboard/"


def test_the_header_injection_of_the_finding_is_a_plain_page(client):
    response = client.get("/dashboard/signin?next=/dashboard%0D%0AX-Injected:%201")
    assert response.status_code == 200
    assert "X-Injected" not in response.headers


def test_a_dashboard_page_sends_to_sign_in_and_back_without_a_stray_question_mark(app, api):
    dash.add_user(app, api.partner_id, "avery@fabrikam.example.test")
    browser = app.test_client()
    assert location(browser.get("/dashboard/")) == "/dashboard/signin?next=/dashboard/"
    asked = location(browser.get("/dashboard/customers?q=contoso"))
    assert asked == "/dashboard/signin?next=/dashboard/customers?q%3Dcontoso"
    page = browser.get(asked)
    response = post_dashboard_sign_in(browser, page, form_next(page))
    assert location(response) == "/dashboard/customers?q=contoso"
