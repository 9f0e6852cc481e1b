"""The links this issue added, tried as SECURITY.md tries links: a relationship request's (the
partner's, and a personal one) and a password reset's. Damaged, foreign or confused tokens get a
4xx page, never a 5xx; a fallback key still verifies; names are shown literally."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

from portal.core import tokens
from tests.conftest import SECRET
from tests.test_pages import invited
from tests.test_relationship_requests import personal, request_path


def damaged(token: str) -> list[str]:
    """Each character flipped, dropped, and one appended."""
    variants = [token + "A", token[:-1]]
    for index, character in enumerate(token):
        other = "B" if character != "B" else "C"
        variants.append(token[:index] + other + token[index + 1 :])
        variants.append(token[:index] + token[index + 1 :])
    return [v for v in variants if v != token]


def test_every_damaged_request_link_gets_a_4xx_page(client, make_api):
    partner = make_api(name="Second Partner Ltd")
    for path in (request_path(partner), urlsplit(personal(partner)["url"]).path):
        token = path.removeprefix("/relationship/")
        for variant in damaged(token):
            status = client.get(f"/relationship/{variant}").status_code
            assert 400 <= status < 500, (variant, status)
        assert client.get(path).status_code == 200


@pytest.mark.parametrize("token", ["", "A" * 10_000, "%00", "caf%C3%A9", "..", "a.b.c"])
def test_empty_huge_nul_or_odd_request_tokens_are_4xx(client, token):
    status = client.get(f"/relationship/{token}").status_code
    assert 400 <= status < 500, status
    status = client.get(f"/password/reset/{token}").status_code
    assert 400 <= status < 500, status


def test_a_token_of_another_purpose_is_refused(app, client, api):
    _, made = invited(api)
    invitation = urlsplit(made["url"]).path.removeprefix("/invite/")
    link = request_path(api).removeprefix("/relationship/")
    assert client.get(f"/relationship/{invitation}").status_code == 404
    assert client.get(f"/password/reset/{link}").status_code == 410
    assert client.get(f"/invite/{link}").status_code == 404
    reset = tokens.password_reset_token(SECRET, [], made["customerId"], 0)
    assert client.get(f"/relationship/{reset}").status_code == 404


def test_a_link_signed_with_a_fallback_key_still_works(make_app, make_api):
    old = "an older secret key of at least thirty-two characters"
    partner = make_api(name="Second Partner Ltd")
    signed_before = tokens.relationship_request_token(old, [], partner.partner_id, 0)
    rotated = make_app(SECRET_KEY_FALLBACKS=[old]).test_client()
    assert rotated.get(f"/relationship/{signed_before}").status_code == 200
    unrotated = make_app().test_client()
    assert unrotated.get(f"/relationship/{signed_before}").status_code == 404


@pytest.mark.parametrize(
    "name", ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "{{7*7}}"]
)
def test_hostile_partner_names_are_shown_literally(client, make_api, name):
    partner = make_api(name=name)
    escaped = name.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    escaped = escaped.replace('"', "&#34;")
    page = client.get(request_path(partner)).get_data(as_text=True)
    assert escaped in page
    if name != escaped:
        assert name not in page
    assert ">49<" not in page
    made: Any = personal(partner)
    assert escaped in made["htmlBody"]
    assert name in made["textBody"]  # plain text: literally
    assert name in made["subject"]  # a header: encoded by the MIME layer, not escaped
