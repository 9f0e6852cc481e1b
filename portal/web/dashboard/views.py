"""The partner dashboard (HTML, ``/dashboard``): customers, invitations, attestation, evidence,
relationship requests, webhooks.

The web twin of the partner API for people: the same domain functions, the same partner
isolation (every customer is looked up through the signed-in user's partner), one commit per
request, CSRF on every form. Pages are never cached: some show credentials once.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from functools import wraps
from typing import Any
from urllib.parse import quote

from babel import Locale
from flask import (
    Blueprint,
    Response,
    current_app,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    stream_with_context,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import format_date, format_number, gettext

from portal.core import catalog, db
from portal.core.catalog import CUSTOMER_AGREEMENT
from portal.core.errors import (
    AttestationExists,
    CustomerNotFound,
    DomainTaken,
    InvalidFields,
    InvalidParameter,
    NotFound,
    PortalError,
)
from portal.core.models import (
    Customer,
    Invitation,
    Partner,
    PartnerUser,
    UserRole,
    WebhookEndpoint,
    iso,
)
from portal.domain import (
    acceptance,
    bulk,
    customers,
    invitations,
    partners,
    receipts,
    relationship_requests,
    relationships,
    reports,
    users,
    webhooks,
)
from portal.domain.acceptance import Contact
from portal.domain.invitations import LinkSettings
from portal.i18n import languages
from portal.web import auth, redirects
from portal.web.dashboard import charts, labels
from portal.web.dashboard.labels import _

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard")


SESSION_KEY = "dsid"


# --- who is signed in ----------------------------------------------------------------------------


@bp.before_request
def load_user() -> None:
    g.partner_user = None
    record = users.current(db.session(), session.get(SESSION_KEY), _idle())
    if db.session().dirty:
        if request.method == "GET":
            db.commit_if_possible("dashboard session activity")
        else:
            db.session().commit()
    if record is None:
        session.pop(SESSION_KEY, None)
        return
    g.user_session = record
    g.partner_user = record.user


@bp.context_processor
def dashboard_user() -> dict[str, Any]:
    return {"dashboard_user": g.get("partner_user")}


def _idle() -> timedelta:
    return timedelta(seconds=int(current_app.config["SESSION_IDLE_TIMEOUT"]))


def signed_in(view: Callable[..., ResponseReturnValue]) -> Callable[..., ResponseReturnValue]:
    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> ResponseReturnValue:
        if g.partner_user is None:
            if request.method == "GET":
                here = redirects.local_target(request.full_path, "", within="/dashboard")
                return redirect(url_for("dashboard.signin_form", next=here or None))
            return redirect(url_for("dashboard.signin_form"))
        return view(*args, **kwargs)

    return wrapped


def _user() -> PartnerUser:
    user: PartnerUser = g.partner_user
    return user


def _partner() -> Partner:
    return _user().partner


def _actor() -> str:
    return f"user:{_user().email}"


def _customer(customer_id: str) -> Customer:
    """The customer, if the user's partner may see it; the same 404 otherwise."""
    return customers.get_visible(db.session(), _partner().id, customer_id)


# --- sign-in and sign-out ------------------------------------------------------------------------


def _next() -> str:
    """The dashboard page a sign-in form was asked to return to (the overview otherwise)."""
    return redirects.local_target(
        request.values.get("next"), url_for("dashboard.overview"), within="/dashboard"
    )


@bp.get("/signin")
def signin_form() -> ResponseReturnValue:
    if g.partner_user is not None:
        return redirect(url_for("dashboard.overview"))
    return render_template("dashboard/signin.html", next=_next())


@bp.post("/signin")
@db.reads_first
def signin() -> ResponseReturnValue:
    email = request.form.get("email", "")
    attempt = auth.attempt("dashboard", email)
    try:
        user = users.authenticate(db.session(), email, request.form.get("password", ""))
    except users.SignInFailed:
        return render_template(
            "dashboard/signin.html", failed=True, email=email[:254], next=_next()
        ), 401
    db.session().commit()  # the checks wrote nothing; the sign-in is a transaction of its own
    attempt.succeeded()
    started = users.start(db.session(), user, auth.client_address())
    db.session().commit()
    auth.begin(SESSION_KEY, started.token)
    return redirect(_next())


