"""Settings: defaults in code, overrides from ``PORTAL_*`` environment variables.

Every setting can be given as ``PORTAL_<NAME>``; values that parse as JSON (numbers, ``true``,
lists) are taken as such, the rest as strings. With nothing set the portal runs on embedded
defaults: SQLite and a generated secret key, both in the instance folder.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask

#: Shortest secret key accepted; itsdangerous and the session cookie are only as strong as it.
MIN_SECRET_KEY_LENGTH = 32

SECRET_KEY_FILE = "secret_key"  # noqa: S105 - a file name, not a secret

DEFAULTS: dict[str, Any] = {
    # Where links in emails point. Never taken from the request's Host header.
    "BASE_URL": "http://127.0.0.1:8000",
    "DATABASE_URL": None,  # None: SQLite file ``portal.db`` in the instance folder.
    "DATABASE_ECHO": False,
    "AGREEMENT_CATALOG": None,  # None: the catalog shipped in the package.
    # Bytes accepted in one request body; larger bodies get 413.
    "MAX_CONTENT_LENGTH": 64 * 1024,
    # Bytes accepted for a CSV file imported in the dashboard, and rows in it.
    "IMPORT_MAX_BYTES": 5 * 1024 * 1024,
    "IMPORT_MAX_ROWS": 10_000,
    "API_PAGE_SIZE": 100,
    "API_MAX_PAGE_SIZE": 500,
    # Mail: with no MAIL_SERVER, messages stay in the outbox.
    "MAIL_SERVER": None,
    "MAIL_PORT": 25,
    "MAIL_USE_TLS": False,
    "MAIL_USE_SSL": False,
    "MAIL_USERNAME": None,
    "MAIL_PASSWORD": None,
    "MAIL_DEFAULT_SENDER": "portal@localhost",
    "MAIL_TIMEOUT": 10,  # seconds, for connecting and for every SMTP reply
    "MAIL_MAX_ATTEMPTS": 6,  # then a message is marked failed
    "MAIL_RETRY_BASE_SECONDS": 60,  # first retry after this; doubling up to the maximum
    "MAIL_RETRY_MAX_SECONDS": 3600,
    "MAIL_SEND_INTERVAL": 5,  # seconds between passes of the delivery loop in ``portal serve``
    # DKIM: with a domain, a selector and a private key file (PEM), every message is signed; the
    # public key is published in DNS at <selector>._domainkey.<domain>.
    "DKIM_DOMAIN": None,
    "DKIM_SELECTOR": None,
    "DKIM_KEY_FILE": None,
    # Invitation links expire after this many seconds (30 days).
    "INVITATION_MAX_AGE": 30 * 24 * 3600,
    # A "forgot password" link works once, for this many seconds (an hour).
    "PASSWORD_RESET_MAX_AGE": 3600,
    # Where failed sign-ins are counted: the portal's database (every worker and process sees
    # it), or a ``limits`` storage such as redis://127.0.0.1:6379/0 (memory:// counts per process).
    # None: REDIS_URL when it is set, else database://.
    "RATELIMIT_STORAGE_URI": None,
    "RATELIMIT_KEY_PREFIX": "portal",
    # Reverse proxies in front of the portal whose X-Forwarded-For and X-Forwarded-Proto are
    # believed (Werkzeug's ProxyFix); 0: the client is whoever connects.
    "TRUSTED_PROXIES": 0,
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "SESSION_COOKIE_SECURE": None,  # None: Secure unless BASE_URL is plain http.
    "SECRET_KEY_FALLBACKS": [],
    # A customer's session ends after this many idle seconds, and at most after a day.
    "SESSION_IDLE_TIMEOUT": 30 * 60,
    "PERMANENT_SESSION_LIFETIME": 24 * 3600,
    # The cookie is not re-signed on every page: idle expiry is kept on the server.
    "SESSION_REFRESH_EACH_REQUEST": False,
    # Failed sign-ins allowed per account and per client address (``limits`` notation).
    "SIGNIN_LIMIT_ACCOUNT": "5 per 15 minutes",
    "SIGNIN_LIMIT_ADDRESS": "30 per 15 minutes",
    "BABEL_DEFAULT_LOCALE": "en",
    # The key that chains the evidence (acceptances, attestations, events); None: derived from
    # SECRET_KEY. Keep it: ``portal audit verify`` needs the key every entry was chained with.
    "AUDIT_KEY": None,
    "AUDIT_KEY_FALLBACKS": [],  # earlier audit keys, still accepted by ``portal audit verify``
    # /metrics (Prometheus) answers only a request bearing this token; None: /metrics is off.
    "METRICS_TOKEN": None,
    # Log lines: "text" (gunicorn's) or "json" (one object per line, for log collectors).
    "LOG_FORMAT": "text",
    # Redis shared by every process and machine: sign-in limits count there unless
    # RATELIMIT_STORAGE_URI names another storage. None: the database does that work.
    "REDIS_URL": None,
    # Webhook receivers on private, loopback or link-local addresses (and plain http) are
    # refused unless allowed: for development and tests only.
    "WEBHOOK_ALLOW_PRIVATE": False,
    "WEBHOOK_TIMEOUT": 10,  # seconds to connect and for the receiver's answer
    "WEBHOOK_MAX_ATTEMPTS": 8,  # then a delivery is marked failed (a partner may resend it)
    "WEBHOOK_RETRY_BASE_SECONDS": 30,  # first retry after this; doubling up to the maximum
    "WEBHOOK_RETRY_MAX_SECONDS": 6 * 3600,
    # Serve worker processes and threads for ``portal serve``.
    "SERVE_WORKERS": 2,
    "SERVE_THREADS": 8,
}


class ConfigError(Exception):
    """The configuration cannot work; the message says which setting and why."""


def load(app: Flask, overrides: dict[str, Any] | None = None) -> None:
    """Fill ``app.config`` from defaults, the environment and ``overrides``, then check it."""
    app.config.from_mapping(DEFAULTS)
    app.config.from_prefixed_env("PORTAL")
    if overrides:
        app.config.from_mapping(overrides)
    _resolve_secret_key(app)
    _resolve_database_url(app)
    _check_dkim(app.config)
    if app.config["SESSION_COOKIE_SECURE"] is None:
        app.config["SESSION_COOKIE_SECURE"] = not str(app.config["BASE_URL"]).startswith("http:")
    app.config["BASE_URL"] = str(app.config["BASE_URL"]).rstrip("/")
    proxies = app.config["TRUSTED_PROXIES"]
    if isinstance(proxies, bool) or not isinstance(proxies, int) or not 0 <= proxies <= 10:
        raise ConfigError(
            f"PORTAL_TRUSTED_PROXIES must be the number of reverse proxies in front of the "
            f"portal (0 to 10), not {proxies!r}"
        )
    if not app.config["RATELIMIT_STORAGE_URI"]:
        app.config["RATELIMIT_STORAGE_URI"] = app.config["REDIS_URL"] or "database://"
    if app.config["LOG_FORMAT"] not in ("text", "json"):
        raise ConfigError(
            f"PORTAL_LOG_FORMAT must be text or json, not {app.config['LOG_FORMAT']!r}"
        )
    for name in ("SECRET_KEY_FALLBACKS", "AUDIT_KEY_FALLBACKS"):
        fallbacks = app.config[name]
        if isinstance(fallbacks, str):
            app.config[name] = [fallbacks] if fallbacks else []


def _resolve_secret_key(app: Flask) -> None:
    key = app.config.get("SECRET_KEY")
    if key is None:
        app.config["SECRET_KEY"] = _instance_secret_key(Path(app.instance_path))
        return
    if not isinstance(key, str) or len(key) < MIN_SECRET_KEY_LENGTH:
        raise ConfigError(
            f"PORTAL_SECRET_KEY is set but {'empty' if not key else 'too short'}: use at least "
            f"{MIN_SECRET_KEY_LENGTH} random characters, for example the output of "
            "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`, or unset it to "
            "let the portal keep a generated key in its instance folder."
        )


def _instance_secret_key(instance: Path) -> str:
    """The key kept in the instance folder, generated (mode 0600) on first use."""
    path = instance / SECRET_KEY_FILE
    if not path.exists():
        instance.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48))
    key = path.read_text().strip()
    if len(key) < MIN_SECRET_KEY_LENGTH:
        raise ConfigError(f"{path} holds a secret key that is too short; delete it to renew it.")
    return key


def _resolve_database_url(app: Flask) -> None:
    url = app.config.get("DATABASE_URL")
    if not url:
        Path(app.instance_path).mkdir(parents=True, exist_ok=True)
        url = "sqlite:///" + str(Path(app.instance_path) / "portal.db")
    app.config["DATABASE_URL"] = normalise_database_url(str(url))


def normalise_database_url(url: str) -> str:
    """Use the psycopg 3 driver for plain ``postgresql://`` and ``postgres://`` URLs."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


