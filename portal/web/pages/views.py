"""Customer pages (HTML): the invitation link, sign-in, the password change, the agreement.

Links land on GET and change nothing but the first-opened time; every change is a POST with a
CSRF token. A signed-in customer who has not accepted yet is sent to the agreement first.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any

from babel import Locale
from flask import (
    Blueprint,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from werkzeug.routing import PathConverter

from portal.core import catalog, credentials, db
from portal.core.errors import InvalidFields, ProblemCode
from portal.core.models import AgreementAcceptance, Customer, LinkState, Partner
from portal.domain import (
    acceptance,
    customers,
    invitations,
    relationship_requests,
    relationships,
    resets,
    signin,
)
from portal.domain.acceptance import Contact
from portal.domain.invitations import LinkSettings
from portal.i18n import languages, wording
from portal.web import auth, redirects

bp = Blueprint("pages", __name__)


class LinkConverter(PathConverter):
    """Whatever follows /invite/, even broken: every damaged link gets the "not valid" page."""

    regex = "(?s:.+)"


#: HTTP status of each landing page: the link is bad or used up, but none of them is a 5xx.
_LANDING_STATUS = {
    LinkState.VALID: 200,
    LinkState.ACCEPTED: 200,
    LinkState.EXPIRED: 410,
    LinkState.REVOKED: 410,
    LinkState.SUPERSEDED: 410,
    LinkState.INVALID: 404,
}
SESSION_KEY = "sid"


@bp.app_template_global()
def agreement_name(template_id: str) -> str:
    """The catalog's agreement, named in the page's language."""
    agreement = catalog.current().by_template(template_id)
    return wording.agreement_name(agreement.type, agreement.name) if agreement else ""


# Template globals rather than a context processor's: nothing to make per render.
bp.add_app_template_global(wording.agreement_summary, "agreement_summary")
bp.add_app_template_global(wording.person_name, "person_name")


def _peppers() -> list[bytes]:
    result: list[bytes] = current_app.extensions["portal.peppers"]
    return result


def _temporary_max_age() -> timedelta:
    return timedelta(seconds=int(current_app.config["INVITATION_MAX_AGE"]))


# --- who is signed in ---------------------------------------------------------------------------


@bp.before_app_request
def load_customer() -> None:
    g.signed_in = None
    g.customer = None
    if request.blueprint == "api":
        return
    token = session.get(SESSION_KEY)
    if not token:
        return
    signed_in = signin.current(
        db.session(),
        token,
        timedelta(seconds=int(current_app.config["SESSION_IDLE_TIMEOUT"])),
        _temporary_max_age(),
    )
    if db.session().in_transaction():  # it noted something
        _commit_noted("session activity")
    if signed_in is None:
        session.pop(SESSION_KEY, None)
        return
    g.signed_in = signed_in
    g.customer = signed_in.customer


def _commit_noted(what: str) -> None:
    """GET requests only note things by the way; POST requests commit what they change."""
    if request.method == "GET":
        db.commit_if_possible(what)
    else:
        db.session().commit()


def _direct_acceptances(customer_id: str) -> list[AgreementAcceptance]:
    return acceptance.of_customer(db.session(), customer_id)


def customer_page(
    gate: bool = True,
) -> Callable[[Callable[..., ResponseReturnValue]], Callable[..., ResponseReturnValue]]:
    """Signed-in customers only; with ``gate``, only once they have accepted."""

    def decorate(view: Callable[..., ResponseReturnValue]) -> Callable[..., ResponseReturnValue]:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> ResponseReturnValue:
            signed_in: signin.SignedIn | None = g.signed_in
            if signed_in is None:
                return redirect(url_for("pages.signin_form", next=request.path))
            if signed_in.must_change_password and request.endpoint not in {
                "pages.password_form",
                "pages.password",
                "pages.signout",
            }:
                return redirect(url_for("pages.password_form"))
            if gate and not signed_in.accepted:
                return redirect(url_for("pages.agreement_form"))
            return view(*args, **kwargs)

        return wrapped

    return decorate


def _begin_session(credential: Any) -> ResponseReturnValue:
    """Sign in: a new session id every time (no fixation), then where the customer must go."""
    started = signin.start(
        db.session(), credential, auth.client_address(), request.headers.get("User-Agent", "")
    )
    db.session().commit()
    auth.begin(SESSION_KEY, started.token)
    if started.record.must_change_password:
        # A relationship request's page, say: shown once the password is chosen.
        if _next(""):
            session[RETURN_AFTER_KEY] = _next("")
        return redirect(url_for("pages.password_form"))
    return redirect(_next(url_for("pages.account")))


#: The session key that keeps where a sign-in was going while the first password is chosen.
RETURN_AFTER_KEY = "return_after"


def _next(default: str) -> str:
    """The page a sign-in form was asked to return to, if it is one of this site's."""
    return redirects.local_target(request.values.get("next"), default)


