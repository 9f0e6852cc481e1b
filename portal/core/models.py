"""Tables, as SQLAlchemy 2 typed models. The schema itself is made by the Alembic migrations."""

from __future__ import annotations

import enum
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, overload

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    types,
)
from sqlalchemy import Enum as SAEnum
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


@overload
def iso(moment: datetime) -> str: ...
@overload
def iso(moment: None) -> None: ...
def iso(moment: datetime | None) -> str | None:
    """A time as the API and the exports write it: ISO 8601 in UTC, milliseconds, ``Z``."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_id() -> str:
    return str(uuid.uuid4())


_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


def is_id(text: str) -> bool:
    """Whether ``text`` can be an id of ours (a lower-case GUID): anything else need not, and
    must not, reach a query."""
    return bool(_ID.match(text))


class UTCDateTime(types.TypeDecorator[datetime]):
    """Aware UTC datetimes on every database (SQLite keeps no time zone of its own)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime; pass an aware UTC datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def in_schema_of(dialect: str) -> Callable[..., bool]:
    """Alembic's ``include_object`` for ``dialect``: leaves out what only other databases have
    (indexes with ``info={"dialects": (...)}``)."""

    def include(item: Any, _name: Any, _type: Any, _reflected: Any, _compare_to: Any) -> bool:
        dialects = getattr(item, "info", {}).get("dialects")
        return dialects is None or dialect in dialects

    return include


def _enum(cls: type[enum.Enum]) -> SAEnum:
    return SAEnum(
        cls,
        native_enum=False,
        length=32,
        values_callable=lambda members: [m.value for m in members],
    )


class PartnerKind(enum.StrEnum):
    DIRECT = "direct"
    INDIRECT_PROVIDER = "indirect-provider"
    INDIRECT_RESELLER = "indirect-reseller"


class DeliveryStatus(enum.StrEnum):
    #: Waiting for a sender (again, after a failure: see ``next_attempt_at``).
    QUEUED = "queued"
    #: Claimed by a sender until ``claimed_until``.
    SENDING = "sending"
    SENT = "sent"
    #: Gave up after the last attempt; ``last_error`` says why.
    FAILED = "failed"
    #: Withdrawn before it was sent (its invitation was revoked or replaced).
    CANCELLED = "cancelled"


class Progress(enum.StrEnum):
    """How far a customer has come; the dashboard lists and filters by it.

    Kept in step by ``events.record``: each step is an event, so the two cannot disagree.
    """

    NOT_INVITED = "not-invited"
    INVITED = "invited"
    OPENED = "link-opened"
    SIGNED_IN = "signed-in"
    #: Accepted by the customer on the portal (``isSigned``).
    ACCEPTED = "accepted"
    #: Attested by the partner (and not, or not yet, accepted directly).
    ATTESTED = "attested"


class InvitationStatus(enum.StrEnum):
    """Where an invitation stands (see ``invitations.status``): closed, or the delivery state of
    its latest email."""

    #: Generated, never sent.
    CREATED = "created"
    QUEUED = DeliveryStatus.QUEUED.value
    SENDING = DeliveryStatus.SENDING.value
    SENT = DeliveryStatus.SENT.value
    FAILED = DeliveryStatus.FAILED.value
    CANCELLED = DeliveryStatus.CANCELLED.value
    #: Withdrawn by the partner: its link and password no longer work.
    REVOKED = "revoked"
    #: Replaced by a newer invitation for the same customer.
    SUPERSEDED = "superseded"
    EXPIRED = "expired"

    @property
    def closed(self) -> bool:
        """Whether its link and temporary password have stopped working."""
        return self in _CLOSED


_CLOSED = frozenset(
    {InvitationStatus.REVOKED, InvitationStatus.SUPERSEDED, InvitationStatus.EXPIRED}
)