#: The DKIM settings, all three or none.
DKIM_SETTINGS = ("DKIM_DOMAIN", "DKIM_SELECTOR", "DKIM_KEY_FILE")
_DNS_NAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*")
#: Receivers ignore DKIM keys shorter than this (RFC 8301).
MIN_DKIM_KEY_BITS = 1024


def _check_dkim(config: Mapping[str, Any]) -> None:
    """DKIM is set up whole or not at all, with a key the signer can use: half a setup would
    send mail every receiver counts as unsigned, or fail at the first message."""
    given = [name for name in DKIM_SETTINGS if config.get(name)]
    if not given:
        return
    if len(given) < len(DKIM_SETTINGS):
        missing = [f"PORTAL_{name}" for name in DKIM_SETTINGS if name not in given]
        raise ConfigError(
            f"DKIM is half configured: {', '.join(f'PORTAL_{name}' for name in given)} set, "
            f"{' and '.join(missing)} not. Set all three (domain, selector, private key file) "
            "to sign outgoing mail, or none to send it unsigned."
        )
    for name in ("DKIM_DOMAIN", "DKIM_SELECTOR"):
        value = str(config[name])
        if len(value) > 253 or not _DNS_NAME.fullmatch(value):
            raise ConfigError(
                f"PORTAL_{name} must be a DNS name (letters, digits, hyphens, dots), not {value!r}"
            )
    dkim_key(str(config["DKIM_KEY_FILE"]))


