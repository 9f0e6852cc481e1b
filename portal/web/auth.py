"""Signing in on the web, the same for customers (``pages``) and dashboard users: the limits on
attempts, the cookie session a sign-in begins and a sign-out ends.

The domain (``signin``, ``users``) checks passwords and keeps the server-side sessions; this
module is what both HTML edges do around it.
"""

from __future__ import annotations

from flask import Flask, current_app, request, session
from limits.errors import ConfigurationError

from portal.core import throttle
from portal.core.config import ConfigError

#: The cookie session keeps only this across a sign-in or sign-out: the language picked.
KEPT = ("lang",)


def init_app(app: Flask) -> None:
    """Make the app's throttle from ``RATELIMIT_STORAGE_URI`` and the ``SIGNIN_LIMIT_*``."""
    config = app.config
    try:
        storage = throttle.storage_for(
            str(config["RATELIMIT_STORAGE_URI"]), app.extensions["portal.engine"]
        )
        made = throttle.Throttle(
            storage,
            {
                "account": str(config["SIGNIN_LIMIT_ACCOUNT"]),
                "address": str(config["SIGNIN_LIMIT_ADDRESS"]),
            },
            prefix=str(config.get("RATELIMIT_KEY_PREFIX") or ""),
        )
    except (ValueError, ConfigurationError) as exc:  # a limit it cannot read; a storage it lacks
        raise ConfigError(
            f"the sign-in limits cannot work as configured (PORTAL_RATELIMIT_STORAGE_URI, "
            f"PORTAL_SIGNIN_LIMIT_ACCOUNT, PORTAL_SIGNIN_LIMIT_ADDRESS): {exc}"
        ) from exc
    app.extensions["portal.throttle"] = made


def client_address() -> str:
    """The client's address (the proxy's, unless ``TRUSTED_PROXIES`` says how many to trust)."""
    return request.remote_addr or ""


def attempt(realm: str, account: str) -> throttle.Reservation:
    """Count an attempt to prove who one is, before the password is checked: against the
    account (``realm``: ``customer`` or ``dashboard``) and the client address. Raises
    ``TooManyAttempts`` or ``SignInUnavailable``; call ``succeeded()`` on the result when the
    password was right.

    Both write apart from the request's transaction: call them while it has written nothing
    (on SQLite, their write would wait for its lock).
    """
    made: throttle.Throttle = current_app.extensions["portal.throttle"]
    name = account.strip().lower()[:254] or "-"
    # The address first: a client over its limit touches no account's counter.
    return made.reserve(address=client_address(), account=f"{realm}:{name}")


def _fresh_cookie() -> None:
    kept = {key: session[key] for key in KEPT if key in session}
    session.clear()
    session.update(kept)


def begin(cookie_key: str, token: str) -> None:
    """A new cookie session for a new sign-in: nothing of the one before survives but the
    language, and the cookie changes (no fixation)."""
    _fresh_cookie()
    session[cookie_key] = token
    session.permanent = True


def end() -> None:
    """Sign out of the cookie session, keeping the language."""
    _fresh_cookie()