class LinkState(enum.StrEnum):
    """Where a followed invitation link leads (see ``invitations.follow``); the closed states
    are named as the invitation's status is."""

    VALID = "valid"
    #: The customer has already accepted; the link leads to signing in.
    ACCEPTED = "accepted"
    REVOKED = InvitationStatus.REVOKED.value
    SUPERSEDED = InvitationStatus.SUPERSEDED.value
    EXPIRED = InvitationStatus.EXPIRED.value
    #: Not a link of the portal's (forged, mangled, or its invitation is gone).
    INVALID = "invalid"


class EventKind(enum.StrEnum):
    """What an ``Event`` records; stored as its value."""

    PARTNER_CREATED = "partner.created"
    API_KEY_CREATED = "api_key.created"
    API_KEY_REVOKED = "api_key.revoked"
    USER_CREATED = "partner_user.created"
    USER_SIGNED_IN = "partner_user.signed_in"
    USER_ROLE_CHANGED = "partner_user.role_changed"
    USER_PASSWORD_CHANGED = "partner_user.password_changed"  # noqa: S105 - an event kind
    USER_REMOVED = "partner_user.removed"
    CUSTOMER_CREATED = "customer.created"
    INVITATION_CREATED = "invitation.created"
    #: An invitation's email queued for sending on request (the first time or again).
    INVITATION_RESENT = "invitation.resent"
    INVITATION_OPENED = "invitation.opened"
    INVITATION_REVOKED = "invitation.revoked"
    CUSTOMER_SIGNED_IN = "customer.signed_in"
    CUSTOMER_PASSWORD_CHANGED = "customer.password_changed"  # noqa: S105 - an event kind
    AGREEMENT_ACCEPTED = "agreement.accepted"
    AGREEMENT_ATTESTED = "agreement.attested"
    #: A partner's relationship with a customer began (by accepting its request) or ended.
    RELATIONSHIP_BEGAN = "relationship.began"
    RELATIONSHIP_REMOVED = "relationship.removed"
    RELATIONSHIP_DECLINED = "relationship.declined"
    #: The customer's personal data erased on a data-protection request (``audit.erase``).
    CUSTOMER_ERASED = "customer.erased"


class RelationshipKind(enum.StrEnum):
    """How a partner serves a customer (Partner Center's reseller relationships)."""

    #: Sells to the customer itself: a direct-bill partner, or a provider for its own customers.
    RESELLER = "reseller"
    #: An indirect reseller, with its provider (``provider_id``), which sees the customer too.
    INDIRECT_RESELLER = "indirect-reseller"


class RelationshipState(enum.StrEnum):
    ACTIVE = "active"
    #: Ended by the customer (or an operator): the partner sees the customer no more.
    REMOVED = "removed"


class RelationshipOrigin(enum.StrEnum):
    """How a relationship began."""

    #: The partner created the customer.
    CREATED = "created"
    #: The customer accepted the partner's relationship request.
    REQUEST = "request"


class UserRole(enum.StrEnum):
    """Roles of a partner's dashboard users, named as in Partner Center."""

    #: Everything, including attesting acceptance and managing users.
    ADMIN_AGENT = "admin-agent"
    #: Creates customers and sends invitations; cannot attest or manage users.
    SALES_AGENT = "sales-agent"


class AcceptanceMethod(enum.StrEnum):
    #: The customer accepted on the portal (``isSigned``).
    DIRECT = "direct"
    #: The partner confirmed that the customer accepted.
    ATTESTED = "attested"


