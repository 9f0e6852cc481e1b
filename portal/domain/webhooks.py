"""Webhooks: what happens to a partner's customers, told to the partner's own systems.

A partner registers a receiver (an HTTPS URL) and gets a secret. Each event it cares about is
written as a delivery row in the same transaction as what caused it (the webhooks' outbox, as
mail has its own) and sent after commit by the delivery loop: a POST of a JSON body signed with
HMAC-SHA256 over ``<timestamp>.<body>`` (as Stripe signs), retried with backoff, each attempt
visible to the partner and any delivery re-sendable.

Receivers are reached only at public addresses: the host is resolved at each attempt, every
address it has must be public (not private, loopback, link-local, shared or reserved), and the
connection goes to the address that was checked (no second look-up an attacker's DNS could
answer otherwise). Redirects are not followed. ``WEBHOOK_ALLOW_PRIVATE`` lifts this, and allows
plain http, for development and tests.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import secrets
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from flask import Flask
from sqlalchemy import and_, literal, select, union, update
from sqlalchemy.orm import Session

from portal.core import db, metrics, queues
from portal.core.errors import InvalidFields, NotFound, PortalError, Problem, ProblemCode
from portal.core.models import (
    CustomerRelationship,
    EventKind,
    Partner,
    RelationshipState,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookStatus,
    is_id,
    iso,
    new_id,
    utcnow,
)

#: Events recorded in the event log that partners can receive, by their webhook name.
FROM_EVENTS: dict[EventKind, str] = {
    EventKind.INVITATION_OPENED: "invitation.opened",
    EventKind.CUSTOMER_SIGNED_IN: "customer.signedIn",
    EventKind.AGREEMENT_ACCEPTED: "agreement.accepted",
    EventKind.AGREEMENT_ATTESTED: "agreement.attested",
    EventKind.RELATIONSHIP_BEGAN: "relationship.began",
    EventKind.RELATIONSHIP_REMOVED: "relationship.removed",
    EventKind.RELATIONSHIP_DECLINED: "relationship.declined",
}
#: The invitation email's fate, told by the sender.
INVITATION_DELIVERED = "invitation.delivered"
INVITATION_FAILED = "invitation.failed"
EVENT_TYPES = (INVITATION_DELIVERED, INVITATION_FAILED, *FROM_EVENTS.values())
#: The outbox's kind of an invitation's email (``invitations.INVITATION_MAIL``).
INVITATION_MAIL = "invitation"
#: Events about the customer itself: every partner it works with is told.
_CUSTOMERS_OWN = frozenset({EventKind.CUSTOMER_SIGNED_IN, EventKind.AGREEMENT_ACCEPTED})
#: What of an event's data a receiver gets (the rest, such as the signer's address, stays).
_SHOWN = {
    "invitation_id": "invitationId",
    "acceptance_id": "agreementId",
    "template_id": "templateId",
}

log = logging.getLogger(__name__)
MAX_ENDPOINTS = 10
MAX_URL_LENGTH = 2000
#: Header names of a delivery.
SIGNATURE_HEADER = "Portal-Signature"
#: Bytes of a receiver's answer read (and kept, as the error, when it is not 2xx).
_ANSWER_READ = 1024
#: A delivery claimed by a sender that died is due again after this.
CLAIM_LEASE = timedelta(minutes=2)


class WebhookNotFound(NotFound):
    error_name = "WebhookNotFound"
    description = "No webhook with this id was found."


class DeliveryNotFound(NotFound):
    error_name = "WebhookDeliveryNotFound"
    description = "No delivery with this id was found for this webhook."


class TooManyWebhooks(PortalError):
    status = 409
    code = 10430
    error_name = "TooManyWebhooks"
    description = f"A partner can register at most {MAX_ENDPOINTS} webhooks; delete one first."


@dataclass(frozen=True)
class Settings:
    """How receivers are reached (``WEBHOOK_*`` settings)."""

    allow_private: bool = False
    timeout: float = 10.0
    max_attempts: int = 8
    retry_base: float = 30.0
    retry_max: float = 6 * 3600.0

    @classmethod
    def of(cls, config: Any) -> Settings:
        return cls(
            allow_private=bool(config.get("WEBHOOK_ALLOW_PRIVATE")),
            timeout=float(config.get("WEBHOOK_TIMEOUT", 10)),
            max_attempts=int(config.get("WEBHOOK_MAX_ATTEMPTS", 8)),
            retry_base=float(config.get("WEBHOOK_RETRY_BASE_SECONDS", 30)),
            retry_max=float(config.get("WEBHOOK_RETRY_MAX_SECONDS", 6 * 3600)),
        )


# --- secrets ------------------------------------------------------------------------------------


def sealer(secret_keys: Sequence[str]) -> MultiFernet:
    """What keeps receivers' secrets in the database: keys derived from the portal's secret key
    (the current one first, then ``SECRET_KEY_FALLBACKS``, so a rotated key still opens them)."""
    return MultiFernet(
        [
            Fernet(
                base64.urlsafe_b64encode(
                    hmac.new(key.encode(), b"portal.webhooks", hashlib.sha256).digest()
                )
            )
            for key in secret_keys
        ]
    )


def sealer_for(config: Any) -> MultiFernet:
    """The app's sealer, from its ``SECRET_KEY`` and ``SECRET_KEY_FALLBACKS``."""
    return sealer([config["SECRET_KEY"], *reversed(config["SECRET_KEY_FALLBACKS"])])


