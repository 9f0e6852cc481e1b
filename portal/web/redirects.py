"""Where a redirect may go. Every redirect whose target comes from a request (a ``next`` field
or parameter, the page a language switch returns to) asks ``local_target``.

Browsers read ``/\\t/host``, ``/\\host`` and ``//host`` as other sites, decode ``%2e%2e`` as
``..`` and drop tabs and line breaks: so a target is decoded, refused if it holds a control
character or a backslash, has its dot segments resolved, and must then be a path on this site
(under a given prefix). What comes out is encoded again, ASCII only, safe in a header.
"""

from __future__ import annotations

import unicodedata
from urllib.parse import quote, unquote, urlsplit

#: Longer targets are refused (no page of the portal has an address this long).
MAX_TARGET = 2000
#: Characters kept as they are when the target is encoded again.
_PATH_SAFE = "/:@!$&'()*+,;=~"
_QUERY_SAFE = _PATH_SAFE + "?%"


def _unsafe(text: str) -> bool:
    return "\\" in text or any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in text)


def _resolved(path: str) -> str:
    """``path`` with its ``.`` and ``..`` segments resolved, as a browser resolves them."""
    segments: list[str] = []
    parts = path.split("/")[1:]
    for part in parts:
        if part == ".":
            continue
        if part == "..":
            if segments:
                segments.pop()
            continue
        segments.append(part)
    if parts and parts[-1] in (".", ".."):
        segments.append("")  # "/a/b/.." is "/a/"
    return "/" + "/".join(segments)


def local_target(value: str | None, default: str, *, within: str = "/") -> str:
    """``value`` made plain if it is a path on this site under ``within``, else ``default``."""
    if not value or len(value) > MAX_TARGET or _unsafe(value) or value.startswith("//"):
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return default
    path = unquote(parts.path)
    if _unsafe(path) or not path.startswith("/") or path.startswith("//"):
        return default
    path = _resolved(path)
    if path.startswith("//"):  # "/..//host" resolves to one
        return default
    prefix = within.rstrip("/")
    if prefix and path != prefix and not path.startswith(prefix + "/"):
        return default
    if _unsafe(unquote(parts.query)):
        return default
    target = quote(path, safe=_PATH_SAFE)
    if parts.query:
        target += "?" + quote(parts.query, safe=_QUERY_SAFE)
    return target
