"""What each speed trick saves: an ablation, in-process, in CPU time per request.

This is an ablation: each trick is switched off alone, every other trick staying on, and the
request is timed with the trick on and off. It measures what that one trick saves of a request's
CPU time, not whether a target is met: the targets of the issues are measured by the other
scripts here (``status_bench.py``, ``pages_bench.py``, ...) against a plain Flask baseline. The
figures quoted in the tricks' docstrings (``portal/web/fastpath.py``, ``portal/core/signing.py``,
``portal/i18n/templating.py``, ``portal/core/fastsql.py``) come from this script.

Run by hand from the project folder (a few minutes with the defaults):

    .venv/bin/python bench/tricks_bench.py [--requests 2000] [--rounds 8] [--warm 300]
                                           [--only poll,agreement,landing] [--tricks 1,2bc,6]

On a busy machine prefer short rounds and many of them (``--requests 250 --rounds 40``): slow
drifts of the machine's load then fall on both sides alike.

The requests, through the Flask test client (no HTTP, no server, one thread):

* ``poll``: ``GET /v1/customers/<id>/directSignedMicrosoftCustomerAgreementStatus`` with the
  partner's API key;
* ``agreement``: ``GET /agreement`` of a signed-in customer with a German culture (``de-DE``,
  country ``DE``), with its session cookie;
* ``landing``: ``GET /invite/<token>``, an invitation link's page, without a cookie (the opening
  was recorded while seeding, so the measured GETs change nothing).

The tricks, each with the requests it serves (switching it off is a monkeypatch, undone after):

* ``1``: ``portal.core.signing.TimedSerializer`` (off: itsdangerous's ``URLSafeTimedSerializer``);
* ``2a``: no session on ``/v1/`` (off: a cookie session opened there too, as Flask does);
* ``2bc``: the memo of verified session cookies and plain JSON for plain session values (off:
  neither; Flask's ``TaggedJSONSerializer``);
* ``2c``: plain session JSON alone (off: Flask's ``TaggedJSONSerializer``, the memo kept);
* ``3``: the memo of signed CSRF tokens (off: a token signed on every page);
* ``5b``: templates compiled per language with their texts translated (off: every template from
  the app's own environment, ``_()`` answered by Flask-Babel's gettext at render time);
* ``6``: ``fastsql.CompiledRead`` for the look-ups made on every request (off: the same
  statements through the ORM session).

What it does:

1. makes a temporary instance folder with a SQLite database, migrates it, creates a partner and,
   through the API, two German customers with an invitation each; signs the first in from its
   link (CSRF token, user name, temporary password) and chooses a password; opens the second's
   link once;
2. for each (request, trick): checks that the page is the same with the trick on and off (the CSRF
   token aside), warms both variants up (``--warm`` requests each), then runs ``--rounds`` ON and
   ``--rounds`` OFF rounds in ABBA order (ON OFF OFF ON ...), each of ``--requests`` requests,
   timed with ``time.process_time``; every response is checked (status 200, the expected body or
   form field);
3. prints the medians of µs of CPU per request ON and OFF and the saving (OFF - ON) / OFF of each
   adjacent ON/OFF pair: its median, interquartile range and [min..max]; then the same from the
   fastest tenth of the rounds of each side (the rounds least disturbed by other work).

Differences under about 3 points are noise on a shared 2-core machine. Exit status: 0 when every
response was right, 1 when a page differed between ON and OFF or on any failure. Every temporary
file is removed at the end; no ``PORTAL_*`` variable of the shell is used. Not a test: pytest
collects only ``tests/``.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

TMP = tempfile.mkdtemp(prefix="tricks-bench-")
for _name in [k for k in os.environ if k.startswith("PORTAL_")]:
    del os.environ[_name]
os.environ["PORTAL_INSTANCE_PATH"] = os.path.join(TMP, "instance")

from _common import german_customer, machine, portal_version  # noqa: E402 - bench/ is on sys.path
from flask import Flask  # noqa: E402
from flask.json.tag import TaggedJSONSerializer  # noqa: E402
from itsdangerous import BadSignature, TimestampSigner, URLSafeTimedSerializer  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from portal import create_app  # noqa: E402
from portal.core import db, tokens  # noqa: E402
from portal.core.models import PartnerKind  # noqa: E402
from portal.domain import acceptance, invitations, partners, signin  # noqa: E402
from portal.i18n import templating  # noqa: E402
from portal.web import fastpath  # noqa: E402

SECRET = "bench-secret-key-" + "x" * 40  # noqa: S105 - a throwaway instance's key
NEW_PASSWORD = "bench: correct horse battery staple"  # noqa: S105 - a throwaway test account
HEADERS = {"Accept-Language": "de-DE,de;q=0.9,en;q=0.8", "User-Agent": "tricks-bench/1.0"}
AGREEMENT_MARKER = b'name="accept"'
LANDING_MARKER = b'name="user_name"'
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def expect(what: str, response: Any, status: int, location: str = "", marker: bytes = b"") -> Any:
    """``response`` if it has ``status`` (a redirect to a path ending in ``location``, a body
    holding ``marker``); else a RuntimeError naming ``what``."""
    if (
        response.status_code != status
        or not response.headers.get("Location", "").endswith(location)
        or marker not in response.data
    ):
        raise RuntimeError(f"{what}: {response.status}\n{response.data[:600]!r}")
    return response


def csrf_of(response: Any) -> str:
    found = _CSRF.search(response.get_data(as_text=True))
    if found is None:
        raise RuntimeError(f"no CSRF token in the page:\n{response.data[:600]!r}")
    return found.group(1)


# --- setup ---------------------------------------------------------------------------------------


def setup() -> tuple[Flask, dict[str, Callable[[], Any]]]:
    """The app on a fresh SQLite database, and the three requests (each checks its response)."""
    path = os.path.join(TMP, "portal.db")
    engine = db.make_engine(f"sqlite:///{path}")
    db.upgrade(engine)
    engine.dispose()
    app = create_app(
        {
            "SECRET_KEY": SECRET,
            "DATABASE_URL": f"sqlite:///{path}",
            "BASE_URL": "https://portal.example.test",
            "TESTING": True,
        }
    )
    with app.app_context():
        session = db.session()
        partner = partners.create_partner(session, "Fabrikam", PartnerKind.DIRECT, None)
        key = partners.create_key(session, partner).secret
        session.commit()
    auth = {"Authorization": f"Bearer {key}"}
    api = app.test_client(use_cookies=False)

    def invite(domain: str) -> dict[str, Any]:
        made = expect(
            "POST /v1/customers",
            api.post("/v1/customers", json=german_customer(domain), headers=auth),
            201,
        )
        customer_id = made.get_json()["id"]
        invitation = expect(
            "POST .../invitations",
            api.post(f"/v1/customers/{customer_id}/invitations", json={}, headers=auth),
            201,
        )
        return {**invitation.get_json(), "customerId": customer_id}

    # Customer A: signed in, password chosen, on the agreement page.
    a = invite("a-bench.example.test")
    browser = app.test_client()
    page = expect(
        "GET the link", browser.get(urlsplit(a["url"]).path, headers=HEADERS), 200, "", b""
    )
    form = {"csrf_token": csrf_of(page), "user_name": a["userName"], "password": a["password"]}
    expect("POST /signin", browser.post("/signin", headers=HEADERS, data=form), 302, "/password")
    page = expect("GET /password", browser.get("/password", headers=HEADERS), 200)
    form = {"csrf_token": csrf_of(page), "password": NEW_PASSWORD, "repeat": NEW_PASSWORD}
    expect("POST /password", browser.post("/password", headers=HEADERS, data=form), 302)

    # Customer B: invited, its link opened once.
    b = invite("b-bench.example.test")
    landing_path = urlsplit(b["url"]).path
    anonymous = app.test_client(use_cookies=False)
    expect("GET the link", anonymous.get(landing_path, headers=HEADERS), 200, "", LANDING_MARKER)

    poll_path = f"/v1/customers/{a['customerId']}/directSignedMicrosoftCustomerAgreementStatus"

    def poll() -> Any:
        response = expect("GET status", api.get(poll_path, headers=auth), 200)
        if response.get_json() != {"isSigned": False}:
            raise RuntimeError(f"GET status: {response.data!r}")
        return response

    def agreement() -> Any:
        response = browser.get("/agreement", headers=HEADERS)
        return expect("GET /agreement", response, 200, "", AGREEMENT_MARKER)

    def landing() -> Any:
        response = anonymous.get(landing_path, headers=HEADERS)
        return expect("GET the link", response, 200, "", LANDING_MARKER)

    return app, {"poll": poll, "agreement": agreement, "landing": landing}


# --- OFF variants (each returns an undo) --------------------------------------------------------


def _reset_signing(app: Flask) -> None:
    app.session_interface._serializers.clear()
    app.extensions.pop("portal.csrf_serializers", None)
    tokens._checking_serializer.cache_clear()


class _PlainIssuedAt(TimestampSigner):
    """``tokens._IssuedAt`` on itsdangerous's own signer."""

    def __init__(self, *args: Any, issued_at: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.issued_at = issued_at

    def get_timestamp(self) -> int:
        return self.issued_at


def off_signing(app: Flask) -> Callable[[], None]:
    """1: itsdangerous's URLSafeTimedSerializer wherever TimedSerializer is used."""
    saved = (fastpath.TimedSerializer, tokens.TimedSerializer, tokens._IssuedAt)
    fastpath.TimedSerializer = URLSafeTimedSerializer
    tokens.TimedSerializer = URLSafeTimedSerializer
    tokens._IssuedAt = _PlainIssuedAt
    _reset_signing(app)

    def undo() -> None:
        fastpath.TimedSerializer, tokens.TimedSerializer, tokens._IssuedAt = saved
        _reset_signing(app)

    return undo


def _open_session_no_memo(self: Any, app: Flask, request: Any) -> Any:
    """``fastpath.SessionInterface.open_session`` without its memo of verified cookies."""
    if request.path.startswith("/v1/"):
        return None
    value = request.cookies.get(self.get_cookie_name(app))
    if not value:
        return self.session_class()
    max_age = int(app.permanent_session_lifetime.total_seconds())
    serializer = self.get_signing_serializer(app)
    if serializer is None:
        return None
    try:
        return self.session_class(serializer.loads(value, max_age=max_age))
    except BadSignature:
        return self.session_class()


def off_session_memo_json(app: Flask) -> Callable[[], None]:
    """2b+2c: no memo of verified cookies, Flask's own TaggedJSONSerializer."""
    interface = app.session_interface
    interface.open_session = types.MethodType(_open_session_no_memo, interface)
    interface.serializer = TaggedJSONSerializer()
    interface._serializers.clear()

    def undo() -> None:
        del interface.open_session
        del interface.serializer  # back to the class's _SessionJSON
        interface._serializers.clear()
        interface._opened.clear()

    return undo


def off_session_json_only(app: Flask) -> Callable[[], None]:
    """2c alone: Flask's TaggedJSONSerializer (the memo kept)."""
    interface = app.session_interface
    interface.serializer = TaggedJSONSerializer()
    interface._serializers.clear()

    def undo() -> None:
        del interface.serializer
        interface._serializers.clear()

    return undo


def off_api_no_session(app: Flask) -> Callable[[], None]:
    """2a: open a (cookie) session on /v1/ too, as Flask's SecureCookieSessionInterface does."""
    interface = app.session_interface
    original = type(interface).open_session

    def open_session(self: Any, app: Flask, request: Any) -> Any:
        value = request.cookies.get(self.get_cookie_name(app))
        if request.path.startswith("/v1/") and not value:
            return self.session_class()
        return original(self, app, request)

    interface.open_session = types.MethodType(open_session, interface)

    def undo() -> None:
        del interface.open_session

    return undo


def off_csrf_memo(app: Flask) -> Callable[[], None]:
    """3: sign the CSRF token on every page."""
    saved = fastpath._signed_csrf
    fastpath._signed_csrf = lambda raw: fastpath._csrf_serializer().dumps(raw)

    def undo() -> None:
        fastpath._signed_csrf = saved
        app.extensions.pop("portal.csrf_minted", None)

    return undo


_OF_CURRENT_LOCALE = templating.Environment._of_current_locale


def off_compiled_translations(app: Flask) -> Callable[[], None]:
    """5b: every template from the app's own environment: _() answered by Flask-Babel's gettext
    at render time."""
    env_class = templating.Environment
    env_class._of_current_locale = lambda self: self  # type: ignore[method-assign]

    def undo() -> None:
        env_class._of_current_locale = _OF_CURRENT_LOCALE  # type: ignore[method-assign]

    return undo


class OrmRead:
    """CompiledRead's interface, through the ORM session: rows as dicts keyed by column name
    or label, from ``session.execute(...).mappings()``."""

    def __init__(self, statement: Any) -> None:
        self.statement = statement

    def first(self, session: Session, **params: Any) -> dict[str, Any] | None:
        row = session.execute(self.statement, params).mappings().first()
        return None if row is None else dict(row)

    def first_on(self, engine: Any, **params: Any) -> dict[str, Any] | None:
        with Session(engine) as session:
            return self.first(session, **params)


#: The CompiledReads of the measured requests.
_READS = [(acceptance, "_SIGNED_STATUS"), (signin, "_SIGNED_IN"), (invitations, "_LINK")]


def off_compiled_read(app: Flask) -> Callable[[], None]:
    """6: the same selects through the ORM session."""
    saved = [getattr(module, name) for module, name in _READS]
    for (module, name), compiled in zip(_READS, saved, strict=True):
        setattr(module, name, OrmRead(compiled.statement))

    def undo() -> None:
        for (module, name), compiled in zip(_READS, saved, strict=True):
            setattr(module, name, compiled)

    return undo


#: Trick: its label, its OFF variant and the requests it serves.
TRICKS: dict[str, tuple[str, Callable[[Flask], Callable[[], None]], list[str]]] = {
    "1": ("signing (TimedSerializer)", off_signing, ["agreement", "landing"]),
    "2a": ("no session on /v1/", off_api_no_session, ["poll"]),
    "2bc": ("session memo + plain JSON", off_session_memo_json, ["agreement"]),
    "2c": ("plain session JSON alone", off_session_json_only, ["landing"]),
    "3": ("CSRF token memo", off_csrf_memo, ["agreement", "landing"]),
    "5b": ("compile-time translation", off_compiled_translations, ["agreement", "landing"]),
    "6": ("CompiledRead", off_compiled_read, ["poll", "agreement", "landing"]),
}
REQUESTS = ("poll", "agreement", "landing")


# --- measuring -----------------------------------------------------------------------------------


def _normalised(body: bytes) -> bytes:
    return re.sub(rb'name="csrf_token" value="[^"]+"', b"CSRF", body)


def run_round(get: Callable[[], Any], n: int) -> float:
    """µs of CPU per request over ``n`` requests."""
    gc.collect()
    started = time.process_time()
    for _ in range(n):
        get()
    return (time.process_time() - started) / n * 1e6


def measure(
    app: Flask,
    get: Callable[[], Any],
    off: Callable[[Flask], Callable[[], None]],
    n: int,
    rounds: int,
    warm: int,
) -> tuple[list[float], list[float], bool]:
    """ON and OFF rounds (µs per request) in ABBA order, and whether the page was the same
    with the trick off (CSRF token aside)."""
    body_on = _normalised(get().data)
    undo = off(app)
    try:
        body_off = _normalised(get().data)
    finally:
        undo()
    same = body_on == body_off
    ons: list[float] = []
    offs: list[float] = []
    for _ in range(warm):
        get()
    undo = off(app)
    try:
        for _ in range(warm):
            get()
    finally:
        undo()
    for i in range(rounds):
        order = ("on", "off") if i % 2 == 0 else ("off", "on")  # ABBA
        for which in order:
            if which == "on":
                ons.append(run_round(get, n))
                continue
            undo = off(app)
            try:
                get()  # refill whatever the switch emptied, outside the timing
                offs.append(run_round(get, n))
            finally:
                undo()
            get()
    return ons, offs, same


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Ablation of the speed tricks: CPU per request in-process with each trick "
        "switched off alone (all others on), ON/OFF rounds in ABBA order."
    )
    parser.add_argument("--requests", type=int, default=2000, help="requests per round")
    parser.add_argument(
        "--rounds", type=int, default=8, help="ON rounds (and as many OFF) per request and trick"
    )
    parser.add_argument(
        "--warm", type=int, default=300, help="unmeasured requests per variant before the rounds"
    )
    parser.add_argument(
        "--only", default="", help="comma-separated requests: poll, agreement, landing (all)"
    )
    parser.add_argument(
        "--tricks", default="", help=f"comma-separated tricks: {', '.join(TRICKS)} (all)"
    )
    args = parser.parse_args()
    args.only = {r.strip() for r in args.only.split(",") if r.strip()} or set(REQUESTS)
    args.tricks = {t.strip() for t in args.tricks.split(",") if t.strip()} or set(TRICKS)
    if args.only - set(REQUESTS):
        parser.error(f"--only takes {', '.join(REQUESTS)}")
    if args.tricks - set(TRICKS):
        parser.error(f"--tricks takes {', '.join(TRICKS)}")
    if not (args.requests >= 1 and args.rounds >= 2 and args.warm >= 0):
        parser.error("need --requests >= 1, --rounds >= 2, --warm >= 0")
    return args