def secret_of(endpoint: WebhookEndpoint, seal: MultiFernet) -> str:
    return seal.decrypt(endpoint.secret_sealed.encode()).decode()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Portal-Signature`` value: ``t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">``."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


# --- receivers ------------------------------------------------------------------------------------


def _problem(text: str) -> InvalidFields:
    return InvalidFields({"url": Problem(ProblemCode.NOT_URL, text)})


def check_url(url: str, allow_private: bool) -> str:
    """``url`` if a receiver may be registered at it; InvalidFields naming ``url`` otherwise."""
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise _problem(f"is longer than {MAX_URL_LENGTH} characters")
    if not url.isascii() or any(c.isspace() or ord(c) < 32 for c in url):
        raise _problem("must be an absolute URL without spaces (non-ASCII hosts in punycode)")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise _problem(f"is not a URL ({exc})") from exc
    schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in schemes:
        raise _problem("must start with https://")
    if not parts.hostname:
        raise _problem("has no host")
    if parts.username is not None or parts.password is not None:
        raise _problem("must not carry a user name or password")
    if parts.fragment:
        raise _problem("must not have a #fragment")
    if port == 0:
        raise _problem("has port 0")
    if not allow_private and not _may_be_public(parts.hostname):
        raise _problem("must be a public address (not private, loopback or link-local)")
    return url


def _may_be_public(host: str) -> bool:
    """False for a host that is plainly not public: a non-public IP literal, or localhost. A
    name is looked up at each delivery, where every address it has is checked."""
    lowered = host.lower().rstrip(".")
    if lowered == "localhost" or lowered.endswith(".localhost"):
        return False
    try:
        return _public(ipaddress.ip_address(lowered))
    except ValueError:
        return True  # a name


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def _event_types(given: Sequence[str] | None) -> list[str]:
    if not given:
        return []
    if len(set(given)) < len(given):
        raise InvalidFields({"events": Problem(ProblemCode.NOT_ONE_OF, "names a type twice")})
    unknown = sorted(set(given) - set(EVENT_TYPES))
    if unknown:
        raise InvalidFields(
            {
                "events": Problem(
                    ProblemCode.NOT_ONE_OF,
                    f"{', '.join(unknown)[:200]} is not one of {', '.join(EVENT_TYPES)}",
                )
            }
        )
    return sorted(set(given))