@bp.post("/signout")
def signout() -> ResponseReturnValue:
    record = g.get("user_session")
    if record is not None:
        users.end(record)
        db.session().commit()
    auth.end()
    return redirect(url_for("dashboard.signin_form", signed_out=1))


# --- overview and customer list ------------------------------------------------------------------


# The dashboard templates' helpers: template globals, not context a processor makes per render.
for _helper in (
    labels.state_name,
    labels.delivery_name,
    labels.request_state_name,
    labels.moment_name,
    labels.webhook_event_name,
    labels.webhook_status_name,
    format_number,
):
    bp.add_app_template_global(_helper)


@bp.get("/")
@signed_in
def overview() -> ResponseReturnValue:
    session_ = db.session()
    partner_id = _partner().id
    funnel = reports.funnel(session_, partner_id)
    weekly = reports.acceptances_by_week(session_, partner_id)
    return render_template(
        "dashboard/overview.html",
        funnel=funnel,
        total=sum(funnel.values()),
        funnel_chart=charts.horizontal_bars([(labels.state_name(k), v) for k, v in funnel.items()]),
        weekly=weekly,
        weekly_chart=charts.columns(
            [(str(format_date(start, "d MMM")), count) for start, count in weekly]
        ),
        waiting=reports.waiting_longest(session_, partner_id),
        failed=reports.failed_deliveries(session_, partner_id),
    )


@bp.get("/customers")
@signed_in
def customer_list() -> ResponseReturnValue:
    try:
        page = reports.customer_page(
            db.session(),
            _partner().id,
            query=request.args.get("q", ""),
            state=request.args.get("state", ""),
            cursor=request.args.get("after", "")[:200],
        )
    except InvalidParameter as exc:
        if "q" not in exc.parameters:
            raise
        refused = reports.CustomerPage(rows=[], next_cursor=None)
        return render_template(
            "dashboard/customers.html",
            page=refused,
            states=reports.STATES,
            problem=_("A search cannot contain control characters such as line breaks."),
        ), 400
    waiting = relationship_requests.waiting_count(db.session(), _partner().id)
    return render_template(
        "dashboard/customers.html", page=page, states=reports.STATES, waiting_requests=waiting
    )


# --- a new customer ------------------------------------------------------------------------------

_CUSTOMER_FIELDS = [
    "company_name",
    "domain",
    "email",
    "culture",
    "country",
    "first_name",
    "last_name",
    "address_line1",
    "address_line2",
    "city",
    "state",
    "postal_code",
    "phone",
    "contact_first_name",
    "contact_last_name",
    "contact_email",
    "contact_phone",
]


def _countries() -> list[tuple[str, str]]:
    """(code, name in the page's language), sorted by name."""
    names = Locale.parse(languages.current_locale()).territories
    return sorted(
        ((code, names.get(code, name)) for code, name in catalog.current().countries.items()),
        key=lambda item: item[1].casefold(),
    )


@bp.get("/customers/new")
@signed_in
def new_customer_form() -> ResponseReturnValue:
    form = dict.fromkeys(_CUSTOMER_FIELDS, "")
    form.update(culture="en-US", country="US")
    return render_template(
        "dashboard/new_customer.html", form=form, problems={}, countries=_countries()
    )


