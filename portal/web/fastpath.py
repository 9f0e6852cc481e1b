"""The web's speed layer, fenced: each trick here leans on Flask, Flask-WTF, itsdangerous or
Jinja internals, which ``tests/test_library_behaviour.py`` pins and ``pyproject.toml`` bounds.

What each saves was measured in-process, as CPU time per request with that trick alone switched
off (``bench/tricks_bench.py``: a German customer, SQLite, many alternating rounds on a shared
2-core machine; differences under about 3 points are noise). Tricks that saved under about 5 %
of the request they were made for were removed (a memo of Flask's ``ensure_sync``: 1-2 %; a
template class skipping Jinja's globals chain: 3-4 %).

- ``Portal``: Flask with one compiled template set per language (``i18n.templating``: the
  agreement page 35 % cheaper, the landing page 25 %).
- ``SessionInterface``: Flask's signed cookie session, but none at all for the partner API (the
  status poll about 4 % cheaper; kept because the API has no use for a cookie either way), a
  cookie checked once per process remembered, and plain values written as plain JSON (together,
  a signed-in page such as the agreement about 7-8 % cheaper).
- ``csrf_token``: Flask-WTF's form token, signed by a serializer made once and handed out again
  for a minute (the agreement page about 5-7 % cheaper; a first visit has no session to reuse a
  token for), in place of Flask-WTF's context processor (which costs every render a call);
  ``csrf_field``, the hidden field every form carries, as a global, not a template macro (a
  ``{% import %}`` of a macro file cost each page about 75 µs of its 500).
- ``forms``: the macros of ``templates/_forms.html`` as a global (``forms.signin(...)``), from
  the module Jinja keeps for each language's compiled template: an ``{% include %}`` of the same
  form cost the landing page about 60 µs of its 800 (7 %), the global about 35 µs.
"""

from __future__ import annotations

import json
import re
import secrets
import time
import uuid
from typing import Any

from flask import Flask, current_app, g, session
from flask.json.tag import TaggedJSONSerializer
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import BadSignature
from markupsafe import Markup
from sqlalchemy.exc import SQLAlchemyError

from portal.core.models import is_id
from portal.core.signing import TimedSerializer
from portal.domain import acceptance
from portal.i18n import templating
from portal.web import ops


class Portal(Flask):
    """Flask with one compiled template set per language (``i18n.templating``)."""

    jinja_environment = templating.Environment


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


_FIELD_START = Markup('<input type="hidden" name="csrf_token" value="')
_FIELD_END = Markup('">')


def csrf_field() -> Markup:
    """The hidden field with the form token, for every form of every page (a page has up to
    three: made once per request; ``Markup + str`` escapes the token)."""
    field: Markup | None = g.get("portal_csrf_field")
    if field is None:
        field = g.portal_csrf_field = _FIELD_START + csrf_token() + _FIELD_END
    return field


class _Macros:
    """The macros of one template, looked up in this request's language's environment when a
    page calls them (Jinja keeps each compiled template's module of macros)."""

    def __init__(self, template: str) -> None:
        self.template = template

    def __getattr__(self, name: str) -> Any:
        return getattr(current_app.jinja_env.get_template(self.template).module, name)


def init_app(app: Flask) -> None:
    app.session_interface = SessionInterface()
    # In place of Flask-WTF's ``generate_csrf``, whose context processor would put its own
    # ``csrf_token`` over this global; ``CSRFProtect`` still checks every form.
    app.template_context_processors[None] = [
        processor
        for processor in app.template_context_processors[None]
        if getattr(processor, "__module__", "") != "flask_wtf.csrf"
    ]
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.jinja_env.globals["csrf_field"] = csrf_field
    app.jinja_env.globals["forms"] = _Macros("_forms.html")


#: The status poll's path, as the API routes it (``api.direct_signed_status``).
_STATUS_PATH = re.compile(r"/v1/customers/([^/]+)/directSignedMicrosoftCustomerAgreementStatus")


class StatusShortcut:
    """WSGI: the status poll answered without Flask, when the answer is the happy one.

    ``GET /v1/customers/<id>/directSignedMicrosoftCustomerAgreementStatus`` is what partners'
    tools poll, thousands of times per minute. A request with no query string, a bearer key and
    a well-formed id gets the view's one query (``acceptance.direct_signed_status``) here; when
    the key is valid and the customer visible, this answers 200 with the body and headers the
    view would have given (``tests/test_library_behaviour.py`` compares them). Anything else (no
    key, an unknown key or customer, a database error, another method, a query string) goes on
    to Flask untouched, which answers it as always. Measured with ``bench/wrk_bench.py``: see
    its docstring.
    """

    def __init__(self, app: Flask, wsgi_app: Any) -> None:
        from portal.web import security
        from portal.web.api import views

        self.app = wsgi_app
        self.engine = app.extensions["portal.engine"]
        self.tracking = views.TRACKING_HEADERS
        self.tracking_value = views._TRACKING_VALUE
        fixed = [*security.HEADERS]
        if str(app.config["BASE_URL"]).startswith("https:"):
            fixed.append(security.HSTS)
        self.fixed = [*fixed, ("Cache-Control", "no-store")]
        self.bodies = {
            signed: (json.dumps({"isSigned": signed}, separators=(",", ":")) + "\n").encode()
            for signed in (True, False)
        }

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        found = (
            _STATUS_PATH.fullmatch(environ.get("PATH_INFO", ""))
            if environ.get("REQUEST_METHOD") == "GET" and not environ.get("QUERY_STRING")
            else None
        )
        if found is None:
            return self.app(environ, start_response)
        scheme, _, key = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        key = key.strip()
        customer_id = found.group(1).lower()
        if scheme.lower() != "bearer" or not key or len(key) > 200 or not is_id(customer_id):
            return self.app(environ, start_response)
        try:
            result = acceptance.direct_signed_status(self.engine, key, customer_id)
        except SQLAlchemyError:
            return self.app(environ, start_response)  # Flask answers it: a 503, as always
        if not (result.key_valid and result.customer_visible):
            return self.app(environ, start_response)
        environ[ops.ENDPOINT] = "api.direct_signed_status"
        body = self.bodies[result.is_signed]
        headers = [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            *self.fixed,
        ]
        for name in self.tracking:
            sent = environ.get("HTTP_" + name.upper().replace("-", "_"), "")
            headers.append((name, sent if self.tracking_value.match(sent) else str(uuid.uuid4())))
        start_response("200 OK", headers)
        return [body]
