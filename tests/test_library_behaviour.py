"""The behaviour of the libraries each speed trick relies on, gathered in one place (the tricks
are fenced in ``portal.core.fastsql``, ``portal.core.signing``, ``portal.web.security``,
``portal.i18n.templating`` and the ``Portal`` app class): signatures byte for byte as
itsdangerous makes them, sessions and form tokens that Flask and Flask-WTF read and write as
their own, templates translated at compile time that mean what they meant at render time, rows
written at once as the unit of work would write them. A library release that changes what a
trick relies on fails here first; ``pyproject.toml`` bounds those libraries from above."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import flask
import pytest
import time_machine
from flask import render_template, render_template_string
from flask.json.tag import TaggedJSONSerializer
from flask.sessions import SecureCookieSessionInterface
from flask_babel import force_locale
from itsdangerous import BadSignature, TimestampSigner, URLSafeTimedSerializer
from jinja2 import Template
from markupsafe import Markup
from sqlalchemy import select

from portal.core import db, fastsql, tokens
from portal.core.signing import TimedSerializer
from portal.i18n import templating
from portal.web import fastpath
from tests.test_i18n import translate
from tests.test_pages import change_password, csrf, invited, sign_in_from_link

# --- itsdangerous: signing ---------------------------------------------------------------------

OLD, NEW = "o" * 40, "n" * 40
UNSHORTENED = "9b1e5c0d2a7f4e8b6c3d1a0f5e9b2c7d4a8e6f1b"
FLASK_SESSION = {
    "salt": "cookie-session",
    "signer_kwargs": {"key_derivation": "hmac", "digest_method": hashlib.sha1},
}


@pytest.mark.parametrize("options", [{"salt": fastpath.CSRF_SALT}, FLASK_SESSION])
def test_signatures_are_itsdangerous_own_and_verify_both_ways(options):
    ours = TimedSerializer([OLD, NEW], **options)
    stock = URLSafeTimedSerializer([OLD, NEW], **options)
    with time_machine.travel(datetime(2026, 5, 1, tzinfo=UTC), tick=False):
        # Values zlib cannot shorten: stock does not compress them either.
        for value in [UNSHORTENED, {"sid": "x", "csrf_token": "y"}, ["id", "nonce"]]:
            signed = ours.dumps(value)
            assert signed == stock.dumps(value)
            assert stock.loads(signed) == value
            assert ours.loads(signed) == value
        # A value stock compressed still loads; an old key still verifies; tampering fails.
        long_value = "z" * 400
        assert ours.loads(stock.dumps(long_value)) == long_value
        assert ours.loads(URLSafeTimedSerializer(OLD, **options).dumps("old")) == "old"
        signed = ours.dumps("v")
        with pytest.raises(BadSignature):
            ours.loads(signed[:-1] + ("A" if signed[-1] != "A" else "B"))
        with pytest.raises(BadSignature):
            TimedSerializer([NEW], salt="another").loads(signed)


def test_a_signer_made_once_per_salt_signs_with_the_newest_key():
    ours = TimedSerializer([OLD, NEW], salt="s")
    assert ours.make_signer() is ours.make_signer()
    assert ours.make_signer("other") is not ours.make_signer()
    with pytest.raises(BadSignature):
        URLSafeTimedSerializer(OLD, salt="s").loads(ours.dumps("x"))
    assert URLSafeTimedSerializer(NEW, salt="s").loads(ours.dumps("x")) == "x"


def test_invitation_links_are_signed_as_before_at_their_issue_time():
    class Stock(TimestampSigner):  # itsdangerous's own signer, dated as links are
        def get_timestamp(self) -> int:
            return 1_700_000_000

    stock = URLSafeTimedSerializer([OLD, NEW], salt=tokens.INVITATION_SALT, signer=Stock)
    token = tokens.invitation_token(NEW, [OLD], "an-id", "a-nonce", 1_700_000_000)
    assert token == stock.dumps(["an-id", "a-nonce"])


@pytest.mark.parametrize(
    "session",
    [
        {"sid": "abc", "csrf_token": "f" * 40, "lang": "de"},
        {"n": 1, "flag": True, "none": None, "x": 1.5, "ü": "é"},
        {},
        {" t": "a tuple's tag as the only key"},
        {"markup": Markup("<b>")},
        {"when": datetime(2026, 1, 2, tzinfo=UTC), "items": ("a", "b")},
    ],
)
def test_the_session_is_written_as_flasks_tagged_json_and_reads_back(app, session):
    interface = app.session_interface
    assert isinstance(interface, fastpath.SessionInterface)
    with app.app_context():
        written = interface.serializer.dumps(session)
        assert written == TaggedJSONSerializer().dumps(session)
        assert interface.serializer.loads(written) == session
        stock = SecureCookieSessionInterface().get_signing_serializer(app)
        assert stock is not None
        assert stock.loads(interface.get_signing_serializer(app).dumps(session)) == session


# --- Flask and Flask-WTF: the session cookie, form tokens, views -------------------------------


def test_form_tokens_are_flask_wtf_tokens(app, client):
    import flask
    from flask_wtf.csrf import validate_csrf

    token = csrf(client.get("/signin"))
    assert not token.startswith(".")  # signed without compressing
    cookie = client.get_cookie("session").value
    raw = app.session_interface.get_signing_serializer(app).loads(cookie)["csrf_token"]
    with app.test_request_context():
        flask.session["csrf_token"] = raw
        validate_csrf(token)  # raises when Flask-WTF does not accept it


def test_a_session_cookie_signed_by_flask_itself_is_still_read(app, api, client):
    """Cookies are no longer compressed when signed; ones that were are read as before."""
    from flask.sessions import SecureCookieSessionInterface

    _, made = invited(api)
    sign_in_from_link(client, made)
    change_password(client)
    session = app.session_interface.get_signing_serializer(app).loads(
        client.get_cookie("session").value
    )
    session["padding"] = "x" * 200  # compresses well: Flask's own serializer compresses it
    stock = SecureCookieSessionInterface().get_signing_serializer(app)
    cookie = stock.dumps(session)
    assert cookie.startswith(".")
    browser = app.test_client()
    browser.set_cookie("session", cookie)
    assert browser.get("/agreement").status_code == 200


def test_a_remembered_session_cookie_still_expires_with_its_lifetime(app, api, client):
    """Cookies checked once are remembered by the process: the lifetime still counts from
    their signing, and a changed cookie is checked again."""
    # Shorter than the idle timeout, so only the cookie's age can end this session.
    lifetime = timedelta(minutes=10)
    app.config["PERMANENT_SESSION_LIFETIME"] = lifetime
    assert lifetime < timedelta(seconds=app.config["SESSION_IDLE_TIMEOUT"])
    _, made = invited(api)
    start = datetime.now(UTC)
    with time_machine.travel(start, tick=False):
        sign_in_from_link(client, made)
        change_password(client)
        assert client.get("/agreement").status_code == 200  # now remembered
    cookie = client.get_cookie("session").value
    tampered = cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB")
    browser = app.test_client()
    browser.set_cookie("session", tampered)
    assert browser.get("/agreement").headers["Location"].startswith("/signin")
    with time_machine.travel(start + lifetime - timedelta(seconds=5), tick=False):
        assert client.get("/agreement").status_code == 200
    with time_machine.travel(start + lifetime + timedelta(seconds=5), tick=False):
        response = client.get("/agreement")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/signin")


def test_form_tokens_are_handed_out_again_for_a_minute_then_renewed(app, client):
    from flask_wtf.csrf import validate_csrf

    start = datetime.now(UTC)
    with time_machine.travel(start, tick=False):
        first = csrf(client.get("/signin"))
    with time_machine.travel(start + timedelta(seconds=30), tick=False):
        assert csrf(client.get("/signin")) == first
    with time_machine.travel(start + timedelta(seconds=61), tick=False):
        renewed = csrf(client.get("/signin"))
    assert renewed != first
    raw = app.session_interface.get_signing_serializer(app).loads(
        client.get_cookie("session").value
    )["csrf_token"]
    import flask

    with time_machine.travel(start + timedelta(seconds=62), tick=False):
        for token in (first, renewed):
            with app.test_request_context():
                flask.session["csrf_token"] = raw
                validate_csrf(token)
    other = app.test_client()
    assert csrf(other.get("/signin")) != renewed  # another browser, another token


# --- Jinja: templates translated when they compile --------------------------------------------


def template_of(app, locale: str, name: str = "signin.html") -> Template:
    with force_locale(locale):
        return app.jinja_env.get_template(name)


def test_each_language_has_its_own_compiled_templates(app):
    with app.test_request_context():
        german, english = template_of(app, "de"), template_of(app, "en")
        assert german.environment.locale == "de"
        assert english.environment.locale == "en"
        assert german is not english
        assert template_of(app, "de") is german  # compiled once
        # They share what the app's environment has, as an overlay does.
        assert german.environment.globals is app.jinja_env.globals
        assert german.environment.filters is app.jinja_env.filters


def test_literal_texts_are_translated_when_the_template_compiles(make_app, locales, german):
    translate(german, {"Sign in": "Anmelden"})
    app = make_app(BABEL_TRANSLATION_DIRECTORIES=str(locales))
    with app.test_request_context():
        environment = template_of(app, "de").environment
        code = environment.compile('<h1>{{ _("Sign in") }}</h1>', raw=True)
        assert "Anmelden" in code
        assert "Sign in" not in code  # no look-up left for render time
        assert (
            environment.from_string('<h1>{{ _("Sign in") }}</h1>').render() == "<h1>Anmelden</h1>"
        )
        with force_locale("de"):
            assert "<h1>Anmelden</h1>" in render_template("signin.html")
        with force_locale("en"):
            assert "<h1>Sign in</h1>" in render_template("signin.html")


#: Each as Jinja's own gettext has it at render time: a format string (``%%`` a percent sign),
#: HTML-safe when autoescaping, with escaped values.
SAME_AS_AT_RENDER_TIME = [
    ('{{ _("Hi %(name)s, 100%% done", name=who) }}', "Hi &lt;b&gt;, 100% done"),
    ('{{ _("100%% done") }}', "100% done"),
    ("{% trans name=who %}Hi {{ name }}{% endtrans %}", "Hi &lt;b&gt;"),
    ("{% trans %}Hi {{ who }}{% endtrans %}", "Hi &lt;b&gt;"),
    ('{% autoescape false %}{{ _("Hi %(name)s", name=who) }}{% endautoescape %}', "Hi <b>"),
    ('{{ _("Hi %(name)s", name=who)|length }}', "12"),  # of "Hi &lt;b&gt;"
    ('{{ ngettext("%(num)d page", "%(num)d pages", 2) }}', "2 pages"),
    ("{{ _(text) }}", "Skip to content"),
]


@pytest.mark.parametrize(("source", "expected"), SAME_AS_AT_RENDER_TIME)
def test_compiled_translations_mean_what_they_meant_at_render_time(app, source, expected):
    with app.test_request_context():
        environment = template_of(app, "en").environment
        values = {"who": "<b>", "text": "Skip to content"}
        assert environment.from_string(source).render(**values) == expected
        with force_locale("en"):  # the app's environment: looked up at render time
            assert render_template_string(source, **values) == expected


def test_translations_with_values_are_escaped_in_html_and_plain_in_text(app):
    source = '{{ _("%(company)s has been created with these sign-in details:", company=c) }}'
    with app.test_request_context():
        environment = template_of(app, "de").environment
        html = environment.from_string(source).render(c="<Praxis & Co>")
        assert html == "&lt;Praxis &amp; Co&gt; wurde mit diesen Anmeldedaten angelegt:"
        text = environment.from_string("{% autoescape false %}" + source + "{% endautoescape %}")
        assert (
            text.render(c="<Praxis & Co>")
            == "<Praxis & Co> wurde mit diesen Anmeldedaten angelegt:"
        )


def test_a_text_given_at_render_time_is_still_translated(app):
    with app.test_request_context():
        environment = template_of(app, "de").environment
        with force_locale("de"):
            translated = environment.from_string("{{ _(text) }}").render(text="Skip to content")
            assert translated == "Zum Inhalt springen"
            assert render_template_string('{{ _("Skip to content") }}') == translated


def test_a_language_without_translations_uses_the_apps_templates(make_app, locales):
    app = make_app(BABEL_TRANSLATION_DIRECTORIES=str(locales))  # English and German only
    with app.test_request_context():
        template = template_of(app, "fr")
        assert template.environment is app.jinja_env
        assert template.environment.locale is None
        with force_locale("fr"):
            assert "<h1>Sign in</h1>" in render_template("signin.html")


def test_a_text_that_is_no_format_string_fails_at_render_time_as_before(app):
    with app.test_request_context():
        environment = template_of(app, "en").environment
        template = environment.from_string('{{ _("all 100%") }}')  # compiles
        with pytest.raises(ValueError, match="format"):
            template.render()


def test_outside_a_request_templates_come_from_the_apps_environment(app):
    assert isinstance(app.jinja_env, templating.Environment)
    template = app.jinja_env.get_template("signin.html")
    assert template.environment is app.jinja_env


def test_a_render_sees_the_globals_as_jinja_gives_them(app):
    environment = app.jinja_env
    plain = environment.from_string("{{ greeting }} {{ name }}")
    environment.globals["greeting"] = "Hello"  # added after the template was made: seen
    try:
        assert plain.render(name="Ada") == "Hello Ada"
        assert plain.render(name="Ada", greeting="Hi") == "Hi Ada"  # values win over globals
        own = environment.from_string("{{ greeting }} {{ name }}", globals={"name": "Grace"})
        assert own.render() == "Hello Grace"  # a template's own globals over the app's
        assert "name" not in environment.globals  # and only its own
        assert plain.render() == "Hello "
    finally:
        del environment.globals["greeting"]
    assert plain.render(name="Ada") == " Ada"


# --- SQLAlchemy: rows written at once, statements compiled once ----------------------------------


def test_insert_now_writes_defaults_and_links_and_leaves_the_objects_as_if_loaded(app):

    from portal.core.models import (
        Customer,
        Event,
        Invitation,
        PartnerKind,
        new_id,
        utcnow,
    )
    from portal.domain import partners

    with app.app_context():
        session = db.session()
        partner = partners.create_partner(session, "Fabrikam", PartnerKind.DIRECT)
        session.commit()
        customer = _new_customer(partner)  # the foreign key comes from the link
        now = utcnow()
        invitation = Invitation(
            id=new_id(),
            customer=customer,
            nonce="n-1",
            expires_at=now,
            language="en",
            recipient="buyer@contoso.example.test",
            subject="Hello",
        )
        event = Event(kind="test.happened", actor="test")
        fastsql.insert_now(session, customer, invitation, event)
        # Defaults are on the objects as written; nothing is left to load or to insert again.
        assert customer.creator_id == partner.id
        assert invitation.customer_id == customer.id
        assert customer.requires_secrecy_amendment is False
        assert customer.address_line1 == ""
        assert invitation.revoked_at is None
        assert isinstance(event.id, int)
        assert customer in session
        assert not session.new
        customer.company_name = "Contoso Ltd"  # a later change is an UPDATE at flush
        session.commit()

        session.expire_all()
        stored = session.scalars(select(Customer).where(Customer.id == customer.id)).one()
        assert stored.company_name == "Contoso Ltd"
        assert stored.creator_id == partner.id
        assert stored.created_at == customer.created_at
        assert stored.requires_secrecy_amendment is False
        stored_invitation = session.get_one(Invitation, invitation.id)
        assert stored_invitation.customer_id == customer.id
        assert stored_invitation.include_credentials is True
        assert session.get_one(Event, event.id).kind == "test.happened"


def test_insert_now_refuses_an_object_already_in_the_session(app):
    from portal.core.models import Event

    with app.app_context():
        session = db.session()
        event = Event(kind="test.happened", actor="test")
        session.add(event)
        with pytest.raises(ValueError, match="already in a session"):
            fastsql.insert_now(session, event)
        session.rollback()


def test_compiled_write_updates_as_guarded_and_is_seen_by_engine_events(app):
    """Typed values (a time zone aware date, an enum, a boolean) are stored and read back, the
    WHERE clause guards as written, and the statement passes through the engine's events (so
    ``DATABASE_ECHO`` shows it)."""
    from datetime import UTC, datetime

    from sqlalchemy import bindparam, event, update

    from portal.core.models import Customer, CustomerRelationship, Progress, RelationshipOrigin
    from portal.domain import relationships

    r = CustomerRelationship
    guarded = fastsql.CompiledWrite(
        update(r)
        .where(r.customer_id == bindparam("of_customer"), r.progress == Progress.NOT_INVITED)
        .values(progress=Progress.INVITED, progress_at=bindparam("at"))
    )
    flag = fastsql.CompiledWrite(
        update(Customer)
        .where(Customer.id == bindparam("of_customer"))
        .values(requires_secrecy_amendment=bindparam("secrecy"))
    )
    seen: list[str] = []
    with app.app_context():
        session = db.session()
        customer = _stored_customer(session)
        fastsql.insert_now(
            session, relationships.new(customer, customer.creator, RelationshipOrigin.CREATED)
        )
        at = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
        listener = lambda *args: seen.append(args[2])  # noqa: E731 - statement is the 3rd
        event.listen(db.engine(), "before_cursor_execute", listener)
        try:
            guarded.run(session.connection(), {"of_customer": customer.id, "at": at})
            later = {"of_customer": customer.id, "at": datetime(2027, 1, 1, tzinfo=UTC)}
            guarded.run(session.connection(), later)  # guard: no row
            flag.run(session.connection(), {"of_customer": customer.id, "secrecy": True})
        finally:
            event.remove(db.engine(), "before_cursor_execute", listener)
        session.commit()
        session.expire_all()
        stored = session.get_one(r, (customer.id, customer.creator_id))
        assert stored.progress is Progress.INVITED
        assert stored.progress_at == at
        assert session.get_one(Customer, customer.id).requires_secrecy_amendment is True
        assert sum(s.startswith("UPDATE customer_relationships") for s in seen) == 2
        assert sum(s.startswith("UPDATE customers") for s in seen) == 1


def test_insert_now_refuses_sql_defaults_and_insert_listeners(app):
    """What it would get wrong is refused before anything is written: a column default that is
    SQL (its value would not be read back) and ``before_insert`` listeners (they would not run)."""
    from sqlalchemy import Column, Integer, String, event, func
    from sqlalchemy.orm import DeclarativeBase

    class Scratch(DeclarativeBase):
        pass

    class Stamped(Scratch):
        __tablename__ = "scratch_stamped"
        id = Column(Integer, primary_key=True)
        at = Column(String(40), default=func.current_timestamp())

    class Listened(Scratch):
        __tablename__ = "scratch_listened"
        id = Column(Integer, primary_key=True)
        name = Column(String(40))

    event.listen(Listened, "before_insert", lambda *args: None)
    with app.app_context():
        session = db.session()
        with pytest.raises(ValueError, match="SQL default"):
            fastsql.insert_now(session, Stamped(id=1))
        with pytest.raises(ValueError, match="before_insert"):
            fastsql.insert_now(session, Listened(id=1, name="x"))
        assert not session.in_transaction()  # refused before any statement
        session.add(Listened(id=1, name="x"))  # the ORM still works for them
        assert Listened in {type(o) for o in session.new}
        session.expunge_all()


def test_update_now_writes_and_leaves_the_object_as_the_database_has_it(app):
    """Values are written and held as committed (no UPDATE at flush); an increment is counted by
    the database and read again when used."""
    from sqlalchemy import event

    from portal.core.models import CustomerCredential

    with app.app_context():
        session = db.session()
        customer = _stored_customer(session)
        credential = CustomerCredential(customer=customer, user_name="admin@x", password_hash="h")
        fastsql.insert_now(session, credential)
        session.commit()
        before = credential.generation
        seen: list[str] = []
        listener = lambda *args: seen.append(args[2])  # noqa: E731 - statement is the 3rd
        event.listen(db.engine(), "before_cursor_execute", listener)
        try:
            fastsql.update_now(
                session, credential, password_hash="h2", generation=fastsql.INCREMENT
            )
            fastsql.update_now(
                session, credential, password_hash="h3", generation=fastsql.INCREMENT
            )
            assert credential.password_hash == "h3"
            assert credential.generation == before + 2  # read again: what the database counted
            assert not session.dirty
            session.commit()
        finally:
            event.remove(db.engine(), "before_cursor_execute", listener)
        assert sum(s.startswith("UPDATE customer_credentials") for s in seen) == 2
        session.expire_all()
        stored = session.get_one(CustomerCredential, credential.id)
        assert (stored.password_hash, stored.generation) == ("h3", before + 2)


def test_compiled_write_run_for_refreshes_a_loaded_object_only(app):
    from sqlalchemy import bindparam, update

    from portal.core.models import Customer

    rename = fastsql.CompiledWrite(
        update(Customer)
        .where(Customer.id == bindparam("customer_id"))
        .values(company_name=bindparam("name"))
    )
    with app.app_context():
        session = db.session()
        customer = _stored_customer(session)
        rename.run_for(
            session, Customer, customer.id, ["company_name"], customer_id=customer.id, name="New"
        )
        assert customer.company_name == "New"  # expired, so read again
        session.commit()
        session.expunge_all()  # not loaded: nothing to refresh, and nothing fails
        rename.run_for(
            session, Customer, customer.id, ["company_name"], customer_id=customer.id, name="Newer"
        )
        session.commit()
        assert session.get_one(Customer, customer.id).company_name == "Newer"


def test_compiled_read_rows_are_named_and_unnamed_columns_refused(app):
    from sqlalchemy import bindparam, func

    from portal.core.models import Customer, Partner

    with pytest.raises(ValueError, match="label every column once"):
        fastsql.CompiledRead(select(Customer.id, Partner.id))
    with pytest.raises(ValueError, match="label every column once"):
        fastsql.CompiledRead(select(func.count()))
    read = fastsql.CompiledRead(
        select(Customer.id, Customer.created_at, Partner.name.label("partner_name"))
        .join(Partner, Partner.id == Customer.creator_id)
        .where(Customer.id == bindparam("customer_id"))
    )
    with app.app_context():
        session = db.session()
        customer = _stored_customer(session)
        row = read.first(session, customer_id=customer.id)
        assert row == {
            "id": customer.id,
            "created_at": customer.created_at,
            "partner_name": "Fabrikam",
        }
        assert read.first_on(db.engine(), customer_id="none") is None


def _new_customer(partner):
    """A new customer, linked to ``partner`` by the relationship only."""
    from portal.core.models import Customer, new_id

    return Customer(
        id=new_id(),
        creator=partner,
        company_name="Contoso",
        domain="contoso.example.test",
        email="buyer@contoso.example.test",
        culture="en-US",
        language="en",
        country="US",
        contact_first_name="Tania",
        contact_last_name="Carr",
        contact_email="buyer@contoso.example.test",
    )


def _stored_customer(session):
    from portal.core.models import PartnerKind
    from portal.domain import partners

    customer = _new_customer(partners.create_partner(session, "Fabrikam", PartnerKind.DIRECT))
    fastsql.insert_now(session, customer)
    session.commit()
    return customer


def test_flask_wtfs_context_processor_is_left_out_and_the_global_is_ours(app):
    """Flask-WTF registers a context processor (a lambda of its module) that would put its own
    ``csrf_token`` over the template global; the fast path removes it by that module."""
    processors = app.template_context_processors[None]
    assert not [p for p in processors if getattr(p, "__module__", "") == "flask_wtf.csrf"]
    assert app.jinja_env.globals["csrf_token"] is fastpath.csrf_token
    from flask_wtf.csrf import CSRFProtect

    bare = flask.Flask("bare")
    bare.config["SECRET_KEY"] = "x" * 40
    CSRFProtect(bare)
    added = bare.template_context_processors[None]
    assert [p for p in added if getattr(p, "__module__", "") == "flask_wtf.csrf"]


# --- the status poll without Flask -------------------------------------------------------------


@pytest.mark.parametrize("base_url", ["http://127.0.0.1:8000", "https://portal.example.test"])
def test_the_status_shortcut_answers_as_the_view_would(make_app, make_api, base_url):
    """``fastpath.StatusShortcut`` answers a visible customer's status with the status, body
    and headers Flask's view gives (a query string sends the request on to the view), for a
    customer who accepted and one who did not; Flask's view is not called for it."""
    from portal.web.api import views
    from tests.test_pages import accept

    app = make_app(BASE_URL=base_url)
    client = app.test_client()
    api = make_api()
    api.client = client
    customer, made = invited(api)
    sign_in_from_link(client, made)
    change_password(client)
    accept(client)
    unsigned = api.create_customer()
    tracking = {"MS-RequestId": "req-1", "MS-CorrelationId": "corr-1", "X-Request-Id": "x-1"}
    for customer_id, signed in ((customer["id"], True), (unsigned["id"], False)):
        path = f"/v1/customers/{customer_id}/directSignedMicrosoftCustomerAgreementStatus"
        via_flask = api.get(path + "?through=flask", headers=tracking)
        shortcut = api.get(path, headers=tracking)
        assert via_flask.status_code == shortcut.status_code == 200
        assert shortcut.get_data() == via_flask.get_data()
        assert shortcut.get_json() == {"isSigned": signed}
        assert sorted(shortcut.headers.items()) == sorted(via_flask.headers.items())
    view = app.view_functions["api.direct_signed_status"]
    app.view_functions["api.direct_signed_status"] = lambda **_: (_ for _ in ()).throw(
        AssertionError("the view was called")
    )
    try:
        assert api.get(path).status_code == 200  # answered before Flask
        upper = path.replace(unsigned["id"], unsigned["id"].upper())
        assert api.get(upper).status_code == 200  # an id in capitals, as the view takes it
    finally:
        app.view_functions["api.direct_signed_status"] = view
    assert views.TRACKING_HEADERS == ("MS-RequestId", "MS-CorrelationId")


