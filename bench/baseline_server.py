"""The benchmark's baseline: a minimal Flask app under the portal's own gunicorn setup.

It answers the status path with a constant ``{"isSigned": true}``, and the customer pages
measured by ``bench/pages_bench.py`` (``/agreement`` and ``/invite/<anything>``) with a constant
HTML page each, of about the portal's size (``--agreement-bytes`` / ``--invite-bytes``) and holding
the same form fields the benchmark looks for. It is served by
``portal.server.run`` with the worker and thread counts ``portal serve`` would use by default
(``SERVE_WORKERS`` / ``SERVE_THREADS`` from ``portal.config.DEFAULTS``, overridable by
``PORTAL_SERVE_WORKERS`` / ``PORTAL_SERVE_THREADS`` exactly as for the portal). So worker class,
threads, keep-alive, timeouts and the access log are the portal's; only the app differs.

Started by ``bench/status_bench.py`` and ``bench/pages_bench.py``; by hand:
``.venv/bin/python bench/baseline_server.py --port 8001``.
"""

from __future__ import annotations

import argparse

from flask import Config, Flask, Response, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import create_engine

from portal.core import config
from portal.web import server

STATUS_PATH = "/v1/customers/<customer_id>/directSignedMicrosoftCustomerAgreementStatus"
#: Body bytes of the constant pages when not told: about the portal's own pages.
AGREEMENT_BYTES = 2600
INVITE_BYTES = 1500

_AGREEMENT_FORM = (
    '<form method="post" action="/agreement">\n'
    '<input type="hidden" name="csrf_token" value="constant">\n'
    '<input type="text" id="first_name" name="first_name" value="Tania">\n'
    '<input type="checkbox" id="accept" name="accept" value="yes" required>\n'
    '<button type="submit">Accept</button>\n</form>\n'
)
_INVITE_FORM = (
    '<form method="post" action="/signin">\n'
    '<input type="hidden" name="csrf_token" value="constant">\n'
    '<input type="text" id="user_name" name="user_name" value="">\n'
    '<button type="submit">Sign in</button>\n</form>\n'
)


def serve_settings() -> tuple[int, int]:
    """Workers and threads as ``portal serve`` resolves them when given no options."""
    settings = Config(".")
    settings.from_mapping(config.DEFAULTS)
    settings.from_prefixed_env("PORTAL")
    return int(settings["SERVE_WORKERS"]), int(settings["SERVE_THREADS"])


def html_page(title: str, form: str, size: int) -> bytes:
    """A constant HTML page of ``size`` bytes (or its skeleton, if longer) holding ``form``."""
    head = f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<title>{title}</title>\n</head>\n<body>\n'
    tail = "</body>\n</html>\n"
    filler = "<p>Constant text of the baseline page, as long as the portal's page.</p>\n"
    room = size - len(head) - len(form) - len(tail)
    body = (filler * (room // len(filler) + 1))[: max(0, room)]
    return (head + form + body + tail).encode()


def create_baseline_app(
    agreement_bytes: int = AGREEMENT_BYTES, invite_bytes: int = INVITE_BYTES
) -> Flask:
    app = Flask(__name__)
    agreement_page = html_page("Accept the agreement", _AGREEMENT_FORM, agreement_bytes)
    invite_page = html_page("Sign in", _INVITE_FORM, invite_bytes)

    @app.get(STATUS_PATH)
    def status(customer_id: str) -> ResponseReturnValue:
        return jsonify({"isSigned": True})

    @app.get("/agreement")
    def agreement() -> ResponseReturnValue:
        return Response(agreement_page, mimetype="text/html")

    @app.get("/invite/<path:token>")
    def invite(token: str) -> ResponseReturnValue:
        return Response(invite_page, mimetype="text/html")

    # portal.server's post_fork hook disposes the portal's engine in each worker; give it one
    # that never connects, so the hook runs unchanged and costs nothing per request.
    app.extensions["portal.engine"] = create_engine("sqlite://")
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--agreement-bytes", type=int, default=AGREEMENT_BYTES)
    parser.add_argument("--invite-bytes", type=int, default=INVITE_BYTES)
    args = parser.parse_args()
    workers, threads = serve_settings()
    # No outbox to deliver: the baseline has no database.
    server.run(
        create_baseline_app(args.agreement_bytes, args.invite_bytes),
        host=args.host,
        port=args.port,
        workers=workers,
        threads=threads,
        deliver=False,
    )


if __name__ == "__main__":
    main()
