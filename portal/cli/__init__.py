"""The ``portal`` command: serve, migrate, manage partners and keys, start a demo."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from flask import Flask
from sqlalchemy import select

from portal import LOCALES, ROOT, create_app
from portal.core import db
from portal.core.catalog import CatalogError
from portal.core.config import ConfigError
from portal.core.errors import PortalError
from portal.core.models import Customer, Partner, PartnerKind, UserRole
from portal.domain import customers, invitations, partners, users
from portal.i18n import languages, translations
from portal.mail import outbox

KINDS = [k.value for k in PartnerKind]


def _app(overrides: dict[str, Any] | None = None) -> Flask:
    try:
        return create_app(overrides)
    except (ConfigError, CatalogError) as exc:
        raise click.ClickException(str(exc)) from exc


@contextmanager
def _portal(overrides: dict[str, Any] | None = None) -> Iterator[Flask]:
    """The app, inside its app context; its database connections are closed afterwards."""
    app = _app(overrides)
    try:
        with app.app_context():
            yield app
    finally:
        app.extensions["portal.engine"].dispose()


def _fail(error: PortalError) -> click.ClickException:
    return click.ClickException(error.message)


@click.group()
@click.version_option(package_name="portal")
def main() -> None:
    """Invitation and self-acceptance portal for the customer agreement."""


# --- serving ----------------------------------------------------------------------------------


def _check_port(host: str, port: int) -> None:
    """Refuse a taken address before anything is done (migrations, demo data)."""
    from portal.web import server

    try:
        server.ensure_free(host, port)
    except server.CannotListen as exc:
        raise click.ClickException(str(exc)) from exc


def _serve(app: Flask, host: str, port: int, workers: int | None, threads: int | None) -> None:
    """Migrate, then serve. Callers run ``_check_port`` first, before they change anything."""
    from portal.web import server

    with app.app_context():
        db.upgrade(db.engine())
        db.engine().dispose()
    try:
        server.run(
            app,
            host=host,
            port=port,
            workers=workers or app.config["SERVE_WORKERS"],
            threads=threads or app.config["SERVE_THREADS"],
        )
    except server.CannotListen as exc:  # taken since the check
        raise click.ClickException(str(exc)) from exc


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", type=click.IntRange(1, 64), help="Worker processes.")
@click.option("--threads", type=click.IntRange(1, 256), help="Threads per worker.")
def serve(host: str, port: int, workers: int | None, threads: int | None) -> None:
    """Apply pending migrations, then serve with gunicorn."""
    _check_port(host, port)
    _serve(_app(), host, port, workers, threads)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
def demo(host: str, port: int) -> None:
    """Start the portal with a demo partner and customer ready, and say what to open."""
    _check_port(host, port)
    base = f"http://{host}:{port}"
    overrides = {} if os.environ.get("PORTAL_BASE_URL") else {"BASE_URL": base}
    with _portal(overrides) as app:
        db.upgrade(db.engine())
        session = db.session()
        catalog = app.extensions["portal.catalog"]
        partner = session.scalars(select(Partner).where(Partner.name == DEMO_PARTNER)).first()
        if partner is None:
            partner = partners.create_partner(session, DEMO_PARTNER, PartnerKind.DIRECT)
        key = partners.create_key(session, partner, label="demo")
        customer = session.scalars(
            select(Customer).where(Customer.domain == DEMO_CUSTOMER.domain)
        ).first()
        if customer is None:
            customer = customers.create_customer(
                session,
                partner,
                customers.NewCustomer(**vars(DEMO_CUSTOMER)),
                catalog,
                app.extensions["portal.peppers"][0],
                actor="cli",
            ).customer
        try:
            issued = _invite_one(app, customer, invitations.Options(send=True))
        except invitations.AlreadyAccepted:
            issued = None
        session.commit()
        key_header = f"'Authorization: Bearer {key.secret}'"
        click.echo(f"""
Demo partner:  {partner.name} ({partner.id})
API key:       {key.secret}   (new for this run; shown once)
Demo customer: {customer.company_name} ({customer.id})""")
        if issued is not None:
            click.echo(f"""
The customer's invitation (new for this run; `portal mail outbox` shows the whole email):
  open      {issued.url}
  sign in   {issued.user_name} / {issued.password}""")
        else:
            click.echo("The demo customer has already accepted the agreement.")
        click.echo(f"""
Try the partner API:
  curl -H {key_header} {base}/v1/customers/{customer.id}/acceptanceStatus
  curl -H {key_header} {base}/v1/customers