@bp.post("/customers/new")
@signed_in
def new_customer() -> ResponseReturnValue:
    form = {name: request.form.get(name, "")[:300] for name in _CUSTOMER_FIELDS}
    culture = form["culture"].strip()
    values: dict[str, Any] = {name: value.strip() for name, value in form.items()}
    data = customers.NewCustomer(
        **values,
        language=culture.split("-", 1)[0].lower(),
        requires_secrecy_amendment=request.form.get("secrecy") == "yes",
    )
    try:
        created = customers.create_customer(
            db.session(),
            _partner(),
            data,
            catalog.current(),
            current_app.extensions["portal.peppers"][0],
            actor=_actor(),
        )
    except InvalidFields as exc:
        problems = labels.problems(exc)
        if "language" in problems:
            problems.setdefault("culture", problems.pop("language"))
        return render_template(
            "dashboard/new_customer.html",
            form=form,
            problems=problems,
            countries=_countries(),
            secrecy=data.requires_secrecy_amendment,
        ), 400
    except DomainTaken:
        db.session().rollback()
        return render_template(
            "dashboard/new_customer.html",
            form=form,
            problems={"domain": _("A customer with this domain already exists.")},
            countries=_countries(),
            secrecy=data.requires_secrecy_amendment,
        ), 409
    db.session().commit()
    return render_template("dashboard/created.html", created=created), 201


# --- one customer --------------------------------------------------------------------------------


@bp.get("/customers/<customer_id>")
@signed_in
def customer(customer_id: str) -> ResponseReturnValue:
    found = _customer(customer_id)
    return render_template("dashboard/customer.html", **_customer_context(found))


def _customer_context(found: Customer, **extra: Any) -> dict[str, Any]:
    session_ = db.session()
    partner_id = _partner().id
    seen = relationships.seen(session_, partner_id, found.id)
    if seen is None:  # removed between the look-up and now
        raise CustomerNotFound(customerId=found.id)
    listed = invitations.for_customer(session_, found, partner_id)
    return {
        "customer": found,
        "state": reports.display_state(seen),
        "timeline": reports.timeline(session_, partner_id, found),
        "evidence": reports.evidence(session_, partner_id, found),
        "invitations": [(i, invitations.status(i)) for i in listed],
        "may_invite": seen.partner_id == found.creator_id,
        "may_attest": _partner().may_attest and _user().role is UserRole.ADMIN_AGENT,
        "attest_form": extra.pop("attest_form", None) or _attest_defaults(found),
        "attest_problems": extra.pop("attest_problems", {}),
        "today": datetime.now(UTC).date().isoformat(),
        "mca_template": _mca_template(),
        **extra,
    }


def _mca_template() -> str:
    agreement = catalog.current().by_type(CUSTOMER_AGREEMENT)
    return agreement.template_id if agreement else ""


@bp.get("/customers/<customer_id>/evidence.json")
@signed_in
def evidence_json(customer_id: str) -> ResponseReturnValue:
    found = _customer(customer_id)
    body = reports.evidence_json(found, reports.evidence(db.session(), _partner().id, found))
    return Response(
        json.dumps(body, indent=2, ensure_ascii=False),
        mimetype="application/json",
        headers={"Content-Disposition": f'attachment; filename="evidence-{found.id}.json"'},
    )


@bp.get("/customers/<customer_id>/receipt.pdf")
@signed_in
def receipt_pdf(customer_id: str) -> ResponseReturnValue:
    found = _customer(customer_id)
    partner = _partner()
    pdf = receipts.receipt_pdf(
        found, reports.evidence(db.session(), partner.id, found), catalog.current(), partner.name
    )
    return Response(
        pdf,
        mimetype="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="receipt-{found.id}.pdf"'},
    )


# --- invitations ---------------------------------------------------------------------------------


def _links() -> LinkSettings:
    return LinkSettings.from_config(current_app.config)


