"""``MS-RequestId`` as Partner Center's SDKs use it: an idempotency key. The SDKs retry a POST
that timed out or got a 5xx with the same id, so a retry must get the first answer back, not a
409 for the customer its first attempt created.

A request is *claimed* (a row, committed before the request runs: the primary key settles a race
between two deliveries of the same request, on every worker and machine) and *answered* after.
A retry finds the answer and gets it back; the same id on another request is refused; a retry
that arrives while the first still runs waits for its answer. Answers are kept for
``KEEP`` (24 hours, as the SDKs' retries are minutes apart), per partner.

Secrets in an answer (the customer's credentials, an invitation's emails that carry them) are
stored encrypted with a key derived from the API key that made the request, so only a retry
with the same key gets them back; another key of the partner gets the answer without them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from portal.core.errors import RequestIdReused, RequestInProgress
from portal.core.models import ApiRequest, utcnow

KEEP = timedelta(hours=24)
#: A claim with no answer this old was left by a process that died: a retry takes it over.
ABANDONED = timedelta(minutes=2)
#: How long a retry waits for the first delivery's answer before it is told to come back.
WAIT_SECONDS = 10.0
#: Members of an answer that only the key that made the request may read back.
SECRET_MEMBERS = ("userCredentials", "userName", "password", "textBody", "htmlBody")


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    location: str | None


def fingerprint(method: str, path: str, query: bytes, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), query, body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def sealer(secret_key: str, api_key: str) -> Fernet:
    """What seals an answer's secrets: a key derived from the API key that made the request."""
    derived = hmac.new(
        secret_key.encode(), b"portal.idempotency\x00" + api_key.encode(), hashlib.sha256
    ).digest()
    return Fernet(base64.urlsafe_b64encode(derived))


def claim(
    session: Session,
    partner_id: str,
    request_id: str,
    print_: str,
    seal: Fernet,
) -> Answer | None:
    """Claim ``request_id`` for this request (None: go on, then call ``answer``), or the first
    delivery's answer. Commits. Raises ``RequestIdReused`` or ``RequestInProgress``."""
    now = utcnow()
    # Forgetting what is past keeping rides on the claim's transaction (an indexed range).
    session.execute(delete(ApiRequest).where(ApiRequest.claimed_at < now - KEEP))
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        session.expunge_all()  # a claim seen pending on the last round is no longer news
        session.add(
            ApiRequest(
                partner_id=partner_id, request_id=request_id, fingerprint=print_, claimed_at=now
            )
        )
        try:
            session.commit()
            return None
        except IntegrityError:
            session.rollback()
        found = session.get(ApiRequest, (partner_id, request_id), populate_existing=True)
        if found is None:  # answered with a 5xx and let go in the meantime: claim it again
            continue
        if found.fingerprint != print_:
            session.rollback()
            raise RequestIdReused(requestId=request_id)
        if found.status is not None:
            answer = _answer(found, seal)
            session.rollback()
            return answer
        if _take_over(session, found, now):
            return None
        session.rollback()
        if time.monotonic() > deadline:
            raise RequestInProgress(requestId=request_id)
        time.sleep(0.05)
        now = utcnow()


def _take_over(session: Session, found: ApiRequest, now: datetime) -> bool:
    """Take over a claim its process abandoned (only one retry can)."""
    if found.claimed_at > now - ABANDONED:
        return False
    taken = session.execute(
        update(ApiRequest)
        .where(
            ApiRequest.partner_id == found.partner_id,
            ApiRequest.request_id == found.request_id,
            ApiRequest.claimed_at == found.claimed_at,
            ApiRequest.status.is_(None),
        )
        .values(claimed_at=now)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return bool(getattr(taken, "rowcount", 0))


def _answer(found: ApiRequest, seal: Fernet) -> Answer:
    body: dict[str, Any] = json.loads(found.body or "{}")
    if found.sealed:
        try:
            plain = seal.decrypt(found.sealed.encode())
            body.update(json.loads(plain))
        except InvalidToken:
            pass  # another key of the partner: the answer without its secrets
    return Answer(found.status or 0, body, found.location)


def answer(
    session: Session,
    partner_id: str,
    request_id: str,
    status: int,
    body: dict[str, Any] | None,
    location: str | None,
    seal: Fernet,
) -> None:
    """Store the answer to a claimed request; commits."""
    public = dict(body or {})
    secrets = {name: public.pop(name) for name in SECRET_MEMBERS if name in public}
    sealed = None
    if secrets:
        sealed = seal.encrypt(json.dumps(secrets).encode()).decode()
    session.execute(
        update(ApiRequest)
        .where(ApiRequest.partner_id == partner_id, ApiRequest.request_id == request_id)
        .values(status=status, body=json.dumps(public), sealed=sealed, location=location)
        .execution_options(synchronize_session=False)
    )
    session.commit()


def release(session: Session, partner_id: str, request_id: str) -> None:
    """Let a claim go (the request failed in a way a retry may succeed); commits."""
    session.execute(
        delete(ApiRequest).where(
            ApiRequest.partner_id == partner_id,
            ApiRequest.request_id == request_id,
            ApiRequest.status.is_(None),
        )
    )
    session.commit()
