"""``portal i18n preview LOCALE --serve``: the preview's files on a local web server, written
again whenever the catalog is saved, and reloaded in the translator's browser.

Each HTML page the server sends asks ``/__version`` every second and reloads when the number
changes; the index (``/``) lists the pages and emails, and says what went wrong if the catalog
could not be used (the last good files stay).
"""

from __future__ import annotations

import html
import threading
import time
import traceback
from collections.abc import Callable
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

_RELOAD = b"""<script>
(function () {
  let seen = null;
  setInterval(async () => {
    try {
      const now = await (await fetch('/__version', {cache: 'no-store'})).text();
      if (seen !== null && now !== seen) location.reload();
      seen = now;
    } catch (e) { /* the preview stopped */ }
  }, 1000);
})();
</script>
"""


class Preview:
    """Serve ``folder`` on 127.0.0.1:``port``; call ``rebuild`` whenever ``watched`` changes."""

    def __init__(
        self, folder: Path, port: int, rebuild: Callable[[], object], watched: Path
    ) -> None:
        self.folder = folder
        self.rebuild = rebuild
        self.watched = watched
        self.version = 1
        self.problem = ""
        self._stop = threading.Event()
        handler = partial(_Handler, self, directory=str(folder))
        self.server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"

    def __enter__(self) -> Preview:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        threading.Thread(target=self._watch, daemon=True).start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()

    def serve_forever(self) -> None:
        """Wait until Ctrl+C."""
        try:
            while not self._stop.wait(3600):
                pass
        except KeyboardInterrupt:
            pass

    def _mtime(self) -> float:
        try:
            return self.watched.stat().st_mtime
        except OSError:
            return 0.0

    def _watch(self) -> None:
        seen = self._mtime()
        while not self._stop.wait(0.3):
            now = self._mtime()
            if now == seen:
                continue
            seen = now
            time.sleep(0.2)  # an editor may write the file in more than one go
            try:
                self.rebuild()
                self.problem = ""
            except Exception:  # noqa: BLE001 - shown to the translator, the old files stay
                self.problem = traceback.format_exc(limit=3)
            self.version += 1


class _Handler(SimpleHTTPRequestHandler):
    def __init__(self, preview: Preview, *args: Any, **kwargs: Any) -> None:
        self.preview = preview
        super().__init__(*args, **kwargs)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass  # the translator's terminal shows the URL, not every request

    def do_GET(self) -> None:
        if self.path == "/__version":
            return self._send(str(self.preview.version).encode(), "text/plain")
        if self.path in ("/", "/index.html"):
            return self._send(self._index(), "text/html")
        target = Path(self.directory, self.path.lstrip("/").split("?", 1)[0])
        if target.suffix == ".html" and target.is_file():
            page = target.read_bytes()
            return self._send(page.replace(b"</body>", _RELOAD + b"</body>"), "text/html")
        return super().do_GET()

    def _index(self) -> bytes:
        pages = sorted(self.preview.folder.glob("*.html")) + sorted(
            self.preview.folder.glob("*.txt")
        )
        items = "".join(
            f'<li><a href="/{html.escape(p.name)}">{html.escape(p.name)}</a></li>' for p in pages
        )
        problem = (
            f"<h2>The catalog could not be used</h2><pre>{html.escape(self.preview.problem)}</pre>"
            if self.preview.problem
            else ""
        )
        return (
            "<!DOCTYPE html><html lang=en><meta charset=utf-8><title>Preview</title><body>"
            f"<h1>Preview</h1>{problem}<ul>{items}</ul></body></html>"
        ).encode() + _RELOAD

    def _send(self, body: bytes, kind: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", f"{kind}; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)