def register(
    session: Session,
    partner: Partner,
    url: str,
    events: Sequence[str] | None,
    seal: MultiFernet,
    allow_private: bool = False,
) -> tuple[WebhookEndpoint, str]:
    """A new receiver and its secret (shown once: only its sealed form is kept)."""
    url = check_url(url, allow_private)
    types = _event_types(events)
    # The partner's row locked first (PostgreSQL; SQLite has one writer at a time): two
    # registrations at once must not both count nine and make eleven.
    session.execute(select(Partner.id).where(Partner.id == partner.id).with_for_update())
    if len(endpoints(session, partner.id)) >= MAX_ENDPOINTS:
        raise TooManyWebhooks()
    secret = "whsec_" + secrets.token_urlsafe(32)
    endpoint = WebhookEndpoint(
        partner_id=partner.id,
        url=url,
        secret_sealed=seal.encrypt(secret.encode()).decode(),
        events=types,
    )
    session.add(endpoint)
    session.flush()
    return endpoint, secret


def endpoints(session: Session, partner_id: str) -> list[WebhookEndpoint]:
    return list(
        session.scalars(
            select(WebhookEndpoint)
            .where(WebhookEndpoint.partner_id == partner_id, WebhookEndpoint.disabled_at.is_(None))
            .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
        )
    )


def endpoint(session: Session, partner_id: str, endpoint_id: str) -> WebhookEndpoint:
    found = session.get(WebhookEndpoint, endpoint_id) if is_id(endpoint_id) else None
    if found is None or found.partner_id != partner_id or found.disabled_at is not None:
        raise WebhookNotFound(webhookId=endpoint_id[:100])
    return found


def remove(session: Session, found: WebhookEndpoint) -> None:
    """Nothing more is sent to it; what waits is dropped (kept as failed, to be seen)."""
    found.disabled_at = utcnow()
    session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.endpoint_id == found.id,
            WebhookDelivery.status == WebhookStatus.QUEUED,
        )
        .values(status=WebhookStatus.FAILED, last_error="The webhook was deleted.")
    )


def deliveries(session: Session, found: WebhookEndpoint, limit: int = 100) -> list[WebhookDelivery]:
    """Its latest deliveries, newest first."""
    return list(
        session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.endpoint_id == found.id)
            .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id)
            .limit(limit)
        )
    )


def resend(session: Session, found: WebhookEndpoint, delivery_id: str) -> WebhookDelivery:
    """Send a delivery again, whatever became of it, with a fresh set of attempts."""
    delivery = session.get(WebhookDelivery, delivery_id) if is_id(delivery_id) else None
    if delivery is None or delivery.endpoint_id != found.id:
        raise DeliveryNotFound(deliveryId=delivery_id[:100])
    if delivery.status != WebhookStatus.SENDING:
        delivery.status = WebhookStatus.QUEUED
        delivery.attempts = 0
        delivery.next_attempt_at = utcnow()
        delivery.claimed_until = None
    return delivery


# --- events into the outbox ---------------------------------------------------------------------


def notify(
    session: Session,
    kind: EventKind,
    *,
    partner_id: str | None,
    customer_id: str | None,
    data: dict[str, Any],
) -> None:
    """Queue the event for each receiver that wants it: every partner of the customer for the
    customer's own doings (sign-in, acceptance), else the partner whose dealing it is and its
    provider. Added to the session: written with what caused it, or not at all."""
    event_type = FROM_EVENTS.get(kind)
    if event_type is None or customer_id is None:
        return
    payload_data = {"customerId": customer_id}
    if kind not in _CUSTOMERS_OWN and partner_id is not None:
        payload_data["partnerId"] = partner_id
    for key, shown in _SHOWN.items():
        if data.get(key) is not None:
            payload_data[shown] = str(data[key])
    _queue(session, event_type, payload_data, _receivers(kind, customer_id, partner_id))


