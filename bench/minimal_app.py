"""What a user would run instead of the portal's status endpoint: a minimal Flask app answering
a constant ``{"isSigned": false}``, served by stock gunicorn (``bench/wrk_bench.py`` starts it
with ``-k gthread -w 2 --threads 8`` and no access log)."""

from __future__ import annotations

from flask import Flask, jsonify
from flask.typing import ResponseReturnValue

app = Flask(__name__)


@app.get("/v1/customers/<customer_id>/directSignedMicrosoftCustomerAgreementStatus")
def status(customer_id: str) -> ResponseReturnValue:
    return jsonify(isSigned=False)
