"""The partner dashboard: sign-in, customers, invitations, attestation, evidence, isolation."""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from portal.core import db
from portal.core.models import (
    AgreementAcceptance,
    Customer,
    Event,
    EventKind,
    Invitation,
    OutboxMessage,
    Partner,
    PartnerKind,
    Progress,
    UserRole,
)
from portal.domain import events, reports, users
from portal.mail import emails, sending
from tests.conftest import relationship_of

PASSWORD = "correct horse battery staple"


def csrf(response: Any) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', response.get_data(as_text=True))
    assert match, response.get_data(as_text=True)[:500]
    return match.group(1)


def add_user(app: Any, partner_id: str, email: str, role: UserRole = UserRole.ADMIN_AGENT) -> None:
    with app.app_context():
        session = db.session()
        partner = session.get(Partner, partner_id)
        users.create_user(session, partner, email, PASSWORD, role, name="Avery Admin")
        session.commit()


def sign_in(client: Any, email: str, password: str = PASSWORD) -> Any:
    page = client.get("/dashboard/signin")
    return client.post(
        "/dashboard/signin",
        data={"csrf_token": csrf(page), "email": email, "password": password},
    )


@pytest.fixture
def partner(app: Any, api: Any, client: Any) -> Any:
    """A direct-bill partner with a signed-in admin agent."""
    add_user(app, api.partner_id, "admin@fabrikam.example.test")
    assert sign_in(client, "admin@fabrikam.example.test").status_code == 302
    return api


def count(app: Any, model: Any) -> int:
    with app.app_context():
        return int(db.session().scalar(select(func.count()).select_from(model)) or 0)


NEW_CUSTOMER = {
    "company_name": "Contoso Web",
    "domain": "contoso-web.example.test",
    "email": "billing@contoso-web.example.test",
    "culture": "de-DE",
    "country": "DE",
    "first_name": "Jonas",
    "last_name": "Weber",
    "contact_email": "jonas@contoso-web.example.test",
}


# --- sign-in -------------------------------------------------------------------------------------


def test_pages_need_a_signed_in_user(client: Any) -> None:
    for path in ("/dashboard/", "/dashboard/customers", "/dashboard/customers/new"):
        response = client.get(path)
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/dashboard/signin?next=")


def test_sign_in_renews_the_session_and_sign_out_ends_it(app: Any, api: Any, client: Any) -> None:
    add_user(app, api.partner_id, "admin@fabrikam.example.test")
    assert sign_in(client, "Admin@Fabrikam.example.test").status_code == 302
    overview = client.get("/dashboard/")
    assert overview.status_code == 200
    assert "Fabrikam" in overview.get_data(as_text=True)
    with client.session_transaction() as cookie:
        stolen = dict(cookie)
    client.post("/dashboard/signout", data={"csrf_token": csrf(overview)})
    assert client.get("/dashboard/").status_code == 302
    # The old cookie is dead on the server too.
    with client.session_transaction() as cookie:
        cookie.update(stolen)
    assert client.get("/dashboard/").status_code == 302


def test_unknown_email_and_wrong_password_get_the_same_answer(
    app: Any, api: Any, client: Any
) -> None:
    add_user(app, api.partner_id, "admin@fabrikam.example.test")
    unknown = sign_in(client, "nobody@fabrikam.example.test")
    wrong = sign_in(client, "admin@fabrikam.example.test", "not the password at all")
    assert unknown.status_code == wrong.status_code == 401
    assert "The email or password is not right." in unknown.get_data(as_text=True)
    assert "The email or password is not right." in wrong.get_data(as_text=True)


def test_sign_in_is_rate_limited_per_account(app: Any, api: Any, client: Any) -> None:
    add_user(app, api.partner_id, "admin@fabrikam.example.test")
    add_user(app, api.partner_id, "other@fabrikam.example.test")
    statuses = [
        sign_in(client, "admin@fabrikam.example.test", "wrong password here").status_code
        for _ in range(6)
    ]
    assert statuses[:5] == [401] * 5
    assert statuses[5] == 429
    # The right password is refused too while the account is throttled ...
    assert sign_in(client, "admin@fabrikam.example.test").status_code == 429
    # ... and another account is unaffected.
    assert sign_in(client, "other@fabrikam.example.test").status_code == 302


def test_form_without_csrf_token_writes_nothing(app: Any, partner: Any, client: Any) -> None:
    before = count(app, Customer)
    response = client.post("/dashboard/customers/new", data=NEW_CUSTOMER)
    assert response.status_code == 400
    stale = client.post("/dashboard/customers/new", data={**NEW_CUSTOMER, "csrf_token": "x.y.z"})
    assert stale.status_code == 400
    assert count(app, Customer) == before


