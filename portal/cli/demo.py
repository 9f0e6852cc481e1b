"""``portal demo``: the portal on its embedded defaults, with a demo partner, key and customer
ready, and what to open."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import click
from flask import Flask
from sqlalchemy import select

from portal.cli.base import in_app, invite_one
from portal.cli.serving import check_port, serve_app
from portal.core import db
from portal.core.errors import PortalError
from portal.core.models import Customer, Partner, PartnerKind, UserRole
from portal.domain import customers, invitations, partners, users

# --- serving ----------------------------------------------------------------------------------


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--fresh",
    is_flag=True,
    help="Start over: delete the embedded default database (instance/portal.db) first.",
)
def demo(host: str, port: int, fresh: bool) -> None:
    """Start the portal with a demo partner, dashboard user and customer ready, and say what to
    open."""
    check_port(host, port)
    base = f"http://{host}:{port}"
    overrides = {} if os.environ.get("PORTAL_BASE_URL") else {"BASE_URL": base}
    with in_app(overrides) as app:
        if fresh:
            start_over(app)
        db.upgrade(db.engine())
        session = db.session()
        catalog = app.extensions["portal.catalog"]
        partner = session.scalars(select(Partner).where(Partner.name == DEMO_PARTNER)).first()
        if partner is None:
            partner = partners.create_partner(
                session, DEMO_PARTNER, PartnerKind.DIRECT, country="US"
            )
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
            issued = invite_one(app, customer, invitations.Options(send=True))
        except invitations.AlreadyAccepted:
            issued = None
        password = secrets.token_urlsafe(12)
        try:
            user = users.find(session, DEMO_USER)
            users.set_password(session, user, password, actor="cli")
        except PortalError:  # the first run: no such user yet
            users.create_user(session, partner, DEMO_USER, password, UserRole.ADMIN_AGENT)
        session.commit()
        key_header = f"'Authorization: Bearer {key.secret}'"
        click.echo(f"""
Demo partner:  {partner.name} ({partner.id})
API key:       {key.secret}   (new for this run; shown once)
Demo customer: {customer.company_name} ({customer.id})""")
        click.echo(f"""
The partner dashboard (password new for this run):
  open      {base}/dashboard/
  sign in   {DEMO_USER} / {password}""")
        if issued is not None:
            screen = f"{base}/dashboard/customers/{customer.id}/invitations/{issued.invitation.id}"
            click.echo(f"""
The customer's invitation (new for this run):
  open      {issued.url}
  sign in   {issued.user_name} / {issued.password}
  the email {screen}
            (in the dashboard: its text, the HTML email, and whether it was sent)""")
        else:
            click.echo(
                "\nThe demo customer has already accepted the agreement. To walk the customer's "
                "side again, start over: portal demo --fresh"
            )
        click.echo(f"""
Try the partner API:
  curl -H {key_header} {base}/v1/customers/{customer.id}/acceptanceStatus
  curl -H {key_header} {base}/v1/customers
API reference: {base}/docs   (the OpenAPI document: {base}/v1/openapi.json)
""")
    serve_app(app, host, port, None, None)


def start_over(app: Flask) -> None:
    """Delete the embedded default database, and only that: a database named in
    PORTAL_DATABASE_URL may hold more than the demo."""
    default = Path(app.instance_path) / "portal.db"
    url = str(app.config["DATABASE_URL"])
    if not url.startswith("sqlite:") or Path(url.removeprefix("sqlite:///")) != default:
        raise click.ClickException(
            "--fresh deletes only the embedded default database (instance/portal.db); "
            "PORTAL_DATABASE_URL names another, which is left alone."
        )
    db.engine().dispose()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{default}{suffix}").unlink(missing_ok=True)
    click.echo(f"Started over: deleted {default}")


DEMO_PARTNER = "Demo Partner"
DEMO_USER = "demo@demo-partner.example"
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
