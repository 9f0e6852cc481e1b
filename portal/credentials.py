"""Secrets the portal hands out or checks: API keys and customer passwords.

Two kinds of hash, on purpose. API keys and temporary customer passwords are 128 bits or more of
randomness, so a fast hash cannot be brute-forced and keeps per-request checks cheap (an API key is
looked up by its SHA-256). Temporary passwords are additionally keyed (HMAC), so a copy of the
database alone cannot confirm one. Passwords that people choose get a slow, salted hash.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable

from werkzeug.security import check_password_hash, generate_password_hash

API_KEY_PREFIX = "ptl_"
#: Longest password accepted before hashing; longer input is refused quickly.
MAX_PASSWORD_LENGTH = 256

_TEMPORARY = "hmac-sha256$"


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


def verify_password(stored: str, password: str, keys: Iterable[bytes]) -> bool:
    """Check ``password`` against either kind of hash; ``keys``: current and old peppers."""
    if len(password) > MAX_PASSWORD_LENGTH:
        return False
    if stored.startswith(_TEMPORARY):
        return any(
            hmac.compare_digest(stored, hash_temporary_password(password, key)) for key in keys
        )
    return check_password_hash(stored, password)