@bp.post("/customers/<customer_id>/invitations")
@signed_in
def invite(customer_id: str) -> ResponseReturnValue:
    found = _customer(customer_id)
    language = request.form.get("language", "") or None
    options = invitations.Options(
        send=request.form.get("send") == "yes",
        language=language,
        include_credentials=request.form.get("credentials", "yes") == "yes",
    )
    try:
        issued = invitations.create(
            db.session(),
            found,
            options,
            links=_links(),
            pepper=current_app.extensions["portal.peppers"][0],
            locales=languages.available_locales(),
            actor=_actor(),
            partner_id=_partner().id,
        )
    except invitations.AlreadyAccepted:
        return _back_to(found, _("This customer has already accepted."), 409)
    except InvalidFields:  # only a language the form does not offer
        return _back_to(found, _("Choose a language from the list."), 400)
    db.session().commit()
    return _invitation_screen(found, issued.invitation, password=issued.password, sent=options.send)


def _invitation_screen(
    found: Customer, invite_: Invitation, text: str | None = None, **extra: Any
) -> str:
    """The invitation screen; ``text``: the partner's edit of the email, shown instead of the
    kept one when it could not be sent."""
    shown = invite_.text_body if text is None else text
    return render_template(
        "dashboard/invitation.html",
        customer=found,
        invitation=invite_,
        text=shown,
        mailto=_mailto(invite_, shown) if invite_.text_body else "",
        **extra,
    )


def _mailto(invitation: Invitation, body: str) -> str:
    return (
        f"mailto:{quote(invitation.recipient, safe='@')}"
        f"?subject={quote(invitation.subject, safe='')}&body={quote(body, safe='')}"
    )


def _invitation(customer_id: str, invitation_id: str) -> tuple[Customer, Invitation]:
    found = _customer(customer_id)
    return found, invitations.get(db.session(), found, invitation_id, _partner().id)


@bp.get("/customers/<customer_id>/invitations/<invitation_id>")
@signed_in
def invitation(customer_id: str, invitation_id: str) -> ResponseReturnValue:
    found, invite_ = _invitation(customer_id, invitation_id)
    return _invitation_screen(found, invite_, status=invitations.status(invite_))


@bp.get("/customers/<customer_id>/invitations/<invitation_id>/email.html")
@signed_in
def invitation_html(customer_id: str, invitation_id: str) -> ResponseReturnValue:
    """The HTML email exactly as the customer gets it, in a sandbox: it may not run anything."""
    _found, invite_ = _invitation(customer_id, invitation_id)
    if not invite_.html_body:
        raise NotFound()
    response = Response(invite_.html_body, mimetype="text/html")
    response.headers["Content-Security-Policy"] = (
        "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:"
    )
    return response


@bp.post("/customers/<customer_id>/invitations/<invitation_id>/send")
@signed_in
def send(customer_id: str, invitation_id: str) -> ResponseReturnValue:
    found, invite_ = _invitation(customer_id, invitation_id)
    # The text as the partner left it (absent from a form without the text: the email as kept).
    text = request.form.get("text_body")
    try:
        invitations.resend(
            db.session(), invite_, current_app.config["BASE_URL"], _actor(), text_body=text
        )
    except invitations.InvitationClosed:
        return _back_to(found, _("This invitation can no longer be sent."), 409)
    except invitations.TextRejected as exc:
        return _invitation_screen(found, invite_, text=text, problem=labels.text_problem(exc)), 400
    db.session().commit()
    return redirect(url_for("dashboard.customer", customer_id=found.id, done="sent"))


@bp.post("/customers/<customer_id>/invitations/<invitation_id>/withdraw")
@signed_in
def withdraw(customer_id: str, invitation_id: str) -> ResponseReturnValue:
    found, invite_ = _invitation(customer_id, invitation_id)
    invitations.revoke(db.session(), invite_, _actor())
    db.session().commit()
    return redirect(url_for("dashboard.customer", customer_id=found.id, done="withdrawn"))


def _back_to(found: Customer, notice: str, status: int) -> ResponseReturnValue:
    return render_template(
        "dashboard/customer.html", **_customer_context(found, notice=notice)
    ), status


# --- attestation ---------------------------------------------------------------------------------


def _attest_defaults(found: Customer) -> dict[str, str]:
    return {
        "first_name": found.contact_first_name,
        "last_name": found.contact_last_name,
        "email": found.contact_email,
        "phone": found.contact_phone,
        "date": "",
    }