def test_users_command_creates_a_user_who_can_sign_in(
    app: Any, api: Any, runner: Any, client: Any
) -> None:
    from portal.cli import main

    result = runner.invoke(
        main,
        [
            "partners",
            "users",
            "create",
            api.partner_id,
            "sales@fabrikam.example.test",
            "--role",
            "sales-agent",
            "--json",
        ],
        env={"PORTAL_NEW_USER_PASSWORD": PASSWORD},
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["role"] == "sales-agent"
    again = runner.invoke(
        main,
        ["partners", "users", "create", api.partner_id, "sales@fabrikam.example.test"],
        env={"PORTAL_NEW_USER_PASSWORD": PASSWORD},
    )
    assert again.exit_code != 0
    assert "already exists" in again.output
    short = runner.invoke(
        main,
        ["partners", "users", "create", api.partner_id, "x@fabrikam.example.test"],
        env={"PORTAL_NEW_USER_PASSWORD": "short"},
    )
    assert short.exit_code != 0
    assert "password" in short.output
    assert sign_in(client, "sales@fabrikam.example.test").status_code == 302


# --- customers -----------------------------------------------------------------------------------


def test_new_customer_shows_its_credentials_once(app: Any, partner: Any, client: Any) -> None:
    form = client.get("/dashboard/customers/new")
    response = client.post(
        "/dashboard/customers/new", data={**NEW_CUSTOMER, "csrf_token": csrf(form)}
    )
    assert response.status_code == 201
    text = response.get_data(as_text=True)
    assert response.headers["Cache-Control"] == "no-store"
    assert "admin@contoso-web.example.test" in text
    password = re.search(r'<code id="password">([^<]+)</code>', text)
    assert password
    assert "only time the password is shown" in text
    with app.app_context():
        customer = db.session().scalars(select(Customer)).one()
        assert customer.creator_id == partner.partner_id
        assert customer.language == "de"
        assert relationship_of(customer.id, partner.partner_id).progress is Progress.NOT_INVITED
        page = client.get(f"/dashboard/customers/{customer.id}").get_data(as_text=True)
    assert password.group(1) not in page


def test_new_customer_form_names_each_problem_and_writes_nothing(
    app: Any, partner: Any, client: Any
) -> None:
    form = client.get("/dashboard/customers/new")
    bad = {**NEW_CUSTOMER, "domain": "not a domain", "email": "nope", "company_name": ""}
    response = client.post("/dashboard/customers/new", data={**bad, "csrf_token": csrf(form)})
    assert response.status_code == 400
    text = response.get_data(as_text=True)
    assert 'id="domain-problem"' in text
    assert 'id="email-problem"' in text
    assert 'id="company_name-problem"' in text
    assert count(app, Customer) == 0
    # A taken domain gets its own message.
    partner.create_customer(domain="taken.example.test")
    taken = {**NEW_CUSTOMER, "domain": "taken.example.test", "csrf_token": csrf(form)}
    response = client.post("/dashboard/customers/new", data=taken)
    assert response.status_code == 409
    assert "already exists" in response.get_data(as_text=True)
    assert count(app, Customer) == 1


def test_customer_list_searches_filters_and_pages(app: Any, partner: Any, client: Any) -> None:
    made = [
        partner.create_customer(company_name=f"Company {n:02}", domain=f"c{n:02}.example.test")
        for n in range(7)
    ]
    page = client.get("/dashboard/customers?q=C03.EXAMPLE").get_data(as_text=True)
    assert "Company 03" in page
    assert "Company 04" not in page
    # Pages of 3: newest first, no row twice, none lost.
    seen: list[str] = []
    with app.app_context():
        cursor = ""
        while True:
            result = reports.customer_page(db.session(), partner.partner_id, cursor=cursor, size=3)
            seen += [row.customer.company_name for row in result.rows]
            if result.next_cursor is None:
                break
            cursor = result.next_cursor
    assert seen == [f"Company {n:02}" for n in reversed(range(7))]
    # Filter by state.
    partner.post(f"/v1/customers/{made[2]['id']}/invitations", json={})
    invited = client.get("/dashboard/customers?state=invited").get_data(as_text=True)
    assert "Company 02" in invited
    assert "Company 03" not in invited
    assert "Company 03" in client.get("/dashboard/customers?state=not-invited").get_data(
        as_text=True
    )


@pytest.mark.parametrize(
    "query",
    ["state=nonsense", "after=%%%", "after=bm90IGEgY3Vyc29y", "after=" + "A" * 150],
)
def test_bad_list_parameters_get_a_clear_400(partner: Any, client: Any, query: str) -> None:
    response = client.get(f"/dashboard/customers?{query}")
    assert response.status_code == 400
    assert "could not be processed" in response.get_data(as_text=True)


def test_search_text_is_literal(partner: Any, client: Any) -> None:
    partner.create_customer(company_name="100% Cotton", domain="cotton.example.test")
    partner.create_customer(company_name="Plain Goods", domain="plain.example.test")
    page = client.get("/dashboard/customers", query_string={"q": "%"}).get_data(as_text=True)
    assert "100% Cotton" in page
    assert "Plain Goods" not in page


def test_expired_invitations_show_as_expired(app: Any, partner: Any, client: Any) -> None:
    made = partner.create_customer(company_name="Late Ltd")
    partner.post(f"/v1/customers/{made['id']}/invitations", json={})
    with app.app_context():
        session = db.session()
        invitation = session.scalars(select(Invitation)).one()
        relationship = relationship_of(made["id"], partner.partner_id)
        assert relationship.invitation_expires_at == invitation.expires_at
        # As if thirty days had passed: the link and the relationship's copy of its expiry.
        invitation.expires_at = datetime.now(UTC) - timedelta(minutes=1)
        relationship.invitation_expires_at = invitation.expires_at
        session.commit()
    page = client.get("/dashboard/customers?state=expired").get_data(as_text=True)
    assert "Late Ltd" in page
    assert "Late Ltd" not in client.get("/dashboard/customers?state=invited").get_data(as_text=True)


# --- progress follows the events -----------------------------------------------------------------


def test_progress_follows_each_step(app: Any, api: Any) -> None:
    made = api.create_customer()
    invited = api.post(f"/v1/customers/{made['id']}/invitations", json={}).get_json()

    def progress() -> Progress:
        with app.app_context():
            return relationship_of(made["id"], api.partner_id).progress

    assert progress() is Progress.INVITED
    api.client.get(invited["url"].replace("https://portal.example.test", ""))
    assert progress() is Progress.OPENED
    api.client.delete(
        f"/v1/customers/{made['id']}/invitations/{invited['id']}",
        headers={"Authorization": f"Bearer {api.key}"},
    )
    assert progress() is Progress.NOT_INVITED
    attested = api.post(
        f"/v1/customers/{made['id']}/agreements",
        json={
            "primaryContact": {
                "firstName": "Tania",
                "lastName": "Carr",
                "email": "tania@contoso.example.test",
            },
            "templateId": "117a77b0-9360-443b-8795-c6dedc750cf9",
            "dateAgreed": "2026-01-02T00:00:00Z",
            "type": "MicrosoftCustomerAgreement",
        },
    )
    assert attested.status_code == 201, attested.get_json()
    assert progress() is Progress.ATTESTED
    # Nothing moves a customer back from an acceptance.
    with app.app_context():
        session = db.session()
        events.record(
            session,
            EventKind.INVITATION_CREATED,
            actor="test",
            customer_id=made["id"],
            partner_id=api.partner_id,
        )
        session.commit()
    assert progress() is Progress.ATTESTED


def test_withdrawing_an_old_invitation_keeps_the_current_one(app: Any, api: Any) -> None:
    made = api.create_customer()
    first = api.post(f"/v1/customers/{made['id']}/invitations", json={}).get_json()
    api.post(f"/v1/customers/{made['id']}/invitations", json={})
    api.client.delete(
        f"/v1/customers/{made['id']}/invitations/{first['id']}",
        headers={"Authorization": f"Bearer {api.key}"},
    )
    with app.app_context():
        assert relationship_of(made["id"], api.partner_id).progress is Progress.INVITED


# --- invitations ---------------------------------------------------------------------------------


def test_invitation_screen_offers_copy_mailto_and_send(app: Any, partner: Any, client: Any) -> None:
    made = partner.create_customer(company_name="Mail <Test> & Co")
    page = client.get(f"/dashboard/customers/{made['id']}")
    response = client.post(
        f"/dashboard/customers/{made['id']}/invitations",
        data={"csrf_token": csrf(page), "credentials": "yes"},
    )
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert "Mail &lt;Test&gt; &amp; Co" in text
    assert "<Test>" not in text
    mailto = re.search(r'id="mailto" href="([^"]+)"', text)
    assert mailto
    assert mailto.group(1).startswith("mailto:tania%40") or mailto.group(1).startswith(
        "mailto:billing@"
    )
    assert "&amp;body=" in mailto.group(1)
    assert 'data-copy="body"' in text
    with app.app_context():
        invitation = db.session().scalars(select(Invitation)).one()
        assert invitation.created_by.startswith("user:admin@fabrikam")
        assert db.session().scalar(select(func.count()).select_from(OutboxMessage)) == 0
    sent = client.post(
        f"/dashboard/customers/{made['id']}/invitations/{invitation.id}/send",
        data={"csrf_token": csrf(response)},
    )
    assert sent.status_code == 302
    with app.app_context():
        message = db.session().scalars(select(OutboxMessage)).one()
        assert message.invitation_id == invitation.id
    html = client.get(f"/dashboard/customers/{made['id']}/invitations/{invitation.id}/email.html")
    assert html.status_code == 200
    # One policy, the sandbox's, which lets the email's inline styles apply (a second,
    # stricter one would be enforced too, and show the email unstyled).
    [policy] = html.headers.getlist("Content-Security-Policy")
    assert policy.startswith("sandbox")
    assert "style-src 'unsafe-inline'" in policy
    customer_page = client.get(f"/dashboard/customers/{made['id']}").get_data(as_text=True)
    assert "Waiting to be sent" in customer_page
    assert "Invitation created" in customer_page


def test_withdraw_kills_the_link(app: Any, partner: Any, client: Any) -> None:
    made = partner.create_customer()
    invited = partner.post(f"/v1/customers/{made['id']}/invitations", json={}).get_json()
    page = client.get(f"/dashboard/customers/{made['id']}")
    response = client.post(
        f"/dashboard/customers/{made['id']}/invitations/{invited['id']}/withdraw",
        data={"csrf_token": csrf(page)},
    )
    assert response.status_code == 302
    link = client.get(invited["url"].replace("https://portal.example.test", ""))
    assert link.status_code == 410
    assert "withdrawn" in link.get_data(as_text=True)


def _invitation_screen(client: Any, customer_id: str, **form: str) -> tuple[Any, str, str]:
    """Create an invitation from the customer page: the screen, its id and the email's text."""
    page = client.get(f"/dashboard/customers/{customer_id}")
    screen = client.post(
        f"/dashboard/customers/{customer_id}/invitations", data={"csrf_token": csrf(page), **form}
    )
    assert screen.status_code == 200
    page_text = screen.get_data(as_text=True)
    action = re.search(r'action="/dashboard/customers/[^/]+/invitations/([^/]+)/send"', page_text)
    assert action
    return screen, action.group(1), _textarea(page_text)


def _textarea(page_text: str) -> str:
    """The email text in the screen's text area, as a browser reads it."""
    body = re.search(r'<textarea id="body"[^>]*>\n?(.*?)</textarea>', page_text, re.S)
    assert body
    return html.unescape(body.group(1))


def _send(client: Any, customer_id: str, invitation_id: str, **form: str) -> Any:
    return client.post(
        f"/dashboard/customers/{customer_id}/invitations/{invitation_id}/send", data=form
    )


def _send_and_deliver(
    app: Any, client: Any, smtp: Any, screen: Any, customer_id: str, invitation_id: str, text: str
) -> Any:
    """Send the email with ``text`` as a browser would (CRLF line ends), deliver it, and
    return the message the SMTP server received."""
    sent = _send(
        client,
        customer_id,
        invitation_id,
        csrf_token=csrf(screen),
        text_body=text.replace("\n", "\r\n"),
    )
    assert sent.status_code == 302
    with app.app_context():
        assert sending.deliver_due(app, db.session()).sent == 1
    [received] = smtp.inbox.received
    return received.message


def _resent_events(app: Any) -> list[dict[str, Any]]:
    with app.app_context():
        found = db.session().scalars(select(Event).where(Event.kind == "invitation.resent"))
        return [event.data for event in found]


@pytest.mark.mail
def test_send_delivers_the_partners_edit(app: Any, partner: Any, client: Any, smtp: Any) -> None:
    made = partner.create_customer()
    screen, invitation_id, text = _invitation_screen(client, made["id"], language="ar")
    (link,) = re.findall(r"https://portal\.example\.test/invite/\S+", text)
    edited = (
        "Hello Tania & team,\n\n"
        "<script>alert(1)</script> <b>Please</b> accept here (it takes two minutes):\n"
        f"{link}.\n"
        "Questions? https://fabrikam.example.test/help?a=1&b=2\n\n\n"
        "Avery"
    )
    message = _send_and_deliver(app, client, smtp, screen, made["id"], invitation_id, edited)
    plain = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert plain == edited
    markup = message.get_body(("html",)).get_content()
    assert "<script" not in markup
    assert "<b>" not in markup
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &lt;b&gt;Please&lt;/b&gt;" in markup
    assert "Tania &amp; team" in markup
    # The link is clickable, without the full stop after it; so is the other address.
    assert f'<a href="{link}"' in markup
    assert f">{link}</a>." in markup
    assert '<a href="https://fabrikam.example.test/help?a=1&amp;b=2"' in markup
    assert markup.count("<p>") == 3
    assert '<html lang="ar" dir="rtl">' in markup
    assert not re.search(r"(src|href)=\"(?!https://)", markup)  # nothing loaded from elsewhere
    # What the customer got is what the screen, "See the HTML email" and the timeline show.
    with app.app_context():
        invitation = db.session().get(Invitation, invitation_id)
        assert invitation.text_body == edited
        assert invitation.html_body == markup.replace("\r\n", "\n")
        (queued,) = invitation.messages
    again = client.get(f"/dashboard/customers/{made['id']}/invitations/{invitation_id}")
    assert _textarea(again.get_data(as_text=True)) == edited
    shown = client.get(f"/dashboard/customers/{made['id']}/invitations/{invitation_id}/email.html")
    assert "&lt;script&gt;" in shown.get_data(as_text=True)
    assert _resent_events(app) == [
        {"invitation_id": invitation_id, "message_id": queued.id, "edited": True, "first": True}
    ]
    page = client.get(f"/dashboard/customers/{made['id']}").get_data(as_text=True)
    assert "Invitation sent<" in page  # its first send: not "sent again"
    assert "Invitation sent again" not in page


@pytest.mark.mail
def test_send_without_edits_sends_the_generated_email(
    app: Any, partner: Any, client: Any, smtp: Any
) -> None:
    made = partner.create_customer()
    screen, invitation_id, text = _invitation_screen(client, made["id"])
    with app.app_context():
        generated = db.session().get(Invitation, invitation_id)
    message = _send_and_deliver(app, client, smtp, screen, made["id"], invitation_id, text)
    assert message.get_body(("plain",)).get_content().replace("\r\n", "\n") == text
    markup = message.get_body(("html",)).get_content().replace("\r\n", "\n")
    assert markup == generated.html_body
    assert 'style="display:inline-block;' in markup  # the generated email's button
    with app.app_context():
        kept = db.session().get(Invitation, invitation_id)
        assert (kept.text_body, kept.html_body) == (generated.text_body, generated.html_body)
    assert [("edited" in data) for data in _resent_events(app)] == [False]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda text, link: text.replace(link, "https://fabrikam.example.test/"),
            "Not sent: the email must contain the invitation link, {link}. Without it the "
            "customer cannot accept.",
        ),
        # The link spoilt by an edit next to it is not the link.
        (lambda text, link: text.replace(link, link + "x"), "must contain the invitation link"),
        (lambda text, link: " \r\n\r\n ", "Not sent: the email is empty."),
        (
            lambda text, link: text + "x" * (20_001 - len(text)),
            "Not sent: the email is longer than 20,000 characters.",
        ),
    ],
)
def test_send_refuses_an_edit_the_customer_could_not_accept_from(
    app: Any, partner: Any, client: Any, change: Any, message: str
) -> None:
    made = partner.create_customer()
    screen, invitation_id, text = _invitation_screen(client, made["id"])
    (link,) = re.findall(r"https://portal\.example\.test/invite/\S+", text)
    edited = change(text, link)
    response = _send(client, made["id"], invitation_id, csrf_token=csrf(screen), text_body=edited)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    alert = re.search(r'<p class="notice error" role="alert" id="body-problem">([^<]*)</p>', page)
    assert alert
    assert message.format(link=link) in html.unescape(alert.group(1))
    assert 'aria-describedby="body-problem"' in page
    # The partner's text is kept on the screen, to be put right.
    assert _textarea(page) == edited
    assert count(app, OutboxMessage) == 0
    assert _resent_events(app) == []
    with app.app_context():
        assert db.session().get(Invitation, invitation_id).text_body == text


