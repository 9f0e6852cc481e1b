"""Headers every response carries."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, request
from flask.sessions import SecureCookieSessionInterface

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

HEADERS = [
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
]
#: Invitation pages and API answers must not be kept by browsers or proxies.
NO_STORE = ("/invite", "/v1/")


class SessionInterface(SecureCookieSessionInterface):
    """The signed cookie session, but none at all for the partner API: it uses bearer keys, sets
    no cookie, and its requests need not pay for reading one."""

    def open_session(self, app: Flask, request: Any) -> Any:
        if request.path.startswith("/v1/"):
            return None  # Flask then uses a null session that cannot be written
        return super().open_session(app, request)


def init_app(app: Flask) -> None:
    app.session_interface = SessionInterface()

    @app.after_request
    def security_headers(response: Response) -> Response:
        # No view sets these itself, so they are appended without looking first.
        response.headers.extend(HEADERS)
        if request.path.startswith(NO_STORE):
            response.headers["Cache-Control"] = "no-store"
        return response
