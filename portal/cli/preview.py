"""``portal i18n preview``: every page and email in one language, written to files, made by
driving a throwaway portal through its test client."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import click
from flask import Flask

from portal.cli.base import in_app, invite_one
from portal.cli.demo import DEMO_CUSTOMER, DEMO_PARTNER
from portal.core import db
from portal.core.models import CustomerRelationship, PartnerKind, UserRole
from portal.domain import (
    acceptance,
    customers,
    invitations,
    partners,
    relationship_requests,
    relationships,
    resets,
    users,
)
from portal.domain.invitations import LinkSettings
from portal.i18n import files, languages
from portal.mail import outbox

#: The partner whose relationship request the preview shows.
SECOND_PARTNER = "Northwind Traders"

# --- translations -----------------------------------------------------------------------------


@click.command("preview")
@click.argument("locale")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to write the files (default: preview/LOCALE/).",
)
@click.option(
    "--serve",
    is_flag=True,
    help="Serve the files on this machine, and write them again when the catalog changes.",
)
@click.option("--port", default=8010, show_default=True, type=click.IntRange(1, 65535))
@click.pass_obj
def i18n_preview(locales_dir: Path, locale: str, out: Path | None, serve: bool, port: int) -> None:
    """Write the invitation email and the customer's pages in LOCALE to files, for a demo
    customer on a temporary database (no server needed). With --serve, show them in a browser,
    reloaded whenever the .po file is saved."""
    locale = locale.replace("-", "_")
    target = out or Path("preview") / locale
    written = _preview(locales_dir, locale, target)
    if not serve:
        for path in written:
            click.echo(files.shown(path))
        return
    from portal.i18n import live

    catalog = locales_dir / locale / "LC_MESSAGES" / "messages.po"
    with live.Preview(
        target, port, lambda: _preview(locales_dir, locale, target), catalog
    ) as shown:
        click.echo(
            f"Preview of {locale}: {shown.url}  (reloads when {files.shown(catalog)} is saved;"
        )
        click.echo("Ctrl+C stops)")
        shown.serve_forever()


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
        with in_app(overrides) as app:
            if locale not in languages.available_locales():
                raise click.ClickException(
                    f"no catalog for {locale} in {files.shown(locales_dir)}: add it with "
                    f"`portal i18n init {locale}`"
                )
            db.upgrade(db.engine())
            return _preview_pages(app, locale, target)


def _email(pages: dict[str, str], name: str, subject: str, text: str, html: str) -> None:
    pages[f"{name}.txt"] = f"Subject: {subject}\n\n{text}"
    pages[f"{name}.html"] = html


def _preview_pages(app: Flask, locale: str, target: Path) -> list[Path]:

    from babel.core import get_global

    session = db.session()
    parsed = files.parse_locale(locale)
    # The likeliest country for the language (zh_Hans: CN, pt_BR: BR), by Babel's table.
    likely_subtags = get_global("likely_subtags")
    likely_tag = likely_subtags.get(str(parsed)) or likely_subtags.get(parsed.language) or "en_US"
    likely = files.parse_locale(str(likely_tag))
    territory = parsed.territory or likely.territory or "US"
    script = f"{parsed.script}-" if parsed.script else ""
    catalog = app.extensions["portal.catalog"]
    country = territory if territory in catalog.countries else "US"
    partner = partners.create_partner(session, DEMO_PARTNER, PartnerKind.DIRECT, country=country)
    customer = customers.create_customer(
        session,
        partner,
        replace(DEMO_CUSTOMER, culture=f"{parsed.language}-{script}{territory}", country=country),
        catalog,
        app.extensions["portal.peppers"][0],
        actor="preview",
    ).customer
    issued = invite_one(app, customer, invitations.Options(language=locale))
    session.commit()

    pages: dict[str, str] = {
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
            pages[name] = response.get_data(as_text=True)
        return str(response.headers.get("Location", ""))

    page("", "POST", "/language", 302, lang=locale, next="/signin")
    landing = issued.url.removeprefix(app.config["BASE_URL"])
    page("landing.html", "GET", landing, 200)
    page("signin.html", "GET", "/signin", 200)
    page("", "POST", "/signin", 302, user_name=issued.user_name, password=issued.password)
    page("password.html", "GET", "/password", 200)
    page("", "POST", "/password", 302, password=password, repeat=password)
    # A second partner's relationship request, seen while the agreement is still to accept.
    second = partners.create_partner(session, SECOND_PARTNER, PartnerKind.DIRECT, country=country)
    users.create_user(session, second, "admin@northwind.example", password, UserRole.ADMIN_AGENT)
    links = LinkSettings.from_config(app.config)
    request_path = relationship_requests.url(links, second).removeprefix(app.config["BASE_URL"])
    personal = relationship_requests.create_personal(
        session,
        second,
        domain=customer.domain,
        recipient=DEMO_CUSTOMER.email,
        language=locale,
        links=links,
        locales=languages.available_locales(),
        created_by="preview",
    )
    session.commit()
    _email(pages, "relationship_request", personal.subject, personal.text_body, personal.html_body)
    page("relationship.html", "GET", request_path, 200)
    page("agreement.html", "GET", "/agreement", 200)
    contact = {"first_name": "Avery", "last_name": "Demo", "email": DEMO_CUSTOMER.email}
    page("", "POST", "/agreement", 302, accept="yes", phone="", **contact)
    page("account.html", "GET", "/account?accepted=1", 200)
    page("", "POST", request_path, 302, answer="accept")
    remove = f"/account/partners/{second.id}/remove"
    page("remove_partner.html", "GET", remove, 200)
    page("", "POST", remove, 302)
    page("account_partner_removed.html", "GET", "/account", 200)
    page("forgot.html", "GET", "/password/forgot", 200)
    resets.request(session, issued.user_name, locale)
    session.commit()
    resets.prepare(
        session, resets.ResetLinks.from_config(app.config), languages.available_locales()
    )
    for message in outbox.pending(db.session(), 50):
        if message.kind == acceptance.ACCEPTANCE_CONFIRMATION:
            name = "acceptance_confirmation"
        elif message.kind == relationships.REMOVAL_NOTICE:
            # Sent in the language of the partner's country; the preview shows it in LOCALE.
            removed = session.get_one(CustomerRelationship, (customer.id, second.id))
            notice = relationships.removal_notice(removed, customer, locale)
            _email(pages, "relationship_removed", notice.subject, notice.text, notice.html)
            continue
        elif message.kind == resets.RESET_EMAIL:
            name = "password_reset"
            reset = re.search(r"/password/reset/\S+", message.text_body)
            if reset:
                page("reset.html", "GET", reset.group(0), 200)
        else:
            continue
        _email(pages, name, message.subject, message.text_body, message.html_body)

    target.mkdir(parents=True, exist_ok=True)
    stylesheet = Path(app.static_folder or "") / "portal.css"
    (target / "portal.css").write_bytes(stylesheet.read_bytes())
    written = []
    for name, text in pages.items():
        path = target / name
        # The pages link their stylesheet from the server; the preview keeps a copy beside them.
        path.write_text(text.replace('href="/static/portal.css"', 'href="portal.css"'))
        written.append(path)
    return written
