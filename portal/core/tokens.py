"""Signed links. A token carries opaque ids and a nonce only: itsdangerous signs, it does not
encrypt. One salt per purpose; old secret keys (``SECRET_KEY_FALLBACKS``) still verify."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from itsdangerous import BadData, BadSignature, SignatureExpired
from itsdangerous.encoding import base64_decode, base64_encode

from portal.core.signing import TimedSerializer, TimedSigner

INVITATION_SALT = "portal.invitation"
#: Longer input is refused before any work: real tokens are about 110 characters.
MAX_TOKEN_LENGTH = 512


class Outcome(enum.Enum):
    VALID = "valid"
    EXPIRED = "expired"
    INVALID = "invalid"


@dataclass(frozen=True)
class Checked:
    outcome: Outcome
    invitation_id: str = ""
    nonce: str = ""


class _IssuedAt(TimedSigner):
    """Signs with a given time instead of now: a link shown again later is the same link and
    expires when the first one does."""

    def __init__(self, *args: Any, issued_at: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.issued_at = issued_at

    def get_timestamp(self) -> int:
        return self.issued_at


def _serializer(
    secret_key: str, fallbacks: Sequence[str], salt: str, issued_at: int | None = None
) -> TimedSerializer:
    # itsdangerous signs with the last key and verifies with all of them (Flask 3.1.3 order).
    if issued_at is None:
        return _checking_serializer((*fallbacks, secret_key), salt)
    return TimedSerializer(
        [*fallbacks, secret_key],
        salt=salt,
        signer=_IssuedAt,
        signer_kwargs={"issued_at": issued_at},
    )


@lru_cache(maxsize=8)
def _checking_serializer(keys: tuple[str, ...], salt: str) -> TimedSerializer:
    """Made once per set of keys: every opened link is checked with it."""
    return TimedSerializer(list(keys), salt=salt)


def invitation_token(
    secret_key: str, fallbacks: Sequence[str], invitation_id: str, nonce: str, issued_at: int
) -> str:
    """The link's token, dated ``issued_at`` (seconds since the epoch): the same every time."""
    serializer = _serializer(secret_key, fallbacks, INVITATION_SALT, issued_at)
    return str(serializer.dumps([invitation_id, nonce]))


def check_invitation_token(
    secret_key: str, fallbacks: Sequence[str], token: str, max_age: int
) -> Checked:
    """Expired and tampered are different outcomes: they get different pages."""
    return _check_pair(secret_key, fallbacks, token, max_age, INVITATION_SALT)


PERSONAL_REQUEST_SALT = "portal.personal-request"


def personal_request_token(
    secret_key: str, fallbacks: Sequence[str], request_id: str, nonce: str, issued_at: int
) -> str:
    """A personal relationship request's link token, as an invitation's: the same every time."""
    serializer = _serializer(secret_key, fallbacks, PERSONAL_REQUEST_SALT, issued_at)
    return str(serializer.dumps([request_id, nonce]))


def check_personal_request_token(
    secret_key: str, fallbacks: Sequence[str], token: str, max_age: int
) -> Checked:
    return _check_pair(secret_key, fallbacks, token, max_age, PERSONAL_REQUEST_SALT)


def _check_pair(
    secret_key: str, fallbacks: Sequence[str], token: str, max_age: int, salt: str
) -> Checked:
    if not _canonical(token):
        return Checked(Outcome.INVALID)
    serializer = _serializer(secret_key, fallbacks, salt)
    try:
        payload = serializer.loads(token, max_age=max_age)
    except SignatureExpired as exc:
        # The signature was good; only the age is wrong.
        try:
            ids = _ids(serializer.load_payload(exc.payload)) if exc.payload else None
        except BadData:
            ids = None
        return Checked(Outcome.EXPIRED, *ids) if ids else Checked(Outcome.INVALID)
    except BadSignature:
        return Checked(Outcome.INVALID)
    ids = _ids(payload)
    return Checked(Outcome.VALID, *ids) if ids else Checked(Outcome.INVALID)


def _canonical(token: str) -> bool:
    """Refuse tokens whose signature is spelled in a non-canonical base64 form.

    The last base64 character of a signature carries bits the decoder ignores, so without this
    check a link with its final character changed would still verify.
    """
    if not token or len(token) > MAX_TOKEN_LENGTH or not token.isascii():
        return False
    signature = token.rpartition(".")[2]
    try:
        return base64_encode(base64_decode(signature)).decode() == signature
    except BadData:
        return False


def _ids(payload: object) -> tuple[str, str] | None:
    if (
        isinstance(payload, list)
        and len(payload) == 2
        and all(isinstance(part, str) and 0 < len(part) <= 64 for part in payload)
    ):
        return payload[0], payload[1]
    return None


RELATIONSHIP_REQUEST_SALT = "portal.relationship-request"


def relationship_request_token(
    secret_key: str, fallbacks: Sequence[str], partner_id: str, issued_at: int
) -> str:
    """A partner's reusable relationship request link's token: it names the partner only, and
    is the same every time (dated ``issued_at``, the partner's creation); it does not expire."""
    serializer = _serializer(secret_key, fallbacks, RELATIONSHIP_REQUEST_SALT, issued_at)
    return str(serializer.dumps([partner_id]))


def check_relationship_request_token(
    secret_key: str, fallbacks: Sequence[str], token: str
) -> str | None:
    """The partner id a request link names, or None for anything not signed by us."""
    if not _canonical(token):
        return None
    try:
        payload = _serializer(secret_key, fallbacks, RELATIONSHIP_REQUEST_SALT).loads(token)
    except BadSignature:
        return None
    if (
        isinstance(payload, list)
        and len(payload) == 1
        and isinstance(payload[0], str)
        and 0 < len(payload[0]) <= 64
    ):
        return payload[0]
    return None


PASSWORD_RESET_SALT = "portal.password-reset"  # noqa: S105 - a salt


def password_reset_token(
    secret_key: str, fallbacks: Sequence[str], customer_id: str, generation: int
) -> str:
    """A "forgot password" link's token: the account and its credential generation, which the
    reset moves on, so the link works once (and not after any other change of the password)."""
    return str(
        _serializer(secret_key, fallbacks, PASSWORD_RESET_SALT).dumps([customer_id, generation])
    )


def check_password_reset_token(
    secret_key: str, fallbacks: Sequence[str], token: str, max_age: int
) -> tuple[str, int] | None:
    """The account and generation a reset link names, or None when it is not ours or too old."""
    if not _canonical(token):
        return None
    try:
        payload = _serializer(secret_key, fallbacks, PASSWORD_RESET_SALT).loads(
            token, max_age=max_age
        )
    except BadSignature:  # SignatureExpired too
        return None
    if (
        isinstance(payload, list)
        and len(payload) == 2
        and isinstance(payload[0], str)
        and 0 < len(payload[0]) <= 64
        and type(payload[1]) is int
    ):
        return payload[0], payload[1]
    return None