def run(args: argparse.Namespace) -> int:
    print(f"machine:  {machine()}")
    print(f"portal:   {portal_version(dict(os.environ), Path(TMP))}")
    print("database: SQLite (temporary instance folder); Flask test client, one thread")
    app, requests = setup()
    print(
        f"load:     {args.requests} requests per round, {args.rounds} ON + {args.rounds} OFF "
        "rounds (ABBA); µs of CPU per request (process_time)\n"
    )
    print(
        f"{'request':10} {'trick':34} {'ON µs':>8} {'OFF µs':>8}"
        "  saving %: median (IQR) [min..max]  | by fastest 10% of rounds: ON OFF saving %"
    )
    differed: list[str] = []
    for request_name, get in requests.items():
        if request_name not in args.only:
            continue
        for trick, (label, off, serves) in TRICKS.items():
            if request_name not in serves or trick not in args.tricks:
                continue
            ons, offs, same = measure(app, get, off, args.requests, args.rounds, args.warm)
            if not same:
                differed.append(f"{request_name} with trick {trick} off")
            savings = [(b - a) / b * 100 for a, b in zip(ons, offs, strict=True)]
            # "inclusive": within the measured values (the default extrapolates from few rounds).
            q = statistics.quantiles(savings, n=4, method="inclusive")
            # Least disturbed by the other load on the machine: the 10th percentile of rounds.
            fast_on = statistics.quantiles(ons, n=10, method="inclusive")[0]
            fast_off = statistics.quantiles(offs, n=10, method="inclusive")[0]
            print(
                f"{request_name:10} {trick + ' ' + label:34} {statistics.median(ons):8.1f}"
                f" {statistics.median(offs):8.1f}  {statistics.median(savings):6.1f}"
                f" ({q[0]:5.1f}..{q[2]:5.1f}) [{min(savings):5.1f}..{max(savings):5.1f}]"
                f"  | {fast_on:7.1f} {fast_off:7.1f} {(fast_off - fast_on) / fast_off * 100:5.1f}"
                f"{'  PAGE DIFFERS' if not same else ''}",
                flush=True,
            )
    with app.app_context():
        db.engine().dispose()
    if differed:
        print(f"\nERRORS: the page differed between ON and OFF: {'; '.join(differed)}")
        return 1
    print("\nall responses were right, and each page the same with the trick on and off")
    return 0


def main() -> int:
    args = parse_args()
    try:
        return run(args)
    except KeyboardInterrupt:
        print("\ninterrupted; cleaning up", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(TMP, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