@bp.post("/customers/<customer_id>/attest")
@signed_in
def attest(customer_id: str) -> ResponseReturnValue:
    found = _customer(customer_id)
    form = {
        name: request.form.get(name, "")[:300]
        for name in ("first_name", "last_name", "email", "phone", "date")
    }
    if _user().role is not UserRole.ADMIN_AGENT or not _partner().may_attest:
        return _back_to(found, _("You cannot attest for this customer."), 403)

    def again(problems: dict[str, str], status: int = 400) -> ResponseReturnValue:
        return render_template(
            "dashboard/customer.html",
            **_customer_context(found, attest_form=form, attest_problems=problems),
        ), status

    agreed = _parse_day(form["date"])
    if agreed is None:
        return again({"date": _("Enter the date the customer accepted.")})
    if agreed.date() > datetime.now(UTC).date():
        return again({"date": _("The date cannot be in the future.")})
    try:
        recorded = acceptance.attest(
            db.session(),
            _partner(),
            found,
            catalog.current(),
            agreement_type=CUSTOMER_AGREEMENT,
            template_id=_mca_template(),
            date_agreed=agreed,
            contact=Contact(form["first_name"], form["last_name"], form["email"], form["phone"]),
            recorded_by=_actor(),
        )
    except InvalidFields as exc:
        problems = {name.split(".", 1)[-1]: text for name, text in labels.problems(exc).items()}
        renamed = {"firstName": "first_name", "lastName": "last_name", "phoneNumber": "phone"}
        return again({renamed.get(k, k): v for k, v in problems.items()})
    except AttestationExists:
        db.session().rollback()
        return again({"form": _("This attestation has already been recorded.")}, 409)
    acceptance.notify_attestation(
        db.session(),
        _partner(),
        found,
        recorded,
        catalog.current(),
        base_url=current_app.config["BASE_URL"],
        locales=languages.available_locales(),
    )
    db.session().commit()
    return redirect(url_for("dashboard.customer", customer_id=found.id, done="attested"))


def _parse_day(text: str) -> datetime | None:
    try:
        return datetime.combine(date.fromisoformat(text.strip()), time(), tzinfo=UTC)
    except ValueError:
        return None


# --- CSV: export and import --------------------------------------------------------------------

#: Cells a spreadsheet would run as a formula get a leading apostrophe (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


@bp.get("/customers.csv")
@signed_in
def export_csv() -> ResponseReturnValue:
    """Every visible customer with its state and acceptance, streamed page by page."""
    partner_id = _partner().id
    header = [
        "customerId", "companyName", "domain", "country", "culture", "contactEmail", "state",
        "createdAt", "acceptedAt", "acceptanceMethod", "acceptedBy",
    ]  # fmt: skip

    def generate() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(header)
        for row, accepted in reports.export_rows(db.session(), partner_id):
            customer_ = row.customer
            writer.writerow(
                _cell(value)
                for value in (
                    customer_.id,
                    customer_.company_name,
                    customer_.domain,
                    customer_.country,
                    customer_.culture,
                    customer_.contact_email,
                    row.state,
                    iso(customer_.created_at),
                    iso(accepted.date_agreed) if accepted else "",
                    accepted.method.value if accepted else "",
                    f"{accepted.first_name} {accepted.last_name}" if accepted else "",
                )
            )
            if buffer.tell() > 64 * 1024:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    return Response(
        stream_with_context(generate()),
        mimetype="text/csv",
        headers={"Content-Disposition": 'attachment; filename="customers.csv"'},
    )