def mail_outcomes(session: Session, messages: Sequence[Any], error: str | None) -> None:
    """The sender's hook (``sending.OUTCOMES``): invitation emails accepted by the SMTP server
    (``error`` None) or given up on, told as ``invitation.delivered`` / ``invitation.failed``."""
    for message in messages:
        if message.kind == INVITATION_MAIL and message.invitation_id is not None:
            invitation_mail(
                session,
                customer_id=message.customer_id,
                partner_id=message.partner_id,
                invitation_id=message.invitation_id,
                delivered=error is None,
                error=error or "",
            )


def invitation_mail(
    session: Session,
    *,
    customer_id: str | None,
    partner_id: str | None,
    invitation_id: str,
    delivered: bool,
    error: str = "",
) -> None:
    """The invitation's email was accepted by the SMTP server, or given up on."""
    if customer_id is None or partner_id is None:
        return
    payload_data = {
        "customerId": customer_id,
        "partnerId": partner_id,
        "invitationId": invitation_id,
    }
    if not delivered:
        payload_data["error"] = error[:500]
    event_type = INVITATION_DELIVERED if delivered else INVITATION_FAILED
    _queue(session, event_type, payload_data, _receivers(None, customer_id, partner_id))


def _receivers(kind: EventKind | None, customer_id: str, partner_id: str | None) -> Any:
    """The partners told of an event: a subquery of their ids."""
    relationship = CustomerRelationship
    of_customer = relationship.customer_id == customer_id
    if kind in _CUSTOMERS_OWN:
        active = and_(of_customer, relationship.state == RelationshipState.ACTIVE)
        return union(
            select(relationship.partner_id).where(active),
            select(relationship.provider_id).where(active, relationship.provider_id.is_not(None)),
        )
    return union(
        select(literal(partner_id)),
        select(relationship.provider_id).where(
            of_customer,
            relationship.partner_id == partner_id,
            relationship.provider_id.is_not(None),
        ),
    )


def _queue(session: Session, event_type: str, data: dict[str, str], partners: Any) -> None:
    with session.no_autoflush:
        wanted = [
            endpoint_id
            for endpoint_id, types in session.execute(
                select(WebhookEndpoint.id, WebhookEndpoint.events).where(
                    WebhookEndpoint.partner_id.in_(partners),
                    WebhookEndpoint.disabled_at.is_(None),
                )
            )
            if not types or event_type in types
        ]
    if not wanted:
        return
    now = utcnow()
    event_id = new_id()
    payload = json.dumps(
        {"id": event_id, "type": event_type, "createdAt": iso(now), "data": data},
        separators=(",", ":"),
    )
    for endpoint_id in wanted:
        session.add(
            WebhookDelivery(
                endpoint_id=endpoint_id,
                event_id=event_id,
                event_type=event_type,
                payload=payload,
                created_at=now,
                next_attempt_at=now,
            )
        )


# --- sending ------------------------------------------------------------------------------------


@dataclass
class Report:
    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


class Refused(Exception):
    """A delivery that must not be attempted at all (the receiver's address is not public)."""


def claim(session: Session, limit: int) -> list[WebhookDelivery]:
    """Take up to ``limit`` due deliveries for this sender and commit the claim: two senders
    never take the same one (``queues.claim``)."""
    return queues.claim(
        session,
        WebhookDelivery,
        queued=WebhookStatus.QUEUED,
        sending=WebhookStatus.SENDING,
        lease=CLAIM_LEASE,
        limit=limit,
        now=utcnow(),
    )


def send_pass(app: Flask, stop: Callable[[], bool] | None = None) -> Report:
    """The delivery loop's webhook pass (``delivery.PASSES``), in the app's context."""
    config = app.config
    seal = sealer_for(config)
    sent = deliver_due(db.session(), seal, Settings.of(config), stop=stop)
    if sent.delivered or sent.retrying or sent.failed:
        log.info(
            "webhooks: %d delivered, %d to retry, %d failed",
            sent.delivered,
            sent.retrying,
            sent.failed,
        )
    return sent