API description: {base}/v1/openapi.json
""")
    _serve(app, host, port, None, None)


DEMO_PARTNER = "Demo Partner"
DEMO_CUSTOMER = customers.NewCustomer(
    domain="contoso-demo.example",
    company_name="Contoso Demo",
    email="it@contoso-demo.example",
    culture="en-US",
    language="en",
    country="US",
    first_name="Avery",
    last_name="Demo",
)


# --- database ---------------------------------------------------------------------------------


@main.group("db")
def db_group() -> None:
    """Database migrations."""


@db_group.command()
def upgrade() -> None:
    """Apply pending migrations (the schema is made by migrations only)."""
    with _portal():
        db.upgrade(db.engine())
    click.echo("database is up to date")


# --- partners and keys ------------------------------------------------------------------------


@main.group("partners")
def partners_group() -> None:
    """Partners and their API keys."""


def _emit(as_json: bool, data: dict[str, Any], text: str) -> None:
    click.echo(json.dumps(data) if as_json else text)


@partners_group.command("create")
@click.option("--name", required=True)
@click.option("--kind", required=True, type=click.Choice(KINDS))
@click.option("--provider", "provider_id", help="The indirect provider a reseller belongs to.")
@click.option("--json", "as_json", is_flag=True, help='Print {"id": ..., "apiKey": ...}.')
def partners_create(name: str, kind: str, provider_id: str | None, as_json: bool) -> None:
    """Create a partner and its first API key (the key is shown this once)."""
    with _portal():
        session = db.session()
        try:
            partner = partners.create_partner(session, name, PartnerKind(kind), provider_id)
        except PortalError as exc:
            raise _fail(exc) from exc
        key = partners.create_key(session, partner, label="first key")
        session.commit()
        _emit(
            as_json,
            {"id": partner.id, "apiKey": key.secret},
            f"partner id: {partner.id}\nAPI key:    {key.secret}\n"
            "Keep the key now: it is stored hashed and cannot be shown again.",
        )


@partners_group.command("list")
@click.option("--json", "as_json", is_flag=True)
def partners_list(as_json: bool) -> None:
    """List partners."""
    with _portal():
        found = partners.list_partners(db.session())
        rows = [
            {"id": p.id, "name": p.name, "kind": p.kind.value, "providerId": p.provider_id}
            for p in found
        ]
        text = "\n".join(f"{p.id}  {p.kind.value:<18} {p.name}" for p in found)
        _emit(as_json, {"items": rows}, text or "no partners")


@partners_group.group("keys")
def keys_group() -> None:
    """API keys."""


@keys_group.command("create")
@click.argument("partner_id")
@click.option("--label", default="")
@click.option("--json", "as_json", is_flag=True)
def keys_create(partner_id: str, label: str, as_json: bool) -> None:
    """Create another API key for a partner (shown this once)."""
    with _portal():
        session = db.session()
        partner = session.get(Partner, partner_id)
        if partner is None:
            raise click.ClickException(f"No partner {partner_id}.")
        try:
            key = partners.create_key(session, partner, label=label)
        except PortalError as exc:
            raise _fail(exc) from exc
        session.commit()
        _emit(
            as_json,
            {"id": key.key.id, "apiKey": key.secret},
            f"key id:  {key.key.id}\nAPI key: {key.secret}",
        )


@keys_group.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    """Revoke a key (by id or shown prefix); it stops working on the next request."""
    with _portal():
        session = db.session()
        try:
            key = partners.revoke_key(session, key_id)
        except PortalError as exc:
            raise _fail(exc) from exc
        session.commit()
        click.echo(f"revoked {key.id} ({key.prefix}…)")


@keys_group.command("list")
@click.option("--partner", "partner_id")
@click.option("--json", "as_json", is_flag=True)
def keys_list(partner_id: str | None, as_json: bool) -> None:
    """List keys: id, prefix, partner, state. Never the keys themselves."""
    with _portal():
        found = partners.list_keys(db.session(), partner_id)
        rows = [
            {
                "id": k.id,
                "prefix": k.prefix,
                "partnerId": k.partner_id,
                "label": k.label,
                "createdAt": k.created_at.isoformat(),
                "revokedAt": k.revoked_at.isoformat() if k.revoked_at else None,
            }
            for k in found
        ]
        text = "\n".join(
            f"{k.id}  {k.prefix}…  {k.partner_id}  "
            f"{'revoked' if k.revoked_at else 'active'}  {k.label}"
            for k in found
        )
        _emit(as_json, {"items": rows}, text or "no keys")


# --- mail -------------------------------------------------------------------------------------


@partners_group.group("users")
def users_group() -> None:
    """People who sign in to the dashboard."""


@users_group.command("create")
@click.argument("partner_id")
@click.argument("email")
@click.option(
    "--role",
    type=click.Choice([r.value for r in UserRole]),
    default=UserRole.ADMIN_AGENT.value,
    show_default=True,
    help="admin-agent: everything, attestation included; sales-agent: customers and invitations.",
)
@click.option("--name", default="", help="The person's name, shown in the dashboard.")
@click.password_option(
    envvar="PORTAL_NEW_USER_PASSWORD",
    help="Asked for (twice) unless given here or in PORTAL_NEW_USER_PASSWORD.",
)
@click.option("--json", "as_json", is_flag=True)
def users_create(
    partner_id: str, email: str, role: str, name: str, password: str, as_json: bool
) -> None:
    """Add a dashboard user to a partner."""
    with _portal():
        session = db.session()
        partner = session.get(Partner, partner_id)
        if partner is None:
            raise click.ClickException(f"No partner {partner_id}.")
        try:
            user = users.create_user(session, partner, email, password, UserRole(role), name)
        except PortalError as exc:
            raise _fail(exc) from exc
        session.commit()
        _emit(
            as_json,
            {"id": user.id, "email": user.email, "role": user.role.value},
            f"user {user.email} ({user.role.value}) added to {partner.name}",
        )


def _user(session: Any, email_or_id: str) -> Any:
    try:
        return users.find(session, email_or_id)
    except PortalError as exc:
        raise _fail(exc) from exc


@users_group.command("role")
@click.argument("user")
@click.argument("role", type=click.Choice([r.value for r in UserRole]))
def users_role(user: str, role: str) -> None:
    """Give a dashboard user (email or id) another role; their sessions end."""
    with _portal():
        session = db.session()
        found = _user(session, user)
        users.set_role(session, found, UserRole(role), actor="cli")
        session.commit()
        click.echo(f"{found.email} is now {found.role.value}; signed in nowhere")


@users_group.command("password")
@click.argument("user")
@click.password_option(
    envvar="PORTAL_NEW_USER_PASSWORD",
    help="Asked for (twice) unless given here or in PORTAL_NEW_USER_PASSWORD.",
)
def users_password(user: str, password: str) -> None:
    """Set a dashboard user's password (email or id); their sessions end."""
    with _portal():
        session = db.session()
        found = _user(session, user)
        try:
            users.set_password(session, found, password, actor="cli")
        except PortalError as exc:
            raise _fail(exc) from exc
        session.commit()
        click.echo(f"new password set for {found.email}; signed in nowhere")