def test_send_of_an_edit_needs_the_csrf_token(app: Any, partner: Any, client: Any) -> None:
    made = partner.create_customer()
    _screen, invitation_id, text = _invitation_screen(client, made["id"])
    edited = "Changed: " + text
    assert _send(client, made["id"], invitation_id, text_body=edited).status_code == 400
    stale = _send(client, made["id"], invitation_id, csrf_token="x.y.z", text_body=edited)
    assert stale.status_code == 400
    assert count(app, OutboxMessage) == 0
    with app.app_context():
        assert db.session().get(Invitation, invitation_id).text_body == text


def test_text_html_escapes_everything_and_links_web_addresses() -> None:
    text = (
        'One <i>line</i>\nand the next: https://a.example.test/x?y=1&z="2".\n \n'
        "(see http://b.example.test/wiki/A_(b)), javascript:alert(1) https:// done"
    )
    assert str(emails.text_html(text)) == (
        "<p>One &lt;i&gt;line&lt;/i&gt;<br>\nand the next: "
        '<a href="https://a.example.test/x?y=1&amp;z=" style="color:#0b5cad;'
        'word-break:break-all;">https://a.example.test/x?y=1&amp;z=</a>&#34;2&#34;.</p>\n'
        '<p>(see <a href="http://b.example.test/wiki/A_(b)" style="color:#0b5cad;'
        'word-break:break-all;">http://b.example.test/wiki/A_(b)</a>), javascript:alert(1) '
        "https:// done</p>"
    )