class Partner(Base):
    __tablename__ = "partners"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[PartnerKind] = mapped_column(_enum(PartnerKind))
    #: The indirect provider a reseller belongs to; None for every other kind.
    provider_id: Mapped[str | None] = mapped_column(ForeignKey("partners.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: ISO 3166 code of the partner's country; empty until set (``portal partners country``).
    #: Relationships form only within its country or region (``portal.core.regions``).
    country: Mapped[str] = mapped_column(String(2), default="", server_default="")
    #: Where customers' replies to the partner's emails go (``Reply-To``); empty: none, unless a
    #: dashboard user issued the email (``portal partners contact``).
    contact_email: Mapped[str] = mapped_column(String(254), default="", server_default="")

    provider: Mapped[Partner | None] = relationship(remote_side=[id])

    @property
    def may_attest(self) -> bool:
        return self.kind is not PartnerKind.INDIRECT_RESELLER


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    partner_id: Mapped[str] = mapped_column(ForeignKey("partners.id"), index=True)
    #: SHA-256 of the whole key; the key itself is shown once and never stored.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: The first characters of the key, so people can tell their keys apart.
    prefix: Mapped[str] = mapped_column(String(16))
    label: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    partner: Mapped[Partner] = relationship()


class Customer(Base):
    __tablename__ = "customers"
    __table_args__ = (
        *(
            # The dashboard's search, LIKE '%text%' (PostgreSQL with pg_trgm only).
            Index(
                f"ix_customers_{column}_trgm",
                column,
                postgresql_using="gin",
                postgresql_ops={column: "gin_trgm_ops"},
                info={"dialects": ("postgresql",)},
            )
            for column in ("company_name", "domain", "email", "contact_email")
        ),
    )

    #: The customer's tenant id (a GUID), also ``companyProfile.tenantId``.
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    #: The partner that created the customer: its invitations issue the customer's first
    #: credentials. Who may see the customer is never decided by it, only by the relationships.
    creator_id: Mapped[str] = mapped_column("partner_id", ForeignKey("partners.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)

    # companyProfile
    company_name: Mapped[str] = mapped_column(String(200))
    domain: Mapped[str] = mapped_column(String(253), unique=True)

    # billingProfile
    email: Mapped[str] = mapped_column(String(254))
    #: A locale such as ``de-DE``: the customer's language for mail and pages.
    culture: Mapped[str] = mapped_column(String(35))
    language: Mapped[str] = mapped_column(String(35))
    #: ISO 3166 alpha-2; picks the regional agreement document.
    country: Mapped[str] = mapped_column(String(2))
    address_first_name: Mapped[str] = mapped_column(String(100), default="")
    address_last_name: Mapped[str] = mapped_column(String(100), default="")
    address_line1: Mapped[str] = mapped_column(String(200), default="")
    address_line2: Mapped[str] = mapped_column(String(200), default="")
    city: Mapped[str] = mapped_column(String(100), default="")
    state: Mapped[str] = mapped_column(String(100), default="")
    postal_code: Mapped[str] = mapped_column(String(20), default="")
    phone: Mapped[str] = mapped_column(String(40), default="")

    # primary contact: who gets the invitation and notices
    contact_first_name: Mapped[str] = mapped_column(String(100))
    contact_last_name: Mapped[str] = mapped_column(String(100))
    contact_email: Mapped[str] = mapped_column(String(254))
    contact_phone: Mapped[str] = mapped_column(String(40), default="")

    #: German customers bound by professional secrecy (section 203 StGB) also accept the
    #: Professional Secrecy Amendment.
    requires_secrecy_amendment: Mapped[bool] = mapped_column(default=False)

    creator: Mapped[Partner] = relationship()
    credential: Mapped[CustomerCredential | None] = relationship(back_populates="customer")


class CustomerCredential(Base):
    __tablename__ = "customer_credentials"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), unique=True)
    user_name: Mapped[str] = mapped_column(String(254), unique=True)
    #: Scheme-prefixed hash (see ``credentials.py``); never the password.
    password_hash: Mapped[str] = mapped_column(String(255))
    #: A temporary password must be changed at first sign-in.
    temporary: Mapped[bool] = mapped_column(default=True)
    #: Counts changes of the password (a new choice, a new invitation, a withdrawal). A session
    #: lives only while it matches: every change ends the sessions opened before it.
    generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    customer: Mapped[Customer] = relationship(back_populates="credential")


class CustomerRelationship(Base):
    """A partner's relationship with a customer. A customer exists once; partners serve it
    through relationships (one per partner), and its acceptance of the agreement follows it."""

    __tablename__ = "customer_relationships"
    __table_args__ = (
        # A partner's pages, newest first (see ``reports.customer_page``).
        Index("ix_customer_relationships_page", "partner_id", "state", "began_at", "customer_id"),
        Index(
            "ix_customer_relationships_progress",
            "partner_id",
            "state",
            "progress",
            "began_at",
            "customer_id",
            postgresql_include=["invitation_expires_at"],
        ),
        Index("ix_customer_relationships_provider", "provider_id", "state"),
    )

    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), primary_key=True)
    partner_id: Mapped[str] = mapped_column(ForeignKey("partners.id"), primary_key=True)
    kind: Mapped[RelationshipKind] = mapped_column(_enum(RelationshipKind))
    #: An indirect reseller's provider; None for a reseller relationship.
    provider_id: Mapped[str | None] = mapped_column(ForeignKey("partners.id"))
    state: Mapped[RelationshipState] = mapped_column(
        _enum(RelationshipState), default=RelationshipState.ACTIVE
    )
    origin: Mapped[RelationshipOrigin] = mapped_column(_enum(RelationshipOrigin))
    began_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: The customer's user who accepted the request; empty when the partner created the customer.
    accepted_by: Mapped[str] = mapped_column(String(254), default="")
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Who ended it: ``customer:<user>`` or ``cli``; empty while active.
    removed_by: Mapped[str] = mapped_column(String(300), default="")

    #: The furthest step this partner's dealings with the customer have reached (see
    #: ``Progress``; the customer's acceptance counts for every partner), and when.
    progress: Mapped[Progress] = mapped_column(_enum(Progress), default=Progress.NOT_INVITED)
    progress_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: When this partner's current invitation link expires; None without a usable invitation.
    #: Lets the dashboard find "invitation expired" customers from this table's index alone.
    invitation_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    customer: Mapped[Customer] = relationship()
    partner: Mapped[Partner] = relationship(foreign_keys=[partner_id])


