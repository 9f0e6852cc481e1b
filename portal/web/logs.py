"""Log lines, as text or as JSON (``LOG_FORMAT``), and never a secret in them.

Access logs and error reports are read by more people than a customer's invitation is meant
for: a link's token (invitation, password reset, relationship request) opens a customer's
sign-in, a bearer key is a partner's whole API. Every line is redacted on its way out (the
message and any traceback), whichever logger wrote it.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

from flask import Flask
from flask.logging import default_handler

#: The token of a link wherever a path or URL shows one.
_LINK_TOKEN = re.compile(r"(/(?:invite|password/reset|relationship)/)[^\s?#\"'<>]+")
#: A bearer key or session cookie as a header would show it.
_BEARER = re.compile(r"(Bearer\s+)[^\s\"',;]+", re.IGNORECASE)
_COOKIE = re.compile(r"((?:^|[\s;,\"'])session=)[^\s;,\"']+")
#: A query or form value whose name says it is secret.
_SECRET_VALUE = re.compile(
    r"((?:password|passwd|token|secret|api_?key|csrf)[A-Za-z_]*=)[^&\s\"']+", re.IGNORECASE
)
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """``text`` with link tokens, bearer keys, session cookies and secret parameters replaced."""
    if "/" in text:
        text = _LINK_TOKEN.sub(rf"\1{REDACTED}", text)
    if "=" in text:
        text = _SECRET_VALUE.sub(rf"\1{REDACTED}", text)
        text = _COOKIE.sub(rf"\1{REDACTED}", text)
    if "earer" in text:
        text = _BEARER.sub(rf"\1{REDACTED}", text)
    return text


class TextFormatter(logging.Formatter):
    """The usual text line, redacted (the message and any traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message, and the traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def _time(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")


def formatter(json_lines: bool, text_format: str | None = None) -> logging.Formatter:
    return JsonFormatter() if json_lines else TextFormatter(text_format)


def access_line(atoms: dict[str, Any], request_id: str | None) -> str:
    """One request as a JSON object, from atoms named as gunicorn names them (already
    redacted; ``server.AccessLog.line`` makes them)."""
    entry = {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "level": "info",
        "logger": "access",
        "remote": atoms.get("h"),
        "method": atoms.get("m"),
        "path": atoms.get("U"),
        "query": atoms.get("q") or None,
        "status": _int(atoms.get("s")),
        "bytes": _int(atoms.get("B")),
        "duration_ms": round(float(atoms.get("D", 0)) / 1000, 3),
        "user_agent": atoms.get("a"),
        "referer": atoms.get("f"),
        "request_id": request_id,
        "ms_correlation_id": atoms.get("{ms-correlationid}o") or None,
    }
    if entry["referer"] == "-":
        entry["referer"] = None
    return json.dumps(entry, ensure_ascii=False)


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


LOG_FORMATS = ("text", "json")


def init_app(app: Flask) -> None:
    """The app's own log lines (``portal`` and its modules' loggers, through Flask's handler)
    redacted, and as JSON when ``LOG_FORMAT`` is ``json``."""
    default_handler.setFormatter(
        formatter(
            app.config["LOG_FORMAT"] == "json",
            "[%(asctime)s] %(levelname)s in %(module)s: %(message)s",
        )
    )