# --- attestation ---------------------------------------------------------------------------------


def _attest(client: Any, customer_id: str, **changes: str) -> Any:
    page = client.get(f"/dashboard/customers/{customer_id}")
    data = {
        "csrf_token": csrf(page),
        "first_name": "Tania",
        "last_name": "Carr",
        "email": "tania@contoso.example.test",
        "phone": "",
        "date": "2026-01-02",
        **changes,
    }
    return client.post(f"/dashboard/customers/{customer_id}/attest", data=data)


def test_attestation_is_recorded_with_its_evidence(app: Any, partner: Any, client: Any) -> None:
    made = partner.create_customer()
    response = _attest(client, made["id"])
    assert response.status_code == 302
    status = partner.get(f"/v1/customers/{made['id']}/acceptanceStatus").get_json()
    assert status["isSigned"] is False
    assert status["eligibleForPurchase"] is True
    assert status["acceptance"]["primaryContact"]["lastName"] == "Carr"
    evidence = client.get(f"/dashboard/customers/{made['id']}/evidence.json")
    body = json.loads(evidence.get_data(as_text=True))
    (recorded,) = body["acceptances"]
    assert recorded["method"] == "attested"
    assert recorded["dateAgreed"] == "2026-01-02T00:00:00.000Z"
    assert recorded["recordedBy"] == "user:admin@fabrikam.example.test"
    assert recorded["templateId"] == "117a77b0-9360-443b-8795-c6dedc750cf9"
    assert "attachment" in evidence.headers["Content-Disposition"]
    # The same attestation again is refused, and nothing more is written.
    again = _attest(client, made["id"])
    assert again.status_code == 409
    assert count(app, AgreementAcceptance) == 1


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"date": (datetime.now(UTC) + timedelta(days=2)).date().isoformat()}, "future"),
        ({"date": "not a date"}, "Enter the date"),
        ({"email": "nope"}, "valid email"),
        ({"first_name": ""}, "required"),
    ],
)
def test_bad_attestations_are_refused(
    app: Any, partner: Any, client: Any, changes: dict[str, str], message: str
) -> None:
    made = partner.create_customer()
    response = _attest(client, made["id"], **changes)
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert count(app, AgreementAcceptance) == 0


