"""``portal demo``: the portal on its embedded defaults, with a demo partner, key and customer
ready, and what to open."""

from __future__ import annotations

import os

import click
from sqlalchemy import select

from portal.cli.base import in_app, invite_one
from portal.cli.serving import check_port, serve_app
from portal.core import db
from portal.core.models import Customer, Partner, PartnerKind
from portal.domain import customers, invitations, partners

# --- serving ----------------------------------------------------------------------------------


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
def demo(host: str, port: int) -> None:
    """Start the portal with a demo partner and customer ready, and say what to open."""
    check_port(host, port)
    base = f"http://{host}:{port}"
    overrides = {} if os.environ.get("PORTAL_BASE_URL") else {"BASE_URL": base}
    with in_app(overrides) as app:
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
    serve_app(app, host, port, None, None)


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
