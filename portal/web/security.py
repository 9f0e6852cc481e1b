"""Headers every response carries, the request body limit, NUL refused, and the reverse proxies
believed. (The session cookie and the forms' CSRF tokens are made in ``portal.web.fastpath``.)"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, request
from flask import Request as FlaskRequest
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.utils import cached_property
from werkzeug.wsgi import LimitedStream, get_input_stream

from portal.core.errors import ControlCharacter

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
#: Everything but the static files is personal (a page with a form carries its CSRF token, a
#: signed-in page the customer's data, an invitation page its link): nothing may be kept by
#: browsers or proxies.
CACHEABLE = "/static/"
#: With an https base URL, browsers are told to use nothing else for a year.
HSTS = ("Strict-Transport-Security", "max-age=31536000; includeSubDomains")


class _AtMost(LimitedStream):
    """A body without a length (``Transfer-Encoding: chunked``) read up to ``limit`` bytes, and
    refused (413) if it has more. Werkzeug's own wrapper stops quietly at the limit, so a
    longer body arrived cut, and was parsed as if whole."""

    def __init__(self, stream: Any, limit: int) -> None:
        super().__init__(stream, limit + 1, is_max=True)
        self.most = limit

    def readinto(self, b: Any) -> int | None:
        read = super().readinto(b)
        if self._pos > self.most:
            raise RequestEntityTooLarge()
        return read


class Request(FlaskRequest):
    """Flask's request, whose body limit (``max_content_length``) holds however the body is
    framed: a declared length over it is refused up front (by Werkzeug), a chunked body as soon
    as one byte more than it has arrived."""

    @cached_property
    def stream(self) -> Any:
        limit = self.max_content_length
        if limit is None or self.content_length is not None:
            return get_input_stream(self.environ, max_content_length=limit)
        if "wsgi.input_terminated" not in self.environ:
            return get_input_stream(self.environ, max_content_length=limit)
        return _AtMost(self.environ["wsgi.input"], limit)


def refuse_nul() -> None:
    """No text of a request may hold NUL: it means nothing to any field, and PostgreSQL refuses
    it in text (a query holding one would fail). The path, query parameters and the pages' form
    fields (file contents aside) are checked before any view reads them; the API's JSON strings
    are checked as they are read (``api.Fields``), and its body is not read here as a form.

    An invitation link is left to its own page ("not valid"): its token is checked by its
    signature before anything of it reaches the database."""
    if "\x00" in request.path and not request.path.startswith("/invite/"):
        raise ControlCharacter(parameter="path")
    sources = [request.args]
    if request.method == "POST" and not request.path.startswith("/v1/"):
        sources.append(request.form)
    for source in sources:
        for name, value in source.items(multi=True):
            if "\x00" in name or "\x00" in value:
                raise ControlCharacter(parameter=name[:40])


def init_app(app: Flask) -> None:
    app.request_class = Request
    app.before_request(refuse_nul)
    proxies = int(app.config["TRUSTED_PROXIES"])
    if proxies:
        # The client's address (evidence, sign-in limits) and scheme from the proxies' headers.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)  # type: ignore[method-assign]
    strict_transport = str(app.config["BASE_URL"]).startswith("https:")

    @app.after_request
    def security_headers(response: Response) -> Response:
        # A view may set its own policy (the HTML email's sandbox lets its inline styles
        # apply): a second policy would be enforced as well, and undo it.
        if "Content-Security-Policy" in response.headers:
            response.headers.extend(HEADERS[1:])
        else:
            response.headers.extend(HEADERS)
        if strict_transport:
            response.headers.add(*HSTS)
        if not request.path.startswith(CACHEABLE):
            response.headers["Cache-Control"] = "no-store"
        return response