class AgreementAcceptance(Base):
    """One acceptance of one agreement template, by the customer or attested by a partner."""

    __tablename__ = "agreement_acceptances"
    __table_args__ = (
        # One direct acceptance per template, and no attestation repeated with the same contact.
        UniqueConstraint("customer_id", "template_id", "dedupe_key", name="uq_acceptance_once"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    agreement_type: Mapped[str] = mapped_column(String(64))
    template_id: Mapped[str] = mapped_column(String(64))
    version_rank: Mapped[int] = mapped_column(Integer, default=0)
    method: Mapped[AcceptanceMethod] = mapped_column(_enum(AcceptanceMethod))
    #: ``direct`` for a direct acceptance, else a digest of the attested contact.
    dedupe_key: Mapped[str] = mapped_column(String(64))

    # who accepted
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str] = mapped_column(String(254))
    phone: Mapped[str] = mapped_column(String(40), default="")

    #: When the customer agreed (for attestations: the date the partner gives).
    date_agreed: Mapped[datetime] = mapped_column(UTCDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Who recorded it: the partner's id for attestations, the customer's user name otherwise.
    recorded_by: Mapped[str] = mapped_column(String(254))

    # what was shown
    country: Mapped[str] = mapped_column(String(2), default="")
    language: Mapped[str] = mapped_column(String(35), default="")
    document_uri: Mapped[str] = mapped_column(String(500), default="")

    # request evidence, for direct acceptances
    ip_address: Mapped[str] = mapped_column(String(45), default="")
    user_agent: Mapped[str] = mapped_column(String(500), default="")
    #: The partner whose invitation, request or attestation it came through: it alone sees the
    #: evidence (the customer's other partners see that, what and when it was accepted).
    partner_id: Mapped[str | None] = mapped_column(String(36))

    customer: Mapped[Customer] = relationship()


class Event(Base):
    """The append-only log of what happened; the database refuses updates and deletes."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_customer", "customer_id", "id"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: An ``EventKind`` value such as ``customer.created``.
    kind: Mapped[str] = mapped_column(String(64))
    partner_id: Mapped[str | None] = mapped_column(String(36))
    customer_id: Mapped[str | None] = mapped_column(String(36))
    #: Who did it: ``partner:<id>``, ``key:<id>``, ``customer:<user>``, ``cli``.
    actor: Mapped[str] = mapped_column(String(300), default="")
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class AuditEntry(Base):
    """One link of the evidence chain (``portal.domain.audit``): an ``events`` or
    ``agreement_acceptances`` row's digest, chained by hash to the entry before it and sealed
    with the audit key, written in the transaction that writes the row. The database refuses
    updates and deletes."""

    __tablename__ = "audit_chain"
    __table_args__ = (UniqueConstraint("entry_table", "entry_id"),)

    #: 1, 2, 3, ... with no gaps: a missing number is a removed entry.
    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    )
    #: The row's table: ``events`` or ``agreement_acceptances``.
    entry_table: Mapped[str] = mapped_column(String(32))
    #: The row's id, as text (an event's number, an acceptance's GUID).
    entry_id: Mapped[str] = mapped_column(String(36))
    #: SHA-256 (hex) of the row's evidence columns as canonical JSON (``audit.digest``).
    digest: Mapped[str] = mapped_column(String(64))
    #: The previous entry's ``hash``; 64 zeros for the first.
    prev_hash: Mapped[str] = mapped_column(String(64))
    #: SHA-256 (hex) of ``prev_hash|seq|entry_table|entry_id|digest``: anyone can recompute it.
    hash: Mapped[str] = mapped_column(String(64))
    #: HMAC-SHA256 (hex) of ``hash`` with the audit key: only the key's holder can make it, so
    #: someone who can only write SQL cannot chain an edit again. Empty when chained by a
    #: migration run without the key.
    seal: Mapped[str] = mapped_column(String(64))
    #: Which key sealed it: the first 12 hex digits of the key's SHA-256.
    key_id: Mapped[str] = mapped_column(String(12))


class Invitation(Base):
    """One generated invitation email for one customer, with its signed link's state."""

    __tablename__ = "invitations"
    __table_args__ = (Index("ix_invitations_customer", "customer_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"))
    #: Random; the link carries it, so a link is good only for this very invitation.
    nonce: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: Who asked for it: ``partner:<id>`` or ``cli``.
    created_by: Mapped[str] = mapped_column(String(300), default="")
    #: The locale the email was written in.
    language: Mapped[str] = mapped_column(String(35))
    recipient: Mapped[str] = mapped_column(String(254))
    include_credentials: Mapped[bool] = mapped_column(default=True)
    subject: Mapped[str] = mapped_column(String(300))
    #: The email as generated, or as the partner last edited and sent it; emptied once the
    #: invitation can no longer be used, since it may hold the temporary password.
    text_body: Mapped[str] = mapped_column(Text, default="")
    html_body: Mapped[str] = mapped_column(Text, default="")
    #: Withdrawn by the partner.
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Replaced by a newer invitation for the same customer.
    superseded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: First time the link was opened (mail scanners count too; nothing else changes).
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    customer: Mapped[Customer] = relationship()
    messages: Mapped[list[OutboxMessage]] = relationship(
        back_populates="invitation", order_by="OutboxMessage.created_at"
    )


class PersonalRequest(Base):
    """A reseller relationship request addressed to one company (by domain) and one person, as
    an email in their language: tracked (sent, opened, accepted, declined), expiring."""

    __tablename__ = "personal_requests"
    __table_args__ = (Index("ix_personal_requests_partner", "partner_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    #: The partner asking (an indirect reseller's request names its provider through it).
    partner_id: Mapped[str] = mapped_column(ForeignKey("partners.id"))
    #: Who asked for it: ``partner:<id>`` (a provider for its reseller), ``user:<email>``.
    created_by: Mapped[str] = mapped_column(String(300), default="")
    #: The company it is addressed to: only a customer with this domain may answer it.
    domain: Mapped[str] = mapped_column(String(255))
    recipient: Mapped[str] = mapped_column(String(254))
    #: The locale the email was written in.
    language: Mapped[str] = mapped_column(String(35))
    #: Random; the link carries it.
    nonce: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    subject: Mapped[str] = mapped_column(String(300))
    text_body: Mapped[str] = mapped_column(Text, default="")
    html_body: Mapped[str] = mapped_column(Text, default="")
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: ``accepted`` or ``declined`` once the company answered; empty before.
    answer: Mapped[str] = mapped_column(String(16), default="")
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: The customer that answered.
    customer_id: Mapped[str | None] = mapped_column(ForeignKey("customers.id"))
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    partner: Mapped[Partner] = relationship()
    messages: Mapped[list[OutboxMessage]] = relationship(
        primaryjoin="PersonalRequest.id == foreign(OutboxMessage.request_id)",
        order_by="OutboxMessage.created_at",
        viewonly=True,
    )


class OutboxMessage(Base):
    """An email waiting to be sent, written in the same transaction as what caused it."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    #: What it is: ``invitation``, ``attestation-notice``, ...
    kind: Mapped[str] = mapped_column(String(64))
    invitation_id: Mapped[str | None] = mapped_column(ForeignKey("invitations.id"), index=True)
    #: The personal relationship request it carries, if any.
    request_id: Mapped[str | None] = mapped_column(String(36), index=True)
    customer_id: Mapped[str | None] = mapped_column(String(36), index=True)
    #: The partner whose dealing it is (an invitation, a notice); None for the customer's own
    #: mail, such as the confirmation of its acceptance.
    partner_id: Mapped[str | None] = mapped_column(String(36))
    to_address: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(300))
    text_body: Mapped[str] = mapped_column(Text, default="")
    html_body: Mapped[str] = mapped_column(Text, default="")
    #: The whole MIME message, built once when queued, so sending is only SMTP.
    mime: Mapped[bytes | None] = mapped_column(LargeBinary)
    #: The Message-ID header, the same on every attempt, so receivers can drop a duplicate.
    message_id: Mapped[str] = mapped_column(String(200), unique=True)
    status: Mapped[DeliveryStatus] = mapped_column(
        _enum(DeliveryStatus), default=DeliveryStatus.QUEUED
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: While SENDING: the claim lapses then, and another sender may retry.
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    invitation: Mapped[Invitation | None] = relationship(back_populates="messages")


class PasswordResetRequest(Base):
    """A "forgot password" request, stored as typed whether or not the account exists (the page
    does the same work for everyone); the mail sender answers it (``resets.prepare``)."""

    __tablename__ = "password_reset_requests"
    __table_args__ = (Index("ix_password_reset_requests_waiting", "handled_at", "requested_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    #: As typed, lower-cased; may name no account.
    user_name: Mapped[str] = mapped_column(String(254))
    #: The page's language: the email's.
    locale: Mapped[str] = mapped_column(String(16))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    handled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class CustomerSession(Base):
    """A signed-in customer's session, kept on the server so sign-out and idle expiry are real."""

    __tablename__ = "customer_sessions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    #: SHA-256 of the session id in the cookie; the id itself is never stored.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    #: Signed in with a temporary password: must choose a password before anything else.
    must_change_password: Mapped[bool] = mapped_column(default=False)
    #: The credential's ``generation`` when this session began; it ends when they differ.
    generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ip_address: Mapped[str] = mapped_column(String(45), default="")
    user_agent: Mapped[str] = mapped_column(String(500), default="")

    customer: Mapped[Customer] = relationship()


class PartnerUser(Base):
    """A person at a partner who signs in to the dashboard."""

    __tablename__ = "partner_users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    partner_id: Mapped[str] = mapped_column(ForeignKey("partners.id"), index=True)
    #: Lower-case; the sign-in name.
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[UserRole] = mapped_column(_enum(UserRole))
    #: Slow salted hash: people choose these passwords.
    password_hash: Mapped[str] = mapped_column(String(255))
    #: Counts changes of the password and the role, and the removal: a session lives only while
    #: it matches, so each of them ends the sessions opened before it.
    generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Removed from the dashboard: cannot sign in; the row stays for the event log's sake.
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    partner: Mapped[Partner] = relationship()


class PartnerUserSession(Base):
    """A signed-in dashboard user's session, on the server so sign-out and idle expiry are real."""

    __tablename__ = "partner_user_sessions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    #: SHA-256 of the session id in the cookie; the id itself is never stored.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("partner_users.id"), index=True)
    #: The user's ``generation`` when this session began; it ends when they differ.
    generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[PartnerUser] = relationship()


class RateLimitCounter(Base):
    """A failed sign-in counter of the ``database://`` rate-limit storage (see ``throttle.py``):
    kept where every worker and process sees it, with no service beside the database."""

    __tablename__ = "rate_limit_counters"

    #: SHA-256 of the limit's key (it holds user names and addresses).
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
    #: Seconds since the epoch, as the ``limits`` library counts them.
    expires_at: Mapped[float] = mapped_column(Double, index=True)


class ApiRequest(Base):
    """A partner's POST or DELETE carrying ``MS-RequestId``, Partner Center's idempotency key:
    claimed before the request runs, answered after (``portal.domain.idempotency``). A retry
    with the same id and the same request gets the first answer back."""

    __tablename__ = "api_requests"
    __table_args__ = (Index("ix_api_requests_claimed_at", "claimed_at"),)

    partner_id: Mapped[str] = mapped_column(ForeignKey("partners.id"), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: SHA-256 of the method, path, query and body: the same id for another request is a 409.
    fingerprint: Mapped[str] = mapped_column(String(64))
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: None while the first request runs.
    status: Mapped[int | None] = mapped_column(Integer)
    #: The answer's JSON without its secrets (credentials, emails that carry them).
    body: Mapped[str | None] = mapped_column(Text)
    #: The secrets, encrypted with a key derived from the API key that made the request: only
    #: the same key reads them back.
    sealed: Mapped[str | None] = mapped_column(Text)
    location: Mapped[str | None] = mapped_column(String(300))


class WebhookStatus(enum.StrEnum):
    #: Waiting for a sender (again, after a failed attempt: see ``next_attempt_at``).
    QUEUED = "queued"
    #: Claimed by a sender until ``claimed_until``.
    SENDING = "sending"
    #: The receiver answered 2xx.
    DELIVERED = "delivered"
    #: Given up after the last attempt; ``last_error`` says why. A partner may send it again.
    FAILED = "failed"


class WebhookEndpoint(Base):
    """A partner's receiver of events (``portal.domain.webhooks``): a URL and the secret that
    signs what is sent to it."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    partner_id: Mapped[str] = mapped_column(ForeignKey("partners.id"), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    #: The signing secret, encrypted with a key derived from the portal's secret key.
    secret_sealed: Mapped[str] = mapped_column(Text)
    #: The event types it receives; empty: all of them.
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Deleted by the partner: nothing more is sent to it (its deliveries are kept, unlisted).
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebhookDelivery(Base):
    """One event for one endpoint, written in the same transaction as what caused it (the
    webhooks' outbox), sent after commit, retried with backoff."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_endpoint", "endpoint_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id"))
    #: The event's own id, the same in every endpoint's delivery of it: receivers drop repeats.
    event_id: Mapped[str] = mapped_column(String(36))
    event_type: Mapped[str] = mapped_column(String(64))
    #: The JSON body, exactly as signed and sent.
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[WebhookStatus] = mapped_column(
        _enum(WebhookStatus), default=WebhookStatus.QUEUED
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: The receiver's last HTTP status; None if it could not be reached.
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