# --- the invitation link ------------------------------------------------------------------------


def _landing(token: str) -> tuple[invitations.Landing, dict[str, Any]]:
    landing = invitations.follow(db.session(), LinkSettings.from_config(current_app.config), token)
    context: dict[str, Any] = {}
    customer = g.link_customer = landing.customer
    if customer is not None:
        context.update(
            partner_name=customer.partner_name,
            company_name=customer.company_name,
            user_name=customer.user_name or "",
            # Who accepted, and when, only for the customer signed in: anyone may hold an old
            # link (a forwarded email).
            accepted=_direct_acceptances(customer.id)
            if landing.state is LinkState.ACCEPTED and _signed_in_as(customer.id)
            else [],
        )
    _commit_noted("invitation opening")
    return landing, context


def _signed_in_as(customer_id: str) -> bool:
    signed_in: signin.SignedIn | None = g.signed_in
    return signed_in is not None and signed_in.customer.id == customer_id


@bp.get("/invite", defaults={"token": ""})
@bp.get("/invite/", defaults={"token": ""})
@bp.get("/invite/<link:token>")
def invite(token: str) -> ResponseReturnValue:
    """Check the link and show the sign-in page. A GET only records the first opening: mail
    scanners open links too."""
    landing, context = _landing(token)
    return (
        render_template(f"invite/{landing.state}.html", **context),
        _LANDING_STATUS[landing.state],
    )


# --- sign-in, sign-out, password ----------------------------------------------------------------


@bp.get("/signin")
def signin_form() -> ResponseReturnValue:
    return render_template("signin.html", next=_next(""))


@bp.post("/signin")
@db.reads_first
def signin_post() -> ResponseReturnValue:
    user_name = request.form.get("user_name", "")
    attempt = auth.attempt("customer", user_name)
    try:
        credential = signin.authenticate(
            db.session(),
            user_name,
            request.form.get("password", ""),
            _peppers(),
            _temporary_max_age(),
        )
    except signin.SignInFailed:
        return render_template(
            "signin.html", failed=True, next=_next(""), user_name=user_name[:254]
        ), 401
    db.session().commit()  # the checks wrote nothing; the sign-in is a transaction of its own
    attempt.succeeded()
    return _begin_session(credential)


@bp.post("/signout")
def signout() -> ResponseReturnValue:
    signed_in: signin.SignedIn | None = g.signed_in
    if signed_in is not None:
        signin.end(db.session(), signed_in)
        db.session().commit()
    auth.end()
    return redirect(url_for("pages.signin_form", signed_out=1))


@bp.get("/password")
@customer_page(gate=False)
def password_form() -> ResponseReturnValue:
    return _password_page()


def _password_page(problem: ProblemCode | None = None, status: int = 200) -> ResponseReturnValue:
    signed_in: signin.SignedIn = g.signed_in
    return render_template(
        "password.html", first=signed_in.must_change_password, problem=problem
    ), status


@bp.post("/password")
@db.reads_first
@customer_page(gate=False)
def password() -> ResponseReturnValue:
    signed_in: signin.SignedIn = g.signed_in
    new = request.form.get("password", "")
    problem = signin.password_problem(
        new, request.form.get("repeat", ""), signed_in.customer.user_name or ""
    )
    if problem is not None:
        return _password_page(problem, 400)
    # The current password is a password like any other: its guesses count as sign-ins do.
    attempt = None
    if not signed_in.must_change_password:
        attempt = auth.attempt("customer", signed_in.customer.user_name or "")
    try:
        new_hash = signin.new_password_hash(
            db.session(), signed_in, new, request.form.get("current"), _peppers()
        )
    except signin.WrongCurrentPassword:
        return _password_page(ProblemCode.WRONG_CURRENT, 401)
    except signin.WeakPassword:  # the password in use (so a right current password)
        if attempt is not None:
            attempt.succeeded()
        return _password_page(ProblemCode.SAME_AS_CURRENT, 400)
    except signin.SessionOver:
        return _session_over()
    db.session().commit()  # the checks wrote nothing; the change is a transaction of its own
    if attempt is not None:
        attempt.succeeded()
    try:
        started = signin.change_password(
            db.session(),
            signed_in,
            new_hash,
            ip_address=auth.client_address(),
            user_agent=request.headers.get("User-Agent", ""),
        )
    except signin.SessionOver:  # another browser changed it in between
        db.session().rollback()
        return _session_over()
    db.session().commit()
    after = session.pop(RETURN_AFTER_KEY, None)
    auth.begin(SESSION_KEY, started.token)  # the session goes on under a new id
    return redirect(redirects.local_target(after, url_for("pages.agreement_form")))


