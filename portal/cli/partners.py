"""``portal partners``: partners, their API keys and their dashboard users."""

from __future__ import annotations

from typing import Any

import click
from sqlalchemy.orm import Session

from portal.cli.base import KINDS, emit, fail, in_app
from portal.core import db
from portal.core.errors import PortalError
from portal.core.models import Partner, PartnerKind, UserRole
from portal.domain import partners, users

# --- partners and keys ------------------------------------------------------------------------


@click.group("partners")
def partners_group() -> None:
    """Partners and their API keys."""


@partners_group.command("create")
@click.option("--name", required=True)
@click.option("--kind", required=True, type=click.Choice(KINDS))
@click.option("--provider", "provider_id", help="The indirect provider a reseller belongs to.")
@click.option(
    "--country",
    default="",
    help="ISO country code, e.g. US: the partner serves customers in its country or region.",
)
@click.option(
    "--contact-email",
    default="",
    help="Where customers' replies to the partner's emails go (Reply-To).",
)
@click.option("--json", "as_json", is_flag=True, help='Print {"id": ..., "apiKey": ...}.')
def partners_create(
    name: str, kind: str, provider_id: str | None, country: str, contact_email: str, as_json: bool
) -> None:
    """Create a partner and its first API key (the key is shown this once)."""
    with in_app():
        session = db.session()
        try:
            partner = partners.create_partner(
                session,
                name,
                PartnerKind(kind),
                provider_id,
                country=country,
                contact_email=contact_email,
            )
        except PortalError as exc:
            raise fail(exc) from exc
        key = partners.create_key(session, partner, label="first key")
        session.commit()
        emit(
            as_json,
            {"id": partner.id, "apiKey": key.secret},
            f"partner id: {partner.id}\nAPI key:    {key.secret}\n"
            "Keep the key now: it is stored hashed and cannot be shown again.",
        )


def _partner(session: Session, partner_id: str) -> Partner:
    partner = session.get(Partner, partner_id)
    if partner is None:
        raise click.ClickException(f"No partner {partner_id}.")
    return partner


@partners_group.command("list")
@click.option("--json", "as_json", is_flag=True)
def partners_list(as_json: bool) -> None:
    """List partners."""
    with in_app():
        found = partners.list_partners(db.session())
        rows = [
            {
                "id": p.id,
                "name": p.name,
                "kind": p.kind.value,
                "providerId": p.provider_id,
                "country": p.country or None,
            }
            for p in found
        ]
        text = "\n".join(f"{p.id}  {p.kind.value:<18} {p.country or '--'}  {p.name}" for p in found)
        emit(as_json, {"items": rows}, text or "no partners")


@partners_group.command("country")
@click.argument("partner_id")
@click.argument("country")
def partners_country(partner_id: str, country: str) -> None:
    """Set a partner's country (ISO code, e.g. US): it may serve customers in its country or
    region only, and needs one before it hands out relationship request links."""
    with in_app():
        session = db.session()
        partner = _partner(session, partner_id)
        try:
            partners.set_country(partner, country)
        except PortalError as exc:
            raise fail(exc) from exc
        session.commit()
        click.echo(f"{partner.name}: country {partner.country}")


@partners_group.command("contact")
@click.argument("partner_id")
@click.argument("email")
def partners_contact(partner_id: str, email: str) -> None:
    """Set where customers' replies to a partner's emails go (their Reply-To); "" for none."""
    with in_app():
        session = db.session()
        partner = _partner(session, partner_id)
        try:
            partners.set_contact(partner, email)
        except PortalError as exc:
            raise fail(exc) from exc
        session.commit()
        click.echo(f"{partner.name}: replies go to {partner.contact_email or '(nobody)'}")


@partners_group.group("keys")
def keys_group() -> None:
    """API keys."""


@keys_group.command("create")
@click.argument("partner_id")
@click.option("--label", default="")
@click.option("--json", "as_json", is_flag=True)
def keys_create(partner_id: str, label: str, as_json: bool) -> None:
    """Create another API key for a partner (shown this once)."""
    with in_app():
        session = db.session()
        partner = _partner(session, partner_id)
        try:
            key = partners.create_key(session, partner, label=label)
        except PortalError as exc:
            raise fail(exc) from exc
        session.commit()
        emit(
            as_json,
            {"id": key.key.id, "apiKey": key.secret},
            f"key id:  {key.key.id}\nAPI key: {key.secret}",
        )


@keys_group.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    """Revoke a key (by id or shown prefix); it stops working on the next request."""
    with in_app():
        session = db.session()
        try:
            key = partners.revoke_key(session, key_id)
        except PortalError as exc:
            raise fail(exc) from exc
        session.commit()
        click.echo(f"revoked {key.id} ({key.prefix}…)")


@keys_group.command("list")
@click.option("--partner", "partner_id")
@click.option("--json", "as_json", is_flag=True)
def keys_list(partner_id: str | None, as_json: bool) -> None:
    """List keys: id, prefix, partner, state. Never the keys themselves."""
    with in_app():
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
        emit(as_json, {"items": rows}, text or "no keys")


# --- dashboard users --------------------------------------------------------------------------


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
    with in_app():
        session = db.session()
        partner = _partner(session, partner_id)
        try:
            user = users.create_user(session, partner, email, password, UserRole(role), name)
        except PortalError as exc:
            raise fail(exc) from exc
        session.commit()
        emit(
            as_json,
            {"id": user.id, "email": user.email, "role": user.role.value},
            f"user {user.email} ({user.role.value}) added to {partner.name}",
        )


def _user(session: Any, email_or_id: str) -> Any:
    try:
        return users.find(session, email_or_id)
    except PortalError as exc:
        raise fail(exc) from exc


@users_group.command("role")
@click.argument("user")
@click.argument("role", type=click.Choice([r.value for r in UserRole]))
def users_role(user: str, role: str) -> None:
    """Give a dashboard user (email or id) another role; their sessions end."""
    with in_app():
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
    with in_app():
        session = db.session()
        found = _user(session, user)
        try:
            users.set_password(session, found, password, actor="cli")
        except PortalError as exc:
            raise fail(exc) from exc
        session.commit()
        click.echo(f"new password set for {found.email}; signed in nowhere")


@users_group.command("remove")
@click.argument("user")
def users_remove(user: str) -> None:
    """Take a dashboard user (email or id) off the dashboard; their sessions end at once."""
    with in_app():
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
    with in_app():
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
        emit(as_json, {"items": rows}, text or "no users")