@bp.url_value_preprocessor
def allow_larger_forms(endpoint: str | None, values: dict[str, Any] | None) -> None:
    """Let the import take files up to IMPORT_MAX_BYTES, and "Send" the longest email text a
    partner may write, not the 64 KiB of other requests.

    The limit must be in place before anything reads the form, and CSRF protection reads it in
    the app's ``before_request``: URL value preprocessors are the hooks that run before that.
    """
    if endpoint == "dashboard.import_customers":
        request.max_content_length = int(current_app.config["IMPORT_MAX_BYTES"])
    elif endpoint == "dashboard.send":
        # Percent-encoded, a character takes up to 12 bytes (4 in UTF-8, 3 for each).
        request.max_content_length = 12 * invitations.MAX_TEXT + 4096


@bp.get("/relationships")
@signed_in
def relationship_requests_page(
    form: dict[str, str] | None = None,
    problems: dict[str, str] | None = None,
    status: int = 200,
) -> ResponseReturnValue:
    """The partner's reseller relationship request links (a provider's resellers' too), each
    with an email to send it in, which the partner may edit around the link."""
    partner = _partner()
    links = invitations.LinkSettings.from_config(current_app.config)
    requesters = [partner, *partners.resellers(db.session(), partner)]
    shown = []
    if partner.country:
        for requester in requesters:
            url = relationship_requests.url(links, requester)
            subject = gettext(
                # Translators: subject of the email a partner sends with its relationship request.
                "%(partner)s asks to become your cloud solution partner",
                partner=requester.name,
            )
            body = render_template(
                "dashboard/relationship_request.txt", partner=requester, url=url
            ).strip()
            mailto = f"mailto:?subject={quote(subject, safe='')}&body={quote(body, safe='')}"
            shown.append(
                {
                    "partner": requester,
                    "url": url,
                    "subject": subject,
                    "body": body,
                    "mailto": mailto,
                }
            )
    return render_template(
        "dashboard/relationships.html",
        shown=shown,
        partner=partner,
        personal=relationship_requests.personal_requests(db.session(), partner.id),
        state_of=relationship_requests.state,
        form=form or {},
        problems=problems or {},
    ), status


@bp.post("/relationships")
@signed_in
def create_personal_request() -> ResponseReturnValue:
    """A request addressed to one company, as an email in its language; sent at once when the
    partner ticks "send"."""
    form = {name: request.form.get(name, "")[:300] for name in ("domain", "email", "language")}
    try:
        made = relationship_requests.create_personal(
            db.session(),
            _partner(),
            domain=form["domain"],
            recipient=form["email"],
            language=form["language"] or None,
            links=invitations.LinkSettings.from_config(current_app.config),
            locales=languages.available_locales(),
            created_by=_actor(),
        )
        if request.form.get("send") == "yes":
            relationship_requests.send_personal(db.session(), made, current_app.config["BASE_URL"])
    except InvalidFields as exc:
        db.session().rollback()
        return relationship_requests_page(form=form, problems=labels.problems(exc), status=400)
    except relationship_requests.PartnerCountryMissing:
        db.session().rollback()
        return relationship_requests_page(form=form, status=409)
    db.session().commit()
    return redirect(url_for("dashboard.personal_request", request_id=made.id))


def _personal(request_id: str) -> Any:
    return relationship_requests.personal_request(db.session(), _partner().id, request_id)


@bp.get("/relationships/<request_id>")
@signed_in
def personal_request(request_id: str) -> ResponseReturnValue:
    return _personal_screen(_personal(request_id))


def _personal_screen(
    found: Any, status: int = 200, text: str | None = None, problem: str = ""
) -> ResponseReturnValue:
    state = relationship_requests.state(found)
    links = invitations.LinkSettings.from_config(current_app.config)
    is_open = state not in relationship_requests.CLOSED
    mailto = (
        f"mailto:{quote(found.recipient, safe='@')}?subject={quote(found.subject, safe='')}"
        f"&body={quote(found.text_body, safe='')}"
    )
    return render_template(
        "dashboard/personal_request.html",
        found=found,
        state=state,
        is_open=is_open,
        url=relationship_requests.personal_url(links, found) if is_open else "",
        mailto=mailto,
        text=found.text_body if text is None else text,
        problem=problem,
    ), status