def deliver_due(
    session: Session,
    seal: MultiFernet,
    settings: Settings,
    batch: int = 50,
    stop: Callable[[], bool] | None = None,
) -> Report:
    """Send what is due, batch after batch, until nothing is (or ``stop()``); each outcome is
    committed as it comes."""
    report = Report()
    while not (stop is not None and stop()):
        claimed = claim(session, batch)
        for delivery in claimed:
            _attempt(session, delivery, seal, settings, report)
        if len(claimed) < batch:
            break
    return report


def _attempt(
    session: Session,
    delivery: WebhookDelivery,
    seal: MultiFernet,
    settings: Settings,
    report: Report,
) -> None:
    target = session.get_one(WebhookEndpoint, delivery.endpoint_id)
    status: int | None = None
    try:
        if target.disabled_at is not None:
            raise Refused("The webhook was deleted.")
        secret = secret_of(target, seal)
        status, answer = post(target.url, delivery, secret, settings)
        error = "" if 200 <= status < 300 else f"HTTP {status}: {answer}"
    except InvalidToken:
        error = "The webhook's secret cannot be read with the portal's keys."
    except Refused as exc:
        error = str(exc)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    now = utcnow()
    delivery.last_status = status
    delivery.claimed_until = None
    if not error:
        delivery.status = WebhookStatus.DELIVERED
        delivery.delivered_at = now
        delivery.last_error = ""
        result = "delivered"
    elif delivery.attempts >= settings.max_attempts or target.disabled_at is not None:
        delivery.status = WebhookStatus.FAILED
        delivery.last_error = error[:2000]
        result = "failed"
    else:
        delivery.status = WebhookStatus.QUEUED
        delivery.last_error = error[:2000]
        wait = min(settings.retry_base * 2 ** max(delivery.attempts - 1, 0), settings.retry_max)
        delivery.next_attempt_at = now + timedelta(seconds=wait)
        result = "retrying"
    session.commit()
    setattr(report, result, getattr(report, result) + 1)
    if error:
        report.errors.append(error)
    metrics.WEBHOOKS.labels(result).inc()


def post(url: str, delivery: WebhookDelivery, secret: str, settings: Settings) -> tuple[int, str]:
    """POST the delivery, signed, to the address checked; its status and the start of its
    answer."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    address = _checked_address(host, port, settings.allow_private)
    body = delivery.payload.encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "portal-webhooks/1",
        SIGNATURE_HEADER: sign(secret, int(time.time()), body),
        "Portal-Event-Id": delivery.event_id,
        "Portal-Event-Type": delivery.event_type,
        "Portal-Delivery-Id": delivery.id,
    }
    connection: http.client.HTTPConnection = (
        _PinnedHTTPS(host, address, port, settings.timeout)
        if https
        else _PinnedHTTP(host, address, port, settings.timeout)
    )
    try:
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        answer = response.read(_ANSWER_READ).decode("utf-8", "replace")
        if 300 <= response.status < 400:
            answer = "redirects are not followed; register the final URL. " + answer
        return response.status, answer.strip()
    finally:
        connection.close()


def _checked_address(host: str, port: int, allow_private: bool) -> str:
    """The address to connect to: every address ``host`` has must be public (unless allowed)."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise Refused(f"{host} cannot be resolved: {exc.strerror}") from exc
    addresses = [str(info[4][0]) for info in found]
    if not allow_private:
        for address in addresses:
            if not _public(ipaddress.ip_address(address.split("%", 1)[0])):
                raise Refused(
                    f"{host} resolves to {address}, which is not a public address; receivers "
                    "must be reachable on the internet"
                )
    return addresses[0]


class _PinnedHTTP(http.client.HTTPConnection):
    """A connection to ``address``, speaking to ``host`` (Host header)."""

    def __init__(self, host: str, address: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """TLS to ``address``, verifying the certificate of ``host`` (and sending it as SNI)."""

    def __init__(self, host: str, address: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self.address = address

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]