@users_group.command("remove")
@click.argument("user")
def users_remove(user: str) -> None:
    """Take a dashboard user (email or id) off the dashboard; their sessions end at once."""
    with _portal():
        session = db.session()
        found = _user(session, user)
        users.remove(session, found, actor="cli")
        session.commit()
        click.echo(f"{found.email} removed; signed in nowhere")


@users_group.command("list")
@click.option("--partner", "partner_id", default=None)
@click.option("--json", "as_json", is_flag=True)
def users_list(partner_id: str | None, as_json: bool) -> None:
    """Dashboard users, per partner."""
    with _portal():
        found = users.list_users(db.session(), partner_id)
        rows = [
            {
                "id": u.id,
                "partnerId": u.partner_id,
                "email": u.email,
                "role": u.role.value,
                "removed": u.disabled_at is not None,
            }
            for u in found
        ]
        text = "\n".join(
            f"{u.partner_id}  {u.email}  {u.role.value}{'  removed' if u.disabled_at else ''}"
            for u in found
        )
        _emit(as_json, {"items": rows}, text or "no users")


@main.group("mail")
def mail_group() -> None:
    """The outbox."""


@mail_group.command("send")
@click.option("--batch", default=500, show_default=True, type=click.IntRange(1, 10000))
@click.option(
    "--loop",
    is_flag=True,
    help="Keep sending every PORTAL_MAIL_SEND_INTERVAL seconds "
    "until stopped (portal serve runs this beside its workers).",
)
def mail_send(batch: int, loop: bool) -> None:
    """Send what is due, once. SMTP trouble is recorded per message, and exits 0."""
    if loop:
        from portal.mail import delivery

        app = _app()
        try:
            delivery.run_forever(app)
        finally:
            app.extensions["portal.engine"].dispose()
        return
    with _portal() as app:
        if not app.config.get("MAIL_SERVER"):
            click.echo(
                "No SMTP server configured (PORTAL_MAIL_SERVER): messages stay in the "
                "outbox; `portal mail outbox` shows them."
            )
            return
        total = outbox.Report()
        while True:
            report = outbox.deliver_due(app, db.session(), batch)
            total.sent += report.sent
            total.retrying += report.retrying
            total.failed += report.failed
            total.errors += report.errors
            # Stop after a pass with trouble: retries wait for their time.
            if report.attempted < batch or report.retrying or report.failed:
                break
        click.echo(f"sent {total.sent}, to retry {total.retrying}, failed {total.failed}")
        for error in sorted(set(total.errors))[:10]:
            click.echo(f"  {error}")


