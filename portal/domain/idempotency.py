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
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import Engine, Table, and_, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from portal.core.db import WRITE
from portal.core.errors import RequestIdReused, RequestInProgress
from portal.core.models import ApiRequest, utcnow

KEEP = timedelta(hours=24)
#: A claim with no answer this old was left by a process that died: a retry takes it over.
ABANDONED = timedelta(minutes=2)
#: How long a retry waits for the first delivery's answer before it is told to come back.
WAIT_SECONDS = 10.0
#: Members of an answer that only the key that made the request may read back.
SECRET_MEMBERS = ("userCredentials", "userName", "password", "textBody", "htmlBody", "secret")


@dataclass(frozen=True)
class Answer:
    status: int
    #: The first answer's JSON value (an object, or ``true`` from the address check); None
    #: when it had no JSON body.
    body: Any
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


_TABLE = cast(Table, ApiRequest.__table__)


def claim(
    engine: Engine, partner_id: str, request_id: str, print_: str, seal: Fernet
) -> Answer | None:
    """Claim ``request_id`` for this request (None: go on, then call ``answer``), or the first
    delivery's answer. Short transactions of its own, on ``engine`` (not the request's
    session). Raises ``RequestIdReused`` or ``RequestInProgress``."""
    key = {"partner_id": partner_id, "request_id": request_id}
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        now = utcnow()
        try:
            with _writing(engine).begin() as connection:
                if random.random() < PURGE_CHANCE:  # noqa: S311 - not a secret
                    connection.execute(delete(_TABLE).where(_TABLE.c.claimed_at < now - KEEP))
                connection.execute(insert(_TABLE).values(**key, fingerprint=print_, claimed_at=now))
            return None
        except IntegrityError:
            pass
        with engine.connect() as connection:
            found = connection.execute(select(_TABLE).where(_is(key))).first()
        if found is None:  # answered with a 5xx and let go in the meantime: claim it again
            continue
        if found.claimed_at < now - KEEP:  # past keeping: forget it, and claim anew
            with _writing(engine).begin() as connection:
                connection.execute(
                    delete(_TABLE).where(_is(key), _TABLE.c.claimed_at == found.claimed_at)
                )
            continue
        if found.fingerprint != print_:
            raise RequestIdReused(requestId=request_id)
        if found.status is not None:
            return _answer(found, seal)
        if found.claimed_at <= now - ABANDONED and _take_over(engine, key, found.claimed_at, now):
            return None
        if time.monotonic() > deadline:
            raise RequestInProgress(requestId=request_id)
        time.sleep(0.05)


#: Now and then a claim also forgets every answer past keeping (an indexed range); an old
#: answer met by a retry is forgotten then and there.
PURGE_CHANCE = 1 / 32


def _is(key: dict[str, str]) -> Any:
    return and_(_TABLE.c.partner_id == key["partner_id"], _TABLE.c.request_id == key["request_id"])


def _writing(engine: Engine) -> Engine:
    return engine.execution_options(**{WRITE: True})


def _take_over(engine: Engine, key: dict[str, str], claimed_at: datetime, now: datetime) -> bool:
    """Take over a claim its process abandoned (only one retry can)."""
    with _writing(engine).begin() as connection:
        taken = connection.execute(
            update(_TABLE)
            .where(_is(key), _TABLE.c.claimed_at == claimed_at, _TABLE.c.status.is_(None))
            .values(claimed_at=now)
        )
    return bool(taken.rowcount)


def _answer(found: Any, seal: Fernet) -> Answer:
    body: Any = json.loads(found.body) if found.body else None
    if found.sealed and isinstance(body, dict):
        try:
            plain = seal.decrypt(found.sealed.encode())
            body.update(json.loads(plain))
        except InvalidToken:
            pass  # another key of the partner: the answer without its secrets
    return Answer(found.status, body, found.location)


def answer(
    engine: Engine,
    partner_id: str,
    request_id: str,
    status: int,
    body: Any,
    location: str | None,
    seal: Fernet,
) -> None:
    """Store the answer to a claimed request: its JSON value (None: no JSON body)."""
    public = dict(body) if isinstance(body, dict) else body
    secrets = (
        {name: public.pop(name) for name in SECRET_MEMBERS if name in public}
        if isinstance(public, dict)
        else {}
    )
    sealed = None
    if secrets:
        sealed = seal.encrypt(json.dumps(secrets).encode()).decode()
    key = {"partner_id": partner_id, "request_id": request_id}
    with _writing(engine).begin() as connection:
        connection.execute(
            update(_TABLE)
            .where(_is(key))
            .values(
                status=status,
                body=None if public is None else json.dumps(public),
                sealed=sealed,
                location=location,
            )
        )


def release(engine: Engine, partner_id: str, request_id: str) -> None:
    """Let a claim go (the request failed in a way a retry may succeed)."""
    key = {"partner_id": partner_id, "request_id": request_id}
    with _writing(engine).begin() as connection:
        connection.execute(delete(_TABLE).where(_is(key), _TABLE.c.status.is_(None)))
