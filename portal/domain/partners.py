"""Partners and their API keys (who may see which customers: ``relationships.visible_to``)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, select
from sqlalchemy.orm import Session

from portal.core import catalog, credentials, validate
from portal.core.errors import NotFound, PortalError
from portal.core.models import ApiKey, EventKind, Partner, PartnerKind, utcnow
from portal.domain import events


class InvalidPartner(PortalError):
    error_name = "InvalidPartner"


def create_partner(
    session: Session,
    name: str,
    kind: PartnerKind,
    provider_id: str | None = None,
    actor: str = "cli",
    country: str = "",
    contact_email: str = "",
) -> Partner:
    """A new partner; a reseller must name the indirect provider it belongs to."""
    name = name.strip()
    problem = validate.text(name, 200)
    if problem:
        raise InvalidPartner(f"The partner's name {problem}.")
    country = _country(country)
    provider: Partner | None = None
    if kind is PartnerKind.INDIRECT_RESELLER:
        if not provider_id:
            raise InvalidPartner(
                "An indirect reseller belongs to an indirect provider: give --provider."
            )
        provider = session.get(Partner, provider_id)
        if provider is None or provider.kind is not PartnerKind.INDIRECT_PROVIDER:
            raise InvalidPartner(f"{provider_id} is not an indirect provider.")
    elif provider_id:
        raise InvalidPartner("Only an indirect reseller belongs to a provider.")
    partner = Partner(name=name, kind=kind, provider=provider, country=country)
    if contact_email:
        set_contact(partner, contact_email)
    session.add(partner)
    session.flush()
    events.record(
        session,
        EventKind.PARTNER_CREATED,
        actor=actor,
        partner_id=partner.id,
        data={"name": name, "kind": kind.value, "provider_id": provider_id},
    )
    return partner


def _country(country: str) -> str:
    """An ISO 3166 code the agreement catalog knows, upper-cased; empty stays empty."""
    country = country.strip().upper()
    if country and country not in catalog.current().countries:
        raise InvalidPartner(f"{country!r} is not an ISO 3166 country code the catalog knows.")
    return country


def set_country(partner: Partner, country: str) -> None:
    """Set the partner's country (it decides which customers the partner may serve)."""
    partner.country = _country(country)
    if not partner.country:
        raise InvalidPartner("Give the partner's country, e.g. US or DE.")


def set_contact(partner: Partner, email: str) -> None:
    """Set where customers' replies to the partner's emails go; empty: nowhere of its own."""
    email = email.strip()
    problem = validate.email(email) if email else None
    if problem:
        raise InvalidPartner(f"The contact address {problem}.")
    partner.contact_email = email


def resellers(session: Session, provider: Partner) -> list[Partner]:
    """A provider's indirect resellers, by name (none for any other partner)."""
    found = session.scalars(
        select(Partner).where(Partner.provider_id == provider.id).order_by(Partner.name)
    )
    return list(found)


@dataclass(frozen=True)
class NewKey:
    key: ApiKey
    #: The key itself, shown once.
    secret: str


def create_key(session: Session, partner: Partner, label: str = "", actor: str = "cli") -> NewKey:
    problem = validate.text(label, 200, required=False)
    if problem:
        raise InvalidPartner(f"The key's label {problem}.")
    secret = credentials.new_api_key()
    key = ApiKey(
        partner=partner,
        key_hash=credentials.api_key_hash(secret),
        prefix=secret[:12],
        label=label.strip(),
    )
    session.add(key)
    session.flush()
    events.record(
        session,
        EventKind.API_KEY_CREATED,
        actor=actor,
        partner_id=partner.id,
        data={"key_id": key.id, "prefix": key.prefix},
    )
    return NewKey(key, secret)


def revoke_key(session: Session, key_id: str, actor: str = "cli") -> ApiKey:
    key = session.get(ApiKey, key_id)
    if key is None:
        # Accept the shown prefix too, which is what people have at hand.
        key = session.scalars(select(ApiKey).where(ApiKey.prefix == key_id)).first()
    if key is None:
        raise NotFound(f"No API key {key_id}.")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        events.record(
            session,
            EventKind.API_KEY_REVOKED,
            actor=actor,
            partner_id=key.partner_id,
            data={"key_id": key.id},
        )
    return key


def list_keys(session: Session, partner_id: str | None = None) -> list[ApiKey]:
    query = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
    if partner_id:
        query = query.where(ApiKey.partner_id == partner_id)
    return list(session.scalars(query))


def list_partners(session: Session) -> list[Partner]:
    return list(session.scalars(select(Partner).order_by(Partner.created_at, Partner.id)))


#: Built once: every API request runs it.
_PARTNER_FOR_KEY = (
    select(Partner)
    .join(ApiKey, ApiKey.partner_id == Partner.id)
    .where(ApiKey.key_hash == bindparam("key_hash"), ApiKey.revoked_at.is_(None))
)


_PARTNER_ID_FOR_KEY = select(ApiKey.partner_id).where(
    ApiKey.key_hash == bindparam("key_hash"), ApiKey.revoked_at.is_(None)
)


def partner_id_for_key(connection: Connection, secret: str) -> str | None:
    """The id of the partner that owns this live key (Core: no session needed)."""
    found: str | None = connection.scalar(
        _PARTNER_ID_FOR_KEY, {"key_hash": credentials.api_key_hash(secret)}
    )
    return found


def partner_for_key(session: Session, secret: str) -> Partner | None:
    """The partner that owns this live key, in one indexed query."""
    found = session.scalars(_PARTNER_FOR_KEY, {"key_hash": credentials.api_key_hash(secret)})
    return found.first()