@bp.post("/relationships/<request_id>/send")
@signed_in
def send_personal_request(request_id: str) -> ResponseReturnValue:
    found = _personal(request_id)
    text = request.form.get("text_body")  # the email as the partner left it
    try:
        relationship_requests.send_personal(
            db.session(), found, current_app.config["BASE_URL"], text_body=text
        )
    except relationship_requests.PersonalRequestClosed:
        return _personal_screen(found, 409)
    except invitations.TextRejected as exc:
        return _personal_screen(found, 400, text, labels.text_problem(exc, request=True))
    db.session().commit()
    return redirect(url_for("dashboard.personal_request", request_id=found.id))


@bp.post("/relationships/<request_id>/withdraw")
@signed_in
def withdraw_personal_request(request_id: str) -> ResponseReturnValue:
    found = _personal(request_id)
    try:
        relationship_requests.withdraw_personal(db.session(), found)
    except relationship_requests.PersonalRequestClosed:
        return _personal_screen(found, 409)
    db.session().commit()
    return redirect(url_for("dashboard.personal_request", request_id=found.id))


@bp.get("/import")
@signed_in
def import_form() -> ResponseReturnValue:
    return render_template("dashboard/import.html")


@bp.post("/import")
@signed_in
def import_customers() -> ResponseReturnValue:
    """Create customers and their invitations from a CSV file, each row on its own.

    Without script the whole file is done in one request; the page's script sends the same
    file with ``offset`` and ``limit`` a slice at a time, to show progress, and gets JSON.
    """
    wants_json = request.form.get("format") == "json"
    upload = request.files.get("file")
    try:
        if upload is None or not upload.filename:
            raise bulk.BadFile(_("Choose a CSV file."))
        most = int(current_app.config["IMPORT_MAX_ROWS"])
        # Closing the reader closes the upload (a temporary file when large) at once.
        with io.TextIOWrapper(upload.stream, encoding="utf-8-sig", newline="") as text:
            rows = bulk.parse(text, upload.filename[:100], max_rows=most)
        offset = _whole_number(request.form.get("offset", "0"))
        limit = _whole_number(request.form.get("limit", str(len(rows))))
    except (bulk.BadFile, UnicodeDecodeError, ValueError) as exc:
        if isinstance(exc, bulk.TooManyRows):
            message = _("The file has too many rows; split it into smaller files.")
        elif isinstance(exc, bulk.BadFile):
            message = str(exc)
        else:
            message = _("The file is not UTF-8 CSV.")
        if wants_json:
            return jsonify({"error": message}), 400
        return render_template("dashboard/import.html", problem=message), 400
    options = invitations.Options(send=request.form.get("send") == "yes")
    chunk = rows[offset : offset + limit]
    results = list(bulk.import_rows(current_app, _partner(), chunk, options, actor=_actor()))
    if wants_json:
        return jsonify(
            {
                "total": len(rows),
                "results": [
                    {
                        "line": r.line,
                        "ok": r.ok,
                        "domain": r.domain,
                        "error": r.error,
                        "url": url_for("dashboard.customer", customer_id=r.customer_id)
                        if r.ok
                        else "",
                    }
                    for r in results
                ],
            }
        )
    return render_template("dashboard/import.html", results=results, total=len(rows))


def _whole_number(text: str) -> int:
    number = int(text)
    if not 0 <= number <= 1_000_000:
        raise ValueError(text)
    return number


# --- webhooks ------------------------------------------------------------------------------------


def _may_change_webhooks() -> bool:
    """Only admin agents point the partner's events at a system, or change where they go (as
    only they attest): the receiver gets every customer event, signed as coming from the portal."""
    return _user().role is UserRole.ADMIN_AGENT


def _webhook(webhook_id: str) -> WebhookEndpoint:
    """The partner's webhook; the same 404 for another partner's, a deleted one and none."""
    return webhooks.endpoint(db.session(), _partner().id, webhook_id)


