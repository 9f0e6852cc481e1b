"""Headers every response carries, the session cookie, the CSRF token in forms, the request
body limit, and the reverse proxies believed."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from flask import Flask, Response, current_app, g, request, session
from flask import Request as FlaskRequest
from flask.json.tag import TaggedJSONSerializer
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import BadSignature
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.utils import cached_property
from werkzeug.wsgi import LimitedStream, get_input_stream

from portal.core.errors import ControlCharacter
from portal.core.signing import TimedSerializer

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
#: Flask-WTF's: its ``validate_csrf`` checks the tokens ``csrf_token`` makes.
CSRF_SALT = "wtf-csrf-token"
#: How many recent sessions the per-process memos below keep (emptied when full).
_REMEMBERED = 10_000
_PLAIN = (str, int, float, bool, type(None))


class _SessionJSON(TaggedJSONSerializer):
    """Flask's tagged JSON for the session. A session of plain values only (as ours are) tags
    to itself, so it is written as plain JSON without asking each value about each tag."""

    def dumps(self, value: Any) -> str:
        if (
            type(value) is dict
            and all(type(k) is str and type(v) in _PLAIN for k, v in value.items())
            and not (len(value) == 1 and next(iter(value)) in self.tags)
        ):
            return json.dumps(value, separators=(",", ":"), sort_keys=True)
        return super().dumps(value)


class SessionInterface(SecureCookieSessionInterface):
    """The signed cookie session, but none at all for the partner API: it uses bearer keys, sets
    no cookie, and its requests need not pay for reading one."""

    serializer = _SessionJSON()

    def __init__(self) -> None:
        self._serializers: dict[tuple[Any, ...], TimedSerializer] = {}
        #: Cookies verified lately: their signing time and contents. A browser sends the same
        #: cookie with every page until the session changes; checking its signature and
        #: decoding it again each time cost a page view more than its database query.
        self._opened: dict[str, tuple[float, dict[str, Any]]] = {}

    def open_session(self, app: Flask, request: Any) -> Any:
        if request.path.startswith("/v1/"):
            return None  # Flask then uses a null session that cannot be written
        value = request.cookies.get(self.get_cookie_name(app))
        if not value:
            return self.session_class()
        max_age = app.permanent_session_lifetime.total_seconds()
        known = self._opened.get(value)
        if known is not None and 0 <= time.time() - known[0] <= max_age:
            return self.session_class(known[1])
        serializer = self.get_signing_serializer(app)
        if serializer is None:
            return None
        try:
            data, signed_at = serializer.loads(value, max_age=int(max_age), return_timestamp=True)
        except BadSignature:
            return self.session_class()
        if isinstance(data, dict) and all(isinstance(v, _PLAIN) for v in data.values()):
            # Plain values only: the session gets a copy of the dict and cannot change them.
            if len(self._opened) >= _REMEMBERED:
                self._opened.clear()
            self._opened[value] = (signed_at.timestamp(), data)
        return self.session_class(data)

    def get_signing_serializer(self, app: Flask) -> TimedSerializer | None:
        """Flask's serializer (same keys, salt and format), made once per set of keys and
        without compressing."""
        if not app.secret_key:
            return None
        # Old keys first: itsdangerous signs with the last one and verifies with all.
        keys = (*(app.config["SECRET_KEY_FALLBACKS"] or ()), app.secret_key)
        serializer = self._serializers.get(keys)
        if serializer is None:
            serializer = self._serializers[keys] = TimedSerializer(
                list(keys),
                salt=self.salt,
                serializer=self.serializer,
                signer_kwargs={
                    "key_derivation": self.key_derivation,
                    "digest_method": self.digest_method,
                },
            )
        return serializer


def csrf_token() -> str:
    """The form token Flask-WTF's ``generate_csrf`` makes for this request (and its
    ``CSRFProtect`` checks), signed by a serializer made once per key that does not compress:
    every page has a form, and this was a tenth of a page's cost."""
    field: str = current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token")
    token: str | None = g.get(field)
    if token is None:
        if not isinstance(session.get(field), str):
            session[field] = secrets.token_hex(20)  # as long as Flask-WTF's
        token = _signed_csrf(session[field])
        setattr(g, field, token)
    return token


#: A form token signed for a session is handed out again for this many seconds (a signature
#: per page costs more than the page's database query); it stays valid for
#: ``WTF_CSRF_TIME_LIMIT`` (an hour) from its signing, so forms live at most this much shorter.
CSRF_REUSE_SECONDS = 60


def _signed_csrf(raw: str) -> str:
    minted: dict[str, tuple[float, str]] = current_app.extensions.setdefault(
        "portal.csrf_minted", {}
    )
    now = time.time()
    known = minted.get(raw)
    if known is not None and 0 <= now - known[0] < CSRF_REUSE_SECONDS:
        return known[1]
    token: str = _csrf_serializer().dumps(raw)
    if len(minted) >= _REMEMBERED:
        minted.clear()
    minted[raw] = (now, token)
    return token


def _csrf_serializer() -> TimedSerializer:
    secret: str | bytes | None = (
        current_app.config.get("WTF_CSRF_SECRET_KEY") or current_app.secret_key
    )
    if not secret:
        raise RuntimeError("A secret key is required to use CSRF.")
    made: dict[Any, TimedSerializer] = current_app.extensions.setdefault(
        "portal.csrf_serializers", {}
    )
    serializer = made.get(secret)
    if serializer is None:
        serializer = made[secret] = TimedSerializer(secret, salt=CSRF_SALT)
    return serializer


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
    app.session_interface = SessionInterface()
    # In place of Flask-WTF's ``generate_csrf`` (see ``extensions.init_app``); ``CSRFProtect``
    # still checks every form.
    app.jinja_env.globals["csrf_token"] = csrf_token

    @app.after_request
    def security_headers(response: Response) -> Response:
        # No view sets these itself, so they are appended without looking first.
        response.headers.extend(HEADERS)
        if strict_transport:
            response.headers.add(*HSTS)
        if not request.path.startswith(CACHEABLE):
            response.headers["Cache-Control"] = "no-store"
        return response