@pytest.mark.parametrize(
    ("path_of", "key_of", "status"),
    [
        (lambda c: c, lambda k: "wrong-" + k, 401),
        (lambda c: c[:-1] + ("0" if c[-1] != "0" else "1"), lambda k: k, 404),
        (lambda c: "not-an-id", lambda k: k, 404),
    ],
)
def test_what_the_shortcut_leaves_to_flask_is_answered_as_always(app, api, path_of, key_of, status):
    customer = api.create_customer()
    path = f"/v1/customers/{path_of(customer['id'])}/directSignedMicrosoftCustomerAgreementStatus"
    answer = api.client.get(path, headers={"Authorization": f"Bearer {key_of(api.key)}"})
    assert answer.status_code == status
    assert answer.get_json()["code"] == {401: 10401, 404: 10404}[status]
    assert answer.headers["MS-RequestId"]


def test_many_durations_observed_at_once_expose_as_each_observed_alone():
    """``metrics.observe_many`` writes prometheus_client's histogram buckets and sum itself
    (``ops.Tally`` adds a process's requests in one go): its exposition must be the library's."""
    from bisect import bisect_left

    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    from portal.core import metrics

    durations = [0.0001, 0.002, 0.0021, 0.04, 0.04, 0.3, 7.0, 12.0, 0.0]
    exposed = []
    for at_once in (False, True):
        registry = CollectorRegistry()
        histogram = Histogram(
            "took_seconds",
            "Durations.",
            ["endpoint"],
            buckets=metrics.LATENCY_BOUNDS[:-1],
            registry=registry,
        ).labels("api.status")
        if at_once:
            buckets = [0] * len(metrics.LATENCY_BOUNDS)
            for seconds in durations:
                buckets[bisect_left(metrics.LATENCY_BOUNDS, seconds)] += 1
            metrics.observe_many(histogram, buckets, sum(durations))
        else:
            for seconds in durations:
                histogram.observe(seconds)
        exposed.append(
            b"\n".join(
                line for line in generate_latest(registry).splitlines() if b"_created" not in line
            )
        )
    assert exposed[0] == exposed[1]
    assert b'took_seconds_bucket{endpoint="api.status",le="0.002"} 3.0' in exposed[1]