def dkim_key(path: str) -> bytes:
    """The DKIM private key in ``path``: an unencrypted RSA key in PEM form (PKCS#1 or #8) of at
    least 1024 bits, with LF line ends (the signer finds no key in CRLF). Raises ConfigError."""
    # Imported here: with DNS look-ups behind it, it costs tens of ms at every start.
    from dkim.crypto import UnparsableKeyError, parse_pem_private_key  # type: ignore[import-untyped]

    try:
        pem = Path(path).read_bytes().replace(b"\r\n", b"\n")
    except OSError as exc:
        raise ConfigError(
            f"PORTAL_DKIM_KEY_FILE: cannot read the DKIM private key {path}: {exc.strerror}"
        ) from exc
    try:
        key = parse_pem_private_key(pem)
    except (UnparsableKeyError, ValueError) as exc:
        raise ConfigError(
            f"PORTAL_DKIM_KEY_FILE: {path} holds no unencrypted RSA private key in PEM form; "
            "make one with `openssl genrsa -out dkim.pem 2048`."
        ) from exc
    bits = int(key["modulus"]).bit_length()
    if bits < MIN_DKIM_KEY_BITS:
        raise ConfigError(
            f"PORTAL_DKIM_KEY_FILE: {path} holds a {bits}-bit key; receivers ignore DKIM keys "
            f"under {MIN_DKIM_KEY_BITS} bits. Make a 2048-bit one."
        )
    return pem