# --- forgot password ----------------------------------------------------------------------------


def _reset_links() -> resets.ResetLinks:
    return resets.ResetLinks.from_config(current_app.config)


@bp.get("/password/forgot")
def forgot_form() -> ResponseReturnValue:
    return render_template("forgot.html", sent=False)


@bp.post("/password/forgot")
def forgot() -> ResponseReturnValue:
    """Store the request as typed and give the same answer whether or not the account exists;
    the mail sender sends the link (``resets.prepare``). Counted as a sign-in attempt."""
    user_name = request.form.get("user_name", "").strip()
    if not user_name:
        return render_template("forgot.html", sent=False, problem=True), 400
    auth.attempt("customer", user_name)  # never "succeeded": asking uses up the same limits
    resets.request(db.session(), user_name, str(languages.current_locale()))
    db.session().commit()
    return render_template("forgot.html", sent=True)


@bp.get("/password/reset/<link:token>")
def reset_form(token: str) -> ResponseReturnValue:
    if resets.check(db.session(), _reset_links(), token) is None:
        return render_template("reset.html", valid=False), 410
    return render_template("reset.html", valid=True)


@bp.post("/password/reset/<link:token>")
@db.reads_first
def reset_password(token: str) -> ResponseReturnValue:
    """Set the new password once; every session of the account ends; then sign in."""
    credential = resets.check(db.session(), _reset_links(), token)
    if credential is None:
        return render_template("reset.html", valid=False), 410
    new = request.form.get("password", "")
    problem = signin.password_problem(new, request.form.get("repeat", ""), credential.user_name)
    if problem is not None:
        return render_template("reset.html", valid=True, problem=problem), 400
    password_hash = credentials.hash_password(new)  # slow: before the write begins
    db.session().commit()
    if not resets.reset(db.session(), credential, password_hash):
        db.session().rollback()
        return render_template("reset.html", valid=False), 410
    db.session().commit()
    auth.end()
    return redirect(url_for("pages.signin_form", reset=1))


def _session_over() -> ResponseReturnValue:
    auth.end()
    return redirect(url_for("pages.signin_form"))


# --- the agreement ------------------------------------------------------------------------------


def _document_language(customer: customers.PageCustomer) -> str:
    """The language the customer reads in: their pick on the page, else their record's."""
    picked = session.get("lang")
    return picked.replace("_", "-") if isinstance(picked, str) else customer.culture


def _agreement_context(customer: customers.PageCustomer, **extra: Any) -> dict[str, Any]:
    shown = acceptance.to_accept(customer, catalog.current(), _document_language(customer))
    return {"customer": customer, "partner_name": customer.partner_name, "shown": shown, **extra}


def _acceptor_form() -> dict[str, str]:
    """Who accepts, as the agreement form sent it (each field cut to a sane length)."""
    return {
        name: request.form.get(name, "")[:300]
        for name in ("first_name", "last_name", "email", "phone")
    }


def _confirm(
    customer: Customer, recorded: list[AgreementAcceptance], partner_name: str | None = None
) -> None:
    """Email the acceptor the confirmation of what was just accepted (after commit)."""
    acceptance.confirm_acceptance(
        db.session(),
        customer,
        recorded,
        catalog.current(),
        locale=str(languages.current_locale()),
        base_url=current_app.config["BASE_URL"],
        partner_name=partner_name,
    )


@bp.get("/agreement")
@customer_page(gate=False)
def agreement_form() -> ResponseReturnValue:
    signed_in: signin.SignedIn = g.signed_in
    customer = signed_in.customer
    if signed_in.accepted:
        return redirect(url_for("pages.account"))
    form = {
        "first_name": customer.contact_first_name,
        "last_name": customer.contact_last_name,
        "email": customer.contact_email,
        "phone": customer.contact_phone,
    }
    return render_template("agreement.html", **_agreement_context(customer, form=form))


