"""What a user would run instead of the portal: a minimal Flask app on stock gunicorn
(``bench/wrk_bench.py`` starts it with ``-k gthread -w 2 --threads 8`` and no access log).

It answers the status poll with a constant ``{"isSigned": false}``, and the customer pages'
paths (``/agreement``, ``/invite/<token>``) with a constant HTML page each, of the size the
portal's page has (``BENCH_AGREEMENT_BYTES`` / ``BENCH_LANDING_BYTES``, which ``wrk_bench.py``
sets after fetching the portal's pages once)."""

from __future__ import annotations

import os

from flask import Flask, Response, jsonify
from flask.typing import ResponseReturnValue

app = Flask(__name__)


def constant_page(size: int) -> bytes:
    """An HTML page of ``size`` bytes."""
    head = b"<!DOCTYPE html>\n<html lang=en>\n<title>Constant</title>\n<body>\n"
    tail = b"</body>\n</html>\n"
    line = b"<p>Constant text of the baseline page, as long as the portal's page.</p>\n"
    room = max(0, size - len(head) - len(tail))
    return head + (line * (room // len(line) + 1))[:room] + tail


AGREEMENT = constant_page(int(os.environ.get("BENCH_AGREEMENT_BYTES", "3000")))
LANDING = constant_page(int(os.environ.get("BENCH_LANDING_BYTES", "2000")))


@app.get("/v1/customers/<customer_id>/directSignedMicrosoftCustomerAgreementStatus")
def status(customer_id: str) -> ResponseReturnValue:
    return jsonify(isSigned=False)


@app.get("/agreement")
def agreement() -> ResponseReturnValue:
    return Response(AGREEMENT, mimetype="text/html")


@app.get("/invite/<path:token>")
def landing(token: str) -> ResponseReturnValue:
    return Response(LANDING, mimetype="text/html")