@mail_group.command("outbox")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
def mail_outbox(limit: int) -> None:
    """Show the messages not sent yet, with their text."""
    with _portal():
        found = outbox.pending(db.session(), limit)
        if not found:
            click.echo("The outbox is empty.")
        for message in found:
            click.echo(
                f"--- {message.id}  {message.status.value}  attempts {message.attempts}"
                + (f"  last error: {message.last_error}" if message.last_error else "")
            )
            click.echo(f"To: {message.to_address}\nSubject: {message.subject}\n")
            click.echo(message.text_body or "(body removed)")


# --- invitations ------------------------------------------------------------------------------


def _invite_one(app: Flask, customer: Customer, options: invitations.Options) -> Any:
    return invitations.create(
        db.session(),
        customer,
        options,
        links=invitations.LinkSettings.from_config(app.config),
        pepper=app.extensions["portal.peppers"][0],
        locales=languages.available_locales(),
        actor="cli",
    )


@main.command()
@click.argument("customer_id", required=False)
@click.option("--send", is_flag=True, help="Queue the email for delivery to the customer.")
@click.option("--to", help="Send to this address instead of the primary contact.")
@click.option("--language", help="Write the email in this language (default: the customer's).")
@click.option("--no-credentials", is_flag=True, help="Leave the password out of the email.")
@click.option(
    "--csv",
    "csv_file",
    type=click.Path(exists=True, dir_okay=False),
    help="Create customers and invitations in bulk from this CSV file.",
)
@click.option("--partner", "partner_id", help="With --csv: the partner the customers belong to.")
@click.option(
    "--results",
    type=click.Path(dir_okay=False),
    help="With --csv: where to write the per-row results (default: FILE.results.csv).",
)
def invite(
    customer_id: str | None,
    send: bool,
    to: str | None,
    language: str | None,
    no_credentials: bool,
    csv_file: str | None,
    partner_id: str | None,
    results: str | None,
) -> None:
    """Create an invitation for CUSTOMER_ID and print it, or many with --csv."""
    options = invitations.Options(
        send=send, to=to, language=language, include_credentials=not no_credentials
    )
    if csv_file:
        if customer_id or not partner_id:
            raise click.UsageError("--csv takes --partner PARTNER_ID and no CUSTOMER_ID.")
        from portal.domain import bulk

        with _portal() as app:
            bulk.run(app, csv_file, partner_id, options, results)
        return
    if not customer_id:
        raise click.UsageError("Give a CUSTOMER_ID, or --csv FILE --partner PARTNER_ID.")
    with _portal() as app:
        session = db.session()
        customer = session.get(Customer, customer_id)
        if customer is None:
            raise click.ClickException(f"No customer {customer_id}.")
        try:
            issued = _invite_one(app, customer, options)
        except PortalError as exc:
            raise _fail(exc) from exc
        session.commit()
        invitation = issued.invitation
        click.echo(
            f"Invitation {invitation.id} ({invitations.status(invitation)}), "
            f"expires {invitation.expires_at:%Y-%m-%d %H:%M} UTC"
        )
        click.echo(f"Link:      {issued.url}")
        click.echo(f"User name: {issued.user_name}")
        click.echo(f"Password:  {issued.password}  (temporary; shown this once)")
        click.echo(f"\nTo: {invitation.recipient}\nSubject: {invitation.subject}\n")
        click.echo(invitation.text_body)


# --- translations -----------------------------------------------------------------------------
# Babel's catalogs in locales/ (see locales/README.md); portal/translations.py does the work.