@bp.post("/agreement")
@customer_page(gate=False)
def agreement() -> ResponseReturnValue:
    signed_in: signin.SignedIn = g.signed_in
    form = _acceptor_form()
    context = _agreement_context(signed_in.customer, form=form)
    if request.form.get("accept") != "yes":
        if signed_in.accepted:  # a repeated submission of an accepted page
            return redirect(url_for("pages.account", accepted=1))
        return render_template("agreement.html", problems={"accept": True}, **context), 400
    contact = Contact(form["first_name"], form["last_name"], form["email"], form["phone"])
    customer = db.session().get_one(Customer, signed_in.customer.id)
    try:
        recorded, new = acceptance.accept_directly(
            db.session(),
            customer,
            context["shown"],
            contact=contact,
            user_name=signed_in.customer.user_name or "",
            ip_address=auth.client_address(),
            user_agent=request.headers.get("User-Agent", ""),
        )
    except InvalidFields as exc:
        problems = {name.split(".", 1)[1]: True for name in exc.parameters}
        return render_template("agreement.html", problems=problems, **context), 400
    if new:
        _confirm(customer, recorded)
    db.session().commit()
    return redirect(url_for("pages.account", accepted=1))


@bp.get("/account")
@customer_page()
def account() -> ResponseReturnValue:
    customer: customers.PageCustomer = g.customer
    return render_template(
        "account.html",
        customer=customer,
        partner_name=customer.partner_name,
        accepted=_direct_acceptances(customer.id),
        partners=relationships.partners_of(db.session(), customer.id),
        just_accepted=bool(request.args.get("accepted")),
        mail_sent=bool(current_app.config.get("MAIL_SERVER")),
        notice=session.pop(NOTICE_KEY, None),
    )


#: The session key that carries what just happened to a partner (``removed``, ``accepted``,
#: ``declined``) and its name, to the account page.
NOTICE_KEY = "partner_notice"


def _customers_partner(partner_id: str) -> relationships.CustomersPartner:
    """One of the signed-in customer's active partners, or the 404 page."""
    customer: customers.PageCustomer = g.customer
    for partner in relationships.partners_of(db.session(), customer.id):
        if partner.partner_id == partner_id:
            return partner
    abort(404)


@bp.get("/account/partners/<partner_id>/remove")
@customer_page()
def remove_partner_form(partner_id: str) -> ResponseReturnValue:
    return render_template("remove_partner.html", partner=_customers_partner(partner_id))


@bp.post("/account/partners/<partner_id>/remove")
@customer_page()
def remove_partner(partner_id: str) -> ResponseReturnValue:
    """The customer ends a partner's relationship; the partner loses access at once."""
    signed_in: signin.SignedIn = g.signed_in
    partner = _customers_partner(partner_id)
    customer = db.session().get_one(Customer, signed_in.customer.id)
    relationships.remove(
        db.session(),
        customer,
        partner_id,
        by=f"customer:{signed_in.customer.user_name}",
        base_url=current_app.config["BASE_URL"],
    )
    db.session().commit()
    session[NOTICE_KEY] = ("removed", partner.name)
    return redirect(url_for("pages.account"))


# --- relationship requests ----------------------------------------------------------------------


def _request(token: str) -> relationship_requests.Request | None:
    links = LinkSettings.from_config(current_app.config)
    return relationship_requests.opened(db.session(), links, token)


def _request_page(
    found: relationship_requests.Request | None, status: int = 200, **extra: Any
) -> ResponseReturnValue:
    """The request's page for whoever opened it: the sign-in for a stranger (nothing on it
    depends on who the customer is), the answer form for a signed-in customer."""
    if found is None:
        return render_template("relationship.html", request_=None), 404
    signed_in: signin.SignedIn | None = g.signed_in
    personal = found.personal
    country = found.partner.country
    context: dict[str, Any] = {
        "request_": found,
        "partner": found.partner,
        "partner_country": Locale.parse(languages.current_locale()).territories.get(
            country, country
        ),
    }
    if signed_in is not None:
        customer = signed_in.customer
        context.update(
            customer=customer,
            elsewhere=personal is not None and personal.domain != customer.domain,
            already=relationships.active(db.session(), customer.id, found.partner.id) is not None,
            allowed=relationship_requests.may_serve(found.partner, customer.country),
            shown=[]
            if signed_in.accepted
            else acceptance.to_accept(customer, catalog.current(), _document_language(customer)),
            form={
                "first_name": customer.contact_first_name,
                "last_name": customer.contact_last_name,
                "email": customer.contact_email,
                "phone": customer.contact_phone,
            },
        )
    context["closed"] = found.closed and not context.get("already")
    context.update(extra)
    if context["closed"] and status == 200:
        status = 410
    return render_template("relationship.html", **context), status