@bp.get("/webhooks")
@signed_in
def webhooks_page(
    form: dict[str, Any] | None = None,
    problems: dict[str, str] | None = None,
    notice: str = "",
    status: int = 200,
) -> ResponseReturnValue:
    """The partner's webhooks, and (for admin agents) the form that adds one."""
    found = webhooks.endpoints(db.session(), _partner().id)
    return render_template(
        "dashboard/webhooks.html",
        webhooks=found,
        event_types=webhooks.EVENT_TYPES,
        may_change=_may_change_webhooks(),
        full=_too_many() if len(found) >= webhooks.MAX_ENDPOINTS else "",
        form=form or {"url": "", "events": []},
        problems=problems or {},
        notice=notice,
    ), status


@bp.post("/webhooks")
@signed_in
def add_webhook() -> ResponseReturnValue:
    """Register a receiver; its secret is in this answer's page and nowhere else (as a new
    customer's password: no redirect, nothing kept in the session)."""
    form: dict[str, Any] = {
        "url": request.form.get("url", "")[: webhooks.MAX_URL_LENGTH + 1],
        "events": [name[:100] for name in request.form.getlist("events")[:50]],
    }
    if not _may_change_webhooks():
        return webhooks_page(form=form, notice=_("You cannot change the webhooks."), status=403)
    try:
        endpoint, secret = webhooks.register(
            db.session(),
            _partner(),
            form["url"],
            form["events"],
            webhooks.sealer_for(current_app.config),
            allow_private=bool(current_app.config["WEBHOOK_ALLOW_PRIVATE"]),
        )
    except InvalidFields as exc:
        db.session().rollback()
        return webhooks_page(form=form, problems=labels.problems(exc), status=400)
    except webhooks.TooManyWebhooks:  # added by someone else meanwhile: the page says so
        db.session().rollback()
        return webhooks_page(form=form, status=409)
    db.session().commit()
    return render_template("dashboard/webhook_created.html", webhook=endpoint, secret=secret), 201


def _too_many() -> str:
    return str(
        gettext(
            "You have %(most)s webhooks, as many as a partner may have. Delete one first.",
            most=format_number(webhooks.MAX_ENDPOINTS),
        )
    )


@bp.get("/webhooks/<webhook_id>")
@signed_in
def webhook(webhook_id: str) -> ResponseReturnValue:
    return _webhook_screen(_webhook(webhook_id))


def _webhook_screen(
    found: WebhookEndpoint, notice: str = "", status: int = 200
) -> ResponseReturnValue:
    return render_template(
        "dashboard/webhook.html",
        webhook=found,
        deliveries=webhooks.deliveries(db.session(), found),
        may_change=_may_change_webhooks(),
        notice=notice,
    ), status


@bp.post("/webhooks/<webhook_id>/deliveries/<delivery_id>/resend")
@signed_in
def resend_delivery(webhook_id: str, delivery_id: str) -> ResponseReturnValue:
    found = _webhook(webhook_id)
    if not _may_change_webhooks():
        return _webhook_screen(found, _("You cannot change the webhooks."), 403)
    webhooks.resend(db.session(), found, delivery_id)
    db.session().commit()
    return redirect(url_for("dashboard.webhook", webhook_id=found.id, done="resent"))


@bp.post("/webhooks/<webhook_id>/delete")
@signed_in
def delete_webhook(webhook_id: str) -> ResponseReturnValue:
    found = _webhook(webhook_id)
    if not _may_change_webhooks():
        return _webhook_screen(found, _("You cannot change the webhooks."), 403)
    webhooks.remove(db.session(), found)
    db.session().commit()
    return redirect(url_for("dashboard.webhooks_page", done="deleted"))


# --- errors --------------------------------------------------------------------------------------


@bp.errorhandler(InvalidParameter)
def bad_parameter(error: PortalError) -> ResponseReturnValue:
    return render_template("dashboard/problem.html", name=error.error_name), 400
