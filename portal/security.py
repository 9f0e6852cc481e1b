"""Headers every response carries."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, request
from flask.sessions import SecureCookieSessionInterface


class SessionInterface(SecureCookieSessionInterface):
    """The signed cookie session, but none at all for the partner API: it uses bearer keys, sets
    no cookie, and its requests need not pay for reading one."""

    def open_session(self, app: Flask, request: Any) -> Any:
        if request.path.startswith("/v1/"):
            return None  # Flask then uses a null session that cannot be written
        return super().open_session(app, request)


CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def init_app(app: Flask) -> None:
    app.session_interface = SessionInterface()

    @app.after_request
    def security_headers(response: Response) -> Response:
        headers = response.headers
        headers.setdefault("Content-Security-Policy", CSP)
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "no-referrer")
        headers.setdefault("X-Frame-Options", "DENY")
        if request.path.startswith("/invite") or request.path.startswith("/v1/"):
            headers["Cache-Control"] = "no-store"
        return response