def test_reseller_sees_why_and_who_instead_of_the_form(
    app: Any, make_api: Any, client: Any
) -> None:
    provider = make_api(PartnerKind.INDIRECT_PROVIDER, name="Northwind Distribution")
    reseller = make_api(PartnerKind.INDIRECT_RESELLER, provider=provider, name="Tailspin")
    add_user(app, reseller.partner_id, "admin@tailspin.example.test")
    sign_in(client, "admin@tailspin.example.test")
    made = reseller.create_customer()
    page = client.get(f"/dashboard/customers/{made['id']}").get_data(as_text=True)
    assert "Indirect resellers cannot attest" in page
    assert "Northwind Distribution" in page
    assert 'action="/dashboard/customers/' + made["id"] + '/attest"' not in page
    response = _attest(client, made["id"])
    assert response.status_code == 403
    assert count(app, AgreementAcceptance) == 0


def test_sales_agents_cannot_attest(app: Any, api: Any, client: Any) -> None:
    add_user(app, api.partner_id, "sales@fabrikam.example.test", UserRole.SALES_AGENT)
    sign_in(client, "sales@fabrikam.example.test")
    made = api.create_customer()
    assert "Only admin agents" in client.get(f"/dashboard/customers/{made['id']}").get_data(
        as_text=True
    )
    assert _attest(client, made["id"]).status_code == 403
    assert count(app, AgreementAcceptance) == 0


# --- isolation -----------------------------------------------------------------------------------


def test_one_partner_never_sees_another_partners_customers(
    app: Any, make_api: Any, client: Any
) -> None:
    mine = make_api(name="Mine Inc")
    theirs = make_api(name="Theirs Inc")
    add_user(app, mine.partner_id, "me@mine.example.test")
    mine.create_customer(company_name="Visible Co", domain="visible.example.test")
    foreign = theirs.create_customer(company_name="Secret Co", domain="secret.example.test")
    invited = theirs.post(f"/v1/customers/{foreign['id']}/invitations", json={}).get_json()
    sign_in(client, "me@mine.example.test")
    for path in (
        "/dashboard/",
        "/dashboard/customers",
        "/dashboard/customers?q=Secret",
        "/dashboard/customers?q=secret.example.test",
        "/dashboard/customers?state=invited",
    ):
        text = client.get(path).get_data(as_text=True)
        assert "Secret Co" not in text, path
        assert foreign["id"] not in text, path
    overview = client.get("/dashboard/").get_data(as_text=True)
    assert re.search(r"All customers</th><td class=\"number\">1<", overview)
    page = client.get("/dashboard/customers")
    token = csrf(page)
    base = f"/dashboard/customers/{foreign['id']}"
    for method, path in (
        ("get", base),
        ("get", base + "/evidence.json"),
        ("get", f"{base}/invitations/{invited['id']}"),
        ("get", f"{base}/invitations/{invited['id']}/email.html"),
        ("post", base + "/invitations"),
        ("post", f"{base}/invitations/{invited['id']}/send"),
        ("post", f"{base}/invitations/{invited['id']}/withdraw"),
        ("post", base + "/attest"),
    ):
        response = getattr(client, method)(path, data={"csrf_token": token})
        assert response.status_code == 404, (method, path)
        assert "Secret Co" not in response.get_data(as_text=True)
    with app.app_context():
        session = db.session()
        assert session.scalar(select(func.count()).select_from(AgreementAcceptance)) == 0
        invitation = session.get(Invitation, invited["id"])
        assert invitation.revoked_at is None
        assert (
            session.scalar(
                select(func.count())
                .select_from(Event)
                .where(Event.actor.like("user:me@%"), Event.customer_id == foreign["id"])
            )
            == 0
        )