@main.group("i18n")
@click.option(
    "--locales",
    "locales_dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="PORTAL_LOCALES_DIR",
    default=LOCALES,
    show_default="the project's locales/",
    help="The translations folder (also PORTAL_LOCALES_DIR).",
)
@click.pass_context
def i18n_group(ctx: click.Context, locales_dir: Path) -> None:
    """Translations: extract the strings, update, compile, check, count, add a language."""
    ctx.obj = locales_dir


@contextmanager
def _reported() -> Iterator[None]:
    """A catalog that cannot be made or read ends the command with its message."""
    try:
        yield
    except translations.TranslationsError as exc:
        raise click.ClickException(str(exc)) from exc


@i18n_group.command("extract")
@click.pass_obj
def i18n_extract(locales_dir: Path) -> None:
    """Write messages.pot from the strings in portal/ and templates/ (run it after changing any)."""
    with _reported():
        path, changed, count = translations.write_template(ROOT, locales_dir)
    state = "written" if changed else "already up to date"
    click.echo(f"{translations.shown(path)}: {count} strings, {state}")


@i18n_group.command("update")
@click.pass_obj
def i18n_update(locales_dir: Path) -> None:
    """Bring every language's .po in step with messages.pot (new strings arrive empty)."""
    with _reported():
        written = translations.update(locales_dir)
    for path in written:
        click.echo(f"updated {translations.shown(path)}")
    if not written:
        click.echo("every catalog is already in step with messages.pot")


@i18n_group.command("compile")
@click.pass_obj
def i18n_compile(locales_dir: Path) -> None:
    """Compile every .po to .mo (the portal also does it at start when a .po is newer)."""
    results = translations.compile_all(locales_dir)
    for result in results:
        for problem in result.problems:
            click.echo(f"{problem} (left out)")
        if result.mo is None:
            click.echo(f"{result.locale}: not compiled (any previous .mo stays)")
        else:
            click.echo(f"{result.locale}: {result.translated} translations compiled")
    if any(result.problems for result in results):
        raise click.ClickException("some translations were left out: see `portal i18n check`")


@i18n_group.command("check")
@click.pass_obj
def i18n_check(locales_dir: Path) -> None:
    """Fail on a stale messages.pot and on translations that would break a page or an email."""
    with _reported():
        problems = translations.check(ROOT, locales_dir)
    for problem in problems:
        click.echo(str(problem))
    if problems:
        count = len(problems)
        raise click.ClickException(
            f"{count} problem{'' if count == 1 else 's'}: see locales/README.md for what they mean"
        )
    count = len(translations.po_files(locales_dir))
    click.echo(f"messages.pot is up to date; {count} catalogs checked, no problems")


@i18n_group.command("stats")
@click.pass_obj
def i18n_stats(locales_dir: Path) -> None:
    """How much of each language is translated (fuzzy strings count as not translated)."""
    with _reported():
        found = translations.stats(locales_dir)
    for item in found:
        if item.error:
            click.echo(f"{item.locale:<8} cannot be read: {item.error}")
            continue
        fuzzy = f"  ({item.fuzzy} fuzzy)" if item.fuzzy else ""
        click.echo(
            f"{item.locale:<8} {item.translated:>4}/{item.total:<4} {item.percent:5.1f}%{fuzzy}"
        )
    if not found:
        click.echo("no languages yet: add one with `portal i18n init LOCALE`")


@i18n_group.command("init")
@click.argument("locale")
@click.pass_obj
def i18n_init(locales_dir: Path, locale: str) -> None:
    """Add a language: LOCALE/LC_MESSAGES/messages.po, from messages.pot."""
    with _reported():
        path = translations.init_locale(locales_dir, locale)
    click.echo(
        f"created {translations.shown(path)}: translate it, then `portal i18n check`; the "
        "language appears in the language switcher when the portal next starts"
    )


@i18n_group.command("preview")
@click.argument("locale")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to write the files (default: preview/LOCALE/).",
)
@click.pass_obj
def i18n_preview(locales_dir: Path, locale: str, out: Path | None) -> None:
    """Write the invitation email and the customer's pages in LOCALE to files, for a demo
    customer on a temporary database (no server needed)."""
    locale = locale.replace("-", "_")
    target = out or Path("preview") / locale
    written = _preview(locales_dir, locale, target)
    for path in written:
        click.echo(translations.shown(path))


