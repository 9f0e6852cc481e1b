"""Secrets the portal hands out or checks: API keys and customer passwords.

Two kinds of hash, on purpose. API keys and temporary customer passwords are 128 bits or more of
randomness, so a fast hash cannot be brute-forced and keeps per-request checks cheap (an API key is
looked up by its SHA-256). Temporary passwords are additionally keyed (HMAC), so a copy of the
database alone cannot confirm one. Passwords that people choose get a slow, salted hash.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from collections.abc import Iterable

from werkzeug.security import check_password_hash, generate_password_hash

from portal.core.errors import Problem, ProblemCode

API_KEY_PREFIX = "ptl_"
#: Shortest password a person may choose (customers and dashboard users alike).
MIN_PASSWORD_LENGTH = 12
#: Longest password accepted before hashing; longer input is refused quickly.
MAX_PASSWORD_LENGTH = 256

_TEMPORARY = "hmac-sha256$"
#: What ``hash_password`` writes (Werkzeug's schemes); anything else matches no password.
_SLOW = ("scrypt:", "pbkdf2:")
#: A password hash nothing verifies against: the credentials of a withdrawn invitation.
DEAD = "!revoked"  # noqa: S105 - matches no hash scheme, so no password


def length_problem(password: str) -> Problem | None:
    """Whether a chosen password is too short or too long (customers and dashboard users)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return Problem(ProblemCode.TOO_SHORT, f"is shorter than {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        return Problem(ProblemCode.TOO_LONG, f"is longer than {MAX_PASSWORD_LENGTH} characters")
    return None


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def api_key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def new_temporary_password() -> str:
    """128 random bits, URL-safe, easy to paste."""
    return secrets.token_urlsafe(16)


def pepper(secret_key: str) -> bytes:
    """The HMAC key for temporary passwords, derived from one secret key."""
    return hashlib.sha256(b"portal temporary password\x00" + secret_key.encode()).digest()


def hash_temporary_password(password: str, key: bytes) -> str:
    digest = hmac.new(key, password.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
    return _TEMPORARY + digest


def hash_password(password: str) -> str:
    """Slow salted hash for a password a person chose."""
    return generate_password_hash(password)


def verify_password(stored: str | None, password: str, keys: Iterable[bytes]) -> bool:
    """Whether ``password`` matches ``stored``, either kind of hash (``keys``: the current and old
    peppers); ``stored`` None stands for an account that does not exist.

    Every check costs one slow hash, whatever the account's state: an unknown account, a
    temporary password (a fast HMAC) and a withdrawn one spend it on a dummy. Otherwise the time
    a failed sign-in takes would tell which accounts exist and which still wait for their
    first sign-in (their user names, ``admin@<domain>``, are easy to guess).
    """
    if len(password) > MAX_PASSWORD_LENGTH:
        return False  # before any hashing, whoever the account is
    if stored is not None and stored.startswith(_SLOW):
        return check_password_hash(stored, password)
    check_password_hash(_dummy_hash(), password)
    if stored is not None and stored.startswith(_TEMPORARY):
        return any(
            hmac.compare_digest(stored, hash_temporary_password(password, key)) for key in keys
        )
    return False


@functools.cache
def _dummy_hash() -> str:
    """A slow hash made as ``hash_password`` makes them (same scheme, same cost)."""
    return hash_password(secrets.token_urlsafe(16))