def test_a_provider_sees_its_resellers_customers(app: Any, make_api: Any, client: Any) -> None:
    provider = make_api(PartnerKind.INDIRECT_PROVIDER, name="Northwind Distribution")
    reseller = make_api(PartnerKind.INDIRECT_RESELLER, provider=provider, name="Tailspin")
    reseller.create_customer(company_name="Resold Co")
    add_user(app, provider.partner_id, "admin@northwind.example.test")
    sign_in(client, "admin@northwind.example.test")
    page = client.get("/dashboard/customers").get_data(as_text=True)
    assert "Resold Co" in page
    assert "Tailspin" in page


@pytest.mark.parametrize(
    "name", ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "{{7*7}}"]
)
def test_hostile_names_are_shown_literally(partner: Any, client: Any, name: str) -> None:
    made = partner.create_customer(company_name=name)
    escaped = name.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    escaped = escaped.replace('"', "&#34;")
    for path in ("/dashboard/customers", f"/dashboard/customers/{made['id']}"):
        text = client.get(path).get_data(as_text=True)
        assert escaped in text, path
        if name != escaped:
            assert name not in text, path
        assert ">49<" not in text, path


# --- overview, export, import --------------------------------------------------------------------


def test_overview_draws_the_funnel_and_weekly_acceptances(
    app: Any, partner: Any, client: Any
) -> None:
    for n in range(3):
        partner.create_customer(company_name=f"Waiting {n}")
    made = partner.create_customer(company_name="Done Co")
    partner.post(f"/v1/customers/{made['id']}/invitations", json={})
    _attest(client, made["id"], date=datetime.now(UTC).date().isoformat())
    page = client.get("/dashboard/")
    text = page.get_data(as_text=True)
    assert page.status_code == 200
    svg = re.findall(r"<svg class=\"chart\".*?</svg>", text, re.S)
    assert len(svg) == 2
    funnel, weekly = svg
    assert "<title>Not invited: 3</title>" in funnel
    assert "<title>Attested: 1</title>" in funnel
    assert "<script" not in funnel
    # This week's column holds the one acceptance; the eleven before it none.
    values = re.findall(r"<title>[^<]+: (\d+)</title>", weekly)
    assert values == ["0"] * 11 + ["1"]
    assert "Acceptances recorded in each of the last twelve weeks" in weekly


def test_export_lists_every_visible_customer_with_its_state(
    app: Any, make_api: Any, client: Any
) -> None:
    import csv
    import io

    mine = make_api(name="Mine Inc")
    theirs = make_api(name="Theirs Inc")
    add_user(app, mine.partner_id, "me@mine.example.test")
    plain = mine.create_customer(company_name="Plain Co")
    formula = mine.create_customer(company_name='=HYPERLINK("http://evil.example")')
    theirs.create_customer(company_name="Secret Co")
    sign_in(client, "me@mine.example.test")
    _attest(client, plain["id"])
    response = client.get("/dashboard/customers.csv")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert {row["customerId"] for row in rows} == {plain["id"], formula["id"]}
    by_id = {row["customerId"]: row for row in rows}
    assert by_id[plain["id"]]["state"] == "attested"
    assert by_id[plain["id"]]["acceptanceMethod"] == "attested"
    assert by_id[plain["id"]]["acceptedAt"] == "2026-01-02T00:00:00.000Z"
    assert by_id[formula["id"]]["state"] == "not-invited"
    # A spreadsheet must not run a company name as a formula.
    assert by_id[formula["id"]]["companyName"] == '\'=HYPERLINK("http://evil.example")'


def _csv_file(lines: list[str]) -> Any:
    import io

    return (io.BytesIO("\n".join(lines).encode()), "customers.csv")


HEADER = "domain,companyName,email,culture,language,country,firstName,lastName"


def test_import_creates_good_rows_and_reports_bad_ones(app: Any, partner: Any, client: Any) -> None:
    page = client.get("/dashboard/import")
    lines = [
        HEADER,
        "good1.example.test,Good One,b@good1.example.test,en-US,en,US,Ann,Lee",
        "not a domain,Bad One,b@bad.example.test,en-US,en,US,Ann,Lee",
        "good2.example.test,Good Two,b@good2.example.test,de-DE,de,DE,Jonas,Weber",
        "good1.example.test,Again,b@good1.example.test,en-US,en,US,Ann,Lee",
    ]
    response = client.post(
        "/dashboard/import",
        data={"csrf_token": csrf(page), "file": _csv_file(lines)},
        content_type="multipart/form-data",
    )
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert "2 created, 2 with problems" in text
    assert "<td>3</td><td>not a domain</td>" in text
    with app.app_context():
        created = db.session().scalars(select(Customer).order_by(Customer.domain)).all()
        assert [c.domain for c in created] == ["good1.example.test", "good2.example.test"]
        assert {c.creator_id for c in created} == {partner.partner_id}
        assert {relationship_of(c.id).progress for c in created} == {Progress.INVITED}


