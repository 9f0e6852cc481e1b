"""The benchmark's baseline: a minimal Flask app under the portal's own gunicorn setup.

It answers the status path with a constant ``{"isSigned": true}`` and is served by
``portal.server.run`` with the worker and thread counts ``portal serve`` would use by default
(``SERVE_WORKERS`` / ``SERVE_THREADS`` from ``portal.config.DEFAULTS``, overridable by
``PORTAL_SERVE_WORKERS`` / ``PORTAL_SERVE_THREADS`` exactly as for the portal). So worker class,
threads, keep-alive, timeouts and the access log are the portal's; only the app differs.

Started by ``bench/status_bench.py``; by hand:
``.venv/bin/python bench/baseline_server.py --port 8001``.
"""

from __future__ import annotations

import argparse

from flask import Config, Flask, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import create_engine

from portal import config, server

STATUS_PATH = "/v1/customers/<customer_id>/directSignedMicrosoftCustomerAgreementStatus"


def serve_settings() -> tuple[int, int]:
    """Workers and threads as ``portal serve`` resolves them when given no options."""
    settings = Config(".")
    settings.from_mapping(config.DEFAULTS)
    settings.from_prefixed_env("PORTAL")
    return int(settings["SERVE_WORKERS"]), int(settings["SERVE_THREADS"])


def create_baseline_app() -> Flask:
    app = Flask(__name__)

    @app.get(STATUS_PATH)
    def status(customer_id: str) -> ResponseReturnValue:
        return jsonify({"isSigned": True})

    # portal.server's post_fork hook disposes the portal's engine in each worker; give it one
    # that never connects, so the hook runs unchanged and costs nothing per request.
    app.extensions["portal.engine"] = create_engine("sqlite://")
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    workers, threads = serve_settings()
    # No outbox to deliver: the baseline has no database.
    server.run(
        create_baseline_app(),
        host=args.host,
        port=args.port,
        workers=workers,
        threads=threads,
        deliver=False,
    )


if __name__ == "__main__":
    main()