@bp.get("/relationship/<link:token>")
def relationship_request(token: str) -> ResponseReturnValue:
    signed_in: signin.SignedIn | None = g.signed_in
    if signed_in is not None and signed_in.must_change_password:
        return redirect(url_for("pages.password_form"))
    found = _request(token)
    if db.session().in_transaction():  # a personal request's first opening, noted
        _commit_noted("relationship request opened")
    return _request_page(found)


@bp.post("/relationship/<link:token>")
@customer_page(gate=False)
def answer_relationship_request(token: str) -> ResponseReturnValue:
    """Accept (with the agreement, if not accepted yet) or decline, in one submission."""
    signed_in: signin.SignedIn = g.signed_in
    found = _request(token)
    if found is None:
        return _request_page(None)
    user_name = signed_in.customer.user_name or ""
    customer = db.session().get_one(Customer, signed_in.customer.id)
    partner = db.session().get_one(Partner, found.partner.id)
    personal = found.personal
    if found.closed or (personal is not None and personal.domain != customer.domain):
        return _request_page(found, 409)
    if request.form.get("answer") == "decline":
        relationship_requests.decline(db.session(), customer, partner, user_name=user_name)
        relationship_requests.answered(found, customer, "declined")
        db.session().commit()
        session[NOTICE_KEY] = ("declined", partner.name)
        return redirect(url_for("pages.account"))
    form = _acceptor_form()
    shown = (
        []
        if signed_in.accepted
        else acceptance.to_accept(
            signed_in.customer, catalog.current(), _document_language(signed_in.customer)
        )
    )
    if request.form.get("answer") != "accept" or (shown and request.form.get("accept") != "yes"):
        return _request_page(found, 400, form=form, problems={"accept": True})
    contact = Contact(form["first_name"], form["last_name"], form["email"], form["phone"])
    try:
        _, recorded, new = relationship_requests.accept(
            db.session(),
            customer,
            partner,
            user_name=user_name,
            shown=shown,
            contact=contact,
            ip_address=auth.client_address(),
            user_agent=request.headers.get("User-Agent", ""),
        )
    except InvalidFields as exc:
        problems = {name.split(".", 1)[1]: True for name in exc.parameters}
        return _request_page(found, 400, form=form, problems=problems)
    except relationship_requests.OutsideRegion:
        return _request_page(found, 409)
    relationship_requests.answered(found, customer, "accepted")
    if new:
        _confirm(customer, recorded, partner.name)
    try:
        db.session().commit()
    except relationship_requests.RaceLost:  # the same answer, submitted twice at once
        db.session().rollback()
    session[NOTICE_KEY] = ("accepted", partner.name)
    return redirect(url_for("pages.account"))


@bp.get("/")
def home() -> ResponseReturnValue:
    if g.signed_in is not None:
        return redirect(url_for("pages.account"))
    return redirect(url_for("pages.signin_form"))


#: Redoc styles its page with inline styles and searches in a worker made from a blob; it
#: loads nothing from elsewhere.
DOCS_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@bp.get("/docs")
def docs() -> ResponseReturnValue:
    """The partner API's reference, rendered from /v1/openapi.json by the vendored Redoc."""
    response = current_app.make_response(render_template("docs.html"))
    response.headers["Content-Security-Policy"] = DOCS_CSP
    return response


@bp.get("/favicon.ico")
def favicon() -> ResponseReturnValue:
    """The icon, where browsers look for it without a page's link (a 404 otherwise)."""
    return redirect(url_for("static", filename="favicon.svg"), code=301)


@bp.post("/language")
def language() -> ResponseReturnValue:
    """Remember the language the customer picked, and go back to the page it was picked on."""
    chosen = request.form.get("lang", "")
    if chosen in languages.available_locales():
        session["lang"] = chosen
    return redirect(redirects.local_target(request.form.get("next"), url_for("pages.home")))