def test_import_in_slices_answers_json_for_the_progress_bar(
    app: Any, partner: Any, client: Any
) -> None:
    page = client.get("/dashboard/import")
    lines = [HEADER] + [
        f"s{n}.example.test,Slice {n},b@s{n}.example.test,en-US,en,US,Ann,Lee" for n in range(5)
    ]
    answers = []
    for offset in (0, 2, 4):
        response = client.post(
            "/dashboard/import",
            data={
                "csrf_token": csrf(page),
                "file": _csv_file(lines),
                "format": "json",
                "offset": str(offset),
                "limit": "2",
            },
            content_type="multipart/form-data",
        )
        assert response.status_code == 200
        answers.append(response.get_json())
    assert [a["total"] for a in answers] == [5, 5, 5]
    assert [[r["line"] for r in a["results"]] for a in answers] == [[2, 3], [4, 5], [6]]
    assert count(app, Customer) == 5


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["domain,companyName", "a.example.test,A"], "lacks the columns"),
        ([], "lacks the columns"),
    ],
)
def test_import_refuses_a_bad_file_and_writes_nothing(
    app: Any, partner: Any, client: Any, lines: list[str], message: str
) -> None:
    page = client.get("/dashboard/import")
    response = client.post(
        "/dashboard/import",
        data={"csrf_token": csrf(page), "file": _csv_file(lines)},
        content_type="multipart/form-data",
    )
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert count(app, Customer) == 0


