"""Long-polling bodies over MAX_FRAME_BYTES: 413, and the session closed.

python-engineio refuses such a body, then closes the session and waits for
a pending long-poll GET to carry the close packet; with none pending, the
POST never gets an answer and the log gets an error. This WSGI middleware,
in front of Engine.IO, answers 413 at once and closes the session without
waiting (the client reconnects and catches up by last_id).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs

WSGIApp = Any


class PollingBodyLimit:
    """Refuse Engine.IO polling POSTs larger than ``limit`` bytes."""

    def __init__(self, app: WSGIApp, engineio_server: Any, limit: int, path: str) -> None:
        self.app = app
        self.engineio_server = engineio_server
        self.limit = limit
        self.path = path.rstrip("/") + "/"

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        """Answer 413 for an oversized polling body; pass anything else on."""
        if environ.get("REQUEST_METHOD") == "POST" and environ.get("PATH_INFO", "").startswith(
            self.path
        ):
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = self.limit + 1
            if length > self.limit:
                self._close(environ.get("QUERY_STRING", ""))
                body = b"Payload Too Large"
                start_response(
                    "413 Payload Too Large",
                    [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))],
                )
                return [body]
        result: Iterable[bytes] = self.app(environ, start_response)
        return result

    def _close(self, query: str) -> None:
        sid = parse_qs(query).get("sid", [""])[0]
        socket = self.engineio_server.sockets.pop(sid, None)
        if socket is not None:
            socket.close(wait=False, abort=True)