def _preview(locales_dir: Path, locale: str, target: Path) -> list[Path]:
    import secrets
    import tempfile

    with tempfile.TemporaryDirectory(prefix="portal-preview-") as scratch:
        overrides = {
            "SECRET_KEY": secrets.token_urlsafe(48),
            "DATABASE_URL": f"sqlite:///{Path(scratch) / 'portal.db'}",
            "BASE_URL": "http://127.0.0.1:8000",
            "BABEL_TRANSLATION_DIRECTORIES": str(locales_dir.resolve()),
            "SESSION_COOKIE_SECURE": False,  # the test client speaks plain http
            "WTF_CSRF_ENABLED": False,
            "RATELIMIT_STORAGE_URI": "memory://",
            "MAIL_SERVER": None,
        }
        with _portal(overrides) as app:
            if locale not in languages.available_locales():
                raise click.ClickException(
                    f"no catalog for {locale} in {translations.shown(locales_dir)}: add it with "
                    f"`portal i18n init {locale}`"
                )
            db.upgrade(db.engine())
            return _preview_pages(app, locale, target)


def _preview_pages(app: Flask, locale: str, target: Path) -> list[Path]:
    from dataclasses import replace

    from babel.core import get_global

    session = db.session()
    parsed = translations.parse_locale(locale)
    # The likeliest country for the language (zh_Hans: CN, pt_BR: BR), by Babel's table.
    likely_subtags = get_global("likely_subtags")
    likely_tag = likely_subtags.get(str(parsed)) or likely_subtags.get(parsed.language) or "en_US"
    likely = translations.parse_locale(str(likely_tag))
    territory = parsed.territory or likely.territory or "US"
    script = f"{parsed.script}-" if parsed.script else ""
    catalog = app.extensions["portal.catalog"]
    country = territory if territory in catalog.countries else "US"
    partner = partners.create_partner(session, DEMO_PARTNER, PartnerKind.DIRECT)
    customer = customers.create_customer(
        session,
        partner,
        replace(DEMO_CUSTOMER, culture=f"{parsed.language}-{script}{territory}", country=country),
        catalog,
        app.extensions["portal.peppers"][0],
        actor="preview",
    ).customer
    issued = _invite_one(app, customer, invitations.Options(language=locale))
    session.commit()

    files: dict[str, str] = {
        "invitation.txt": f"Subject: {issued.invitation.subject}\n\n{issued.invitation.text_body}",
        "invitation.html": issued.invitation.html_body,
    }
    client = app.test_client()
    password = "preview-" + issued.password

    def page(name: str, method: str, path: str, status: int, **form: str) -> str:
        response = client.open(path, method=method, data=form or None)
        if response.status_code != status:
            raise click.ClickException(
                f"{method} {path} answered {response.status_code}, not {status}: the preview "
                "stopped there"
            )
        if name:
            files[name] = response.get_data(as_text=True)
        return str(response.headers.get("Location", ""))

    page("", "POST", "/language", 302, lang=locale, next="/signin")
    landing = issued.url.removeprefix(app.config["BASE_URL"])
    page("landing.html", "GET", landing, 200)
    page("signin.html", "GET", "/signin", 200)
    page("", "POST", "/signin", 302, user_name=issued.user_name, password=issued.password)
    page("password.html", "GET", "/password", 200)
    page("", "POST", "/password", 302, password=password, repeat=password)
    page("agreement.html", "GET", "/agreement", 200)
    contact = {"first_name": "Avery", "last_name": "Demo", "email": DEMO_CUSTOMER.email}
    page("", "POST", "/agreement", 302, accept="yes", phone="", **contact)
    page("account.html", "GET", "/account?accepted=1", 200)
    confirmation = outbox.pending(db.session(), 10)
    for message in confirmation:
        if message.to_address == DEMO_CUSTOMER.email and message.customer_id == customer.id:
            files["acceptance_confirmation.txt"] = (
                f"Subject: {message.subject}\n\n{message.text_body}"
            )
            files["acceptance_confirmation.html"] = message.html_body

    target.mkdir(parents=True, exist_ok=True)
    stylesheet = Path(app.static_folder or "") / "portal.css"
    (target / "portal.css").write_bytes(stylesheet.read_bytes())
    written = []
    for name, text in files.items():
        path = target / name
        # The pages link their stylesheet from the server; the preview keeps a copy beside them.
        path.write_text(text.replace('href="/static/portal.css"', 'href="portal.css"'))
        written.append(path)
    return written


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