def test_import_refuses_a_file_that_is_not_utf8(app: Any, partner: Any, client: Any) -> None:
    import io

    page = client.get("/dashboard/import")
    response = client.post(
        "/dashboard/import",
        data={"csrf_token": csrf(page), "file": (io.BytesIO(b"\xff\xfe\x00bad"), "x.csv")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 400
    assert "not UTF-8 CSV" in response.get_data(as_text=True)
    assert count(app, Customer) == 0


def test_receipt_pdf_carries_the_evidence(app: Any, partner: Any, client: Any) -> None:
    import io

    from pypdf import PdfReader

    made = partner.create_customer(company_name="<b>Contoso</b> & Söhne")
    _attest(client, made["id"], first_name="Tomás", last_name="Müller")
    response = client.get(f"/dashboard/customers/{made['id']}/receipt.pdf")
    assert response.status_code == 200
    assert response.mimetype == "application/pdf"
    assert "attachment" in response.headers["Content-Disposition"]
    reader = PdfReader(io.BytesIO(response.get_data()))
    text = " ".join(page.extract_text() for page in reader.pages)
    for expected in (
        "Acceptance receipt",
        "<b>Contoso</b> & Söhne",  # literally, markup and all
        made["id"],
        "Attested by the partner",
        "Tomás",
        "Müller",
        "2026-01-02T00:00:00Z",
        "user:admin@fabrikam.example.test",
        "117a77b0-9360-443b-8795-c6dedc750cf9",
    ):
        assert expected in text, expected


def test_receipt_pdf_draws_japanese_names_with_a_japanese_font() -> None:
    from portal.domain import receipts

    assert receipts.font_for("Müller") == receipts.LATIN
    assert receipts.font_for("やまだ 山田") == receipts.JAPANESE
    assert receipts.font_for("张伟") == receipts.CHINESE


def test_receipt_of_another_partners_customer_is_not_found(
    app: Any, make_api: Any, client: Any
) -> None:
    mine = make_api(name="Mine Inc")
    theirs = make_api(name="Theirs Inc")
    add_user(app, mine.partner_id, "me@mine.example.test")
    foreign = theirs.create_customer(company_name="Secret Co")
    sign_in(client, "me@mine.example.test")
    assert client.get(f"/dashboard/customers/{foreign['id']}/receipt.pdf").status_code == 404


def test_invitation_without_credentials_shows_the_password_once(
    app: Any, partner: Any, client: Any
) -> None:
    made = partner.create_customer()
    page = client.get(f"/dashboard/customers/{made['id']}")
    response = client.post(
        f"/dashboard/customers/{made['id']}/invitations",
        data={"csrf_token": csrf(page), "credentials": "no"},
    )
    text = response.get_data(as_text=True)
    notice = re.search(r'id="password-notice">The temporary password is (\S+)\. It is not', text)
    assert notice
    body = re.search(r'<textarea id="body"[^>]*>(.*?)</textarea>', text, re.S)
    assert body
    assert notice.group(1) not in body.group(1)
    with app.app_context():
        invitation = db.session().scalars(select(Invitation)).one()
    again = client.get(f"/dashboard/customers/{made['id']}/invitations/{invitation.id}")
    assert notice.group(1) not in again.get_data(as_text=True)


def test_expiry_copy_follows_new_and_withdrawn_invitations(app: Any, api: Any) -> None:
    made = api.create_customer()
    path = f"/v1/customers/{made['id']}/invitations"
    first = api.post(path, json={}).get_json()
    second = api.post(path, json={}).get_json()

    def expiry() -> Any:
        with app.app_context():
            return relationship_of(made["id"], api.partner_id).invitation_expires_at

    shown = datetime.fromisoformat(second["expiresAt"].replace("Z", "+00:00"))
    assert abs(expiry() - shown) < timedelta(milliseconds=1)  # the API shows milliseconds
    api.client.delete(f"{path}/{first['id']}", headers={"Authorization": f"Bearer {api.key}"})
    assert expiry() is not None  # the withdrawn one was already replaced
    api.client.delete(f"{path}/{second['id']}", headers={"Authorization": f"Bearer {api.key}"})
    assert expiry() is None


def test_expired_filter_merges_every_waiting_step_newest_first(app: Any, api: Any) -> None:
    steps = [Progress.INVITED, Progress.OPENED, Progress.SIGNED_IN, Progress.INVITED]
    made = []
    for n, step in enumerate(steps):
        customer = api.create_customer(company_name=f"Late {n}")
        api.post(f"/v1/customers/{customer['id']}/invitations", json={})
        made.append((customer["id"], step))
    fresh = api.create_customer(company_name="Fresh")
    api.post(f"/v1/customers/{fresh['id']}/invitations", json={})
    with app.app_context():
        session = db.session()
        for n, (customer_id, step) in enumerate(made):
            relationship = relationship_of(customer_id, api.partner_id)
            relationship.progress = step
            relationship.invitation_expires_at = datetime.now(UTC) - timedelta(days=1 + n)
        session.commit()
        names, cursor = [], ""
        while True:
            page = reports.customer_page(
                session, api.partner_id, state=reports.EXPIRED, cursor=cursor, size=3
            )
            names += [row.customer.company_name for row in page.rows]
            assert {row.state for row in page.rows} == {reports.EXPIRED}
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    assert names == ["Late 3", "Late 2", "Late 1", "Late 0"]


def test_a_providers_list_pages_across_its_resellers_newest_first(app: Any, make_api: Any) -> None:
    """On PostgreSQL the page is merged from one ordered scan per partner; on SQLite it is one
    query. Either way: newest first across all of them, none twice, none lost, filters kept."""
    provider = make_api(PartnerKind.INDIRECT_PROVIDER, name="Northwind Distribution")
    resellers = [
        make_api(PartnerKind.INDIRECT_RESELLER, provider=provider, name=f"Reseller {n}")
        for n in range(2)
    ]
    stranger = make_api(PartnerKind.DIRECT, name="Elsewhere")
    owners = [provider, *resellers]
    made = [owners[n % 3].create_customer(company_name=f"Shop {n:02}") for n in range(10)]
    stranger.create_customer(company_name="Not Theirs")
    for customer in made[::3]:
        owners[made.index(customer) % 3].post(
            f"/v1/customers/{customer['id']}/invitations", json={}
        )
    with app.app_context():
        session = db.session()
        # Begun at interleaved times (some equal: ties are broken by id).
        start = datetime.now(UTC) - timedelta(days=1)
        for n, customer in enumerate(made):
            relationship_of(customer["id"]).began_at = start + timedelta(minutes=n // 2)
        expired = [made[3]["id"], made[6]["id"]]
        for customer_id in expired:
            relationship_of(customer_id).invitation_expires_at = start
        session.commit()
        name = {c["id"]: f"Shop {n:02}" for n, c in enumerate(made)}
        expected = [
            name[c["id"]]
            for c in sorted(
                made,
                key=lambda c: (relationship_of(c["id"]).began_at, c["id"]),
                reverse=True,
            )
        ]

        def every_page(**kwargs: Any) -> list[str]:
            names, cursor = [], ""
            while True:
                page = reports.customer_page(
                    session, provider.partner_id, cursor=cursor, size=3, **kwargs
                )
                names += [row.customer.company_name for row in page.rows]
                if page.next_cursor is None:
                    return names
                cursor = page.next_cursor

        assert every_page() == expected
        invited = {f"Shop {n:02}" for n in (0, 9)}  # links still working
        assert every_page(state="invited") == [n for n in expected if n in invited]
        gone = {f"Shop {n:02}" for n in (3, 6)}
        assert every_page(state=reports.EXPIRED) == [n for n in expected if n in gone]
        assert every_page(query="shop 0") == [n for n in expected if n.startswith("Shop 0")]


def test_the_timeline_says_sent_the_first_time_and_again_after(partner: Any, client: Any) -> None:
    made = partner.create_customer()
    screen, invitation_id, text = _invitation_screen(client, made["id"])
    for _ in range(2):
        sent = _send(client, made["id"], invitation_id, csrf_token=csrf(screen), text_body=text)
        assert sent.status_code == 302
    page = client.get(f"/dashboard/customers/{made['id']}").get_data(as_text=True)
    timeline = page[page.index("<ol") :]
    assert timeline.count("Invitation sent again") == 1
    assert timeline.count("Invitation sent\n") + timeline.count("Invitation sent<") == 1


def test_wrong_addresses_under_the_dashboard_say_what_is_wrong(client: Any) -> None:
    missing = client.get("/dashboard/no-such-page")
    assert missing.status_code == 404
    text = missing.get_data(as_text=True)
    assert "Page not found" in text
    assert 'href="/dashboard/"' in text
    assert "invitation email" not in text
    wrong_method = client.post("/dashboard/")
    assert wrong_method.status_code == 405
    assert "This page cannot do that" in wrong_method.get_data(as_text=True)


def test_charts_mirror_for_arabic_and_thin_out_long_week_labels(partner: Any, client: Any) -> None:
    partner.create_customer(company_name="Waiting Co")
    page = client.get("/dashboard/")
    client.post("/language", data={"csrf_token": csrf(page), "lang": "ar", "next": "/dashboard/"})
    text = client.get("/dashboard/").get_data(as_text=True)
    assert 'dir="rtl"' in text
    funnel, weekly = re.findall(r"<svg class=\"chart\".*?</svg>", text, re.S)
    for svg in (funnel, weekly):
        assert 'direction="ltr"' in svg  # physical coordinates, drawn mirrored
        assert 'preserveAspectRatio="xMaxYMin meet"' in svg
    # Labels sit on the right (their left edge at 560 - 162), bars grow leftwards from 390.
    labels = re.findall(r'<text x="([\d.]+)" y="[\d.]+" text-anchor="start" font-size="14"', funnel)
    assert labels
    assert {float(x) for x in labels} == {398.0}
    bars = re.findall(r'<rect x="([\d.]+)" y="[\d.]+" width="([\d.]+)"', funnel)
    assert all(abs(float(x) + float(w) - 390) < 0.1 for x, w in bars)


def test_week_labels_that_would_run_together_are_thinned() -> None:
    from portal.web.dashboard import charts

    short = charts.columns([(f"W{n}", n) for n in range(12)])
    assert short.label_every == 1
    german = charts.columns([(f"{n} Sept.", n) for n in range(10, 22)])
    assert german.label_every == 2
    slot = german.width / 12
    widest = charts.text_width("21 Sept.", 11)
    assert widest > slot - 6  # side by side they would touch
    assert widest < 2 * slot - 6  # every other one has room
    japanese = charts.columns([(f"{n}月{n}日", n) for n in range(1, 13)])
    assert japanese.label_every >= 2
