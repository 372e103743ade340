"""gevent-websocket, bounded: frames over MAX_FRAME_BYTES close the connection.

gevent-websocket reads a whole message into memory before python-engineio
checks its size, and engineio then counts characters, not bytes: one frame
of 200 MB grew the server by 400 MB, and 1,500 euro signs (4,500 bytes)
passed a 2,048-byte limit. gevent-websocket has no setting for this, so this
module checks each frame's declared length before its payload is read.

It relies on two internals of gevent-websocket 0.10: ``WebSocket.read_frame``
(whose header decoding it repeats) and the handler's ``websocket`` attribute
and ``wsgi.websocket`` environ key set by ``upgrade_connection``, which it
replaces with a bounded WebSocket on the same stream before any frame.
tests/test_websocket_limits.py pins the behaviour against the installed
version.
"""

from __future__ import annotations

from typing import Any

from geventwebsocket.exceptions import ProtocolError
from geventwebsocket.exceptions import WebSocketError
from geventwebsocket.handler import WebSocketHandler
from geventwebsocket.websocket import Header
from geventwebsocket.websocket import WebSocket

DEFAULT_MAX_FRAME_BYTES = 65536


class BoundedWebSocket(WebSocket):  # type: ignore[misc]
    """A WebSocket that refuses messages larger than ``max_message_bytes``."""

    __slots__ = ("max_message_bytes", "_message_bytes")

    def __init__(self, environ: Any, stream: Any, handler: Any, max_message_bytes: int) -> None:
        super().__init__(environ, stream, handler)
        self.max_message_bytes = max_message_bytes
        self._message_bytes = 0

    def read_frame(self) -> tuple[Any, bytes]:
        """Read one frame, refusing it before its payload if it is too large."""
        header = Header.decode_header(self.stream)
        if header.flags:
            raise ProtocolError
        if header.opcode in (self.OPCODE_TEXT, self.OPCODE_BINARY):
            self._message_bytes = 0
        self._message_bytes += header.length
        if self._message_bytes > self.max_message_bytes:
            raise ProtocolError(f"message over {self.max_message_bytes} bytes")
        if not header.length:
            return header, b""
        payload = self.raw_read(header.length)
        if len(payload) != header.length:
            raise WebSocketError("Unexpected EOF reading frame payload")
        if header.mask:
            payload = header.unmask_payload(payload)
        return header, payload


class ChatWebSocketHandler(WebSocketHandler):  # type: ignore[misc]
    """gevent-websocket's handler with bounded messages and no access log."""

    def upgrade_connection(self) -> Any:
        """Upgrade as gevent-websocket does, then bound the new WebSocket."""
        result = super().upgrade_connection()
        websocket = getattr(self, "websocket", None)
        if websocket is not None:
            config = getattr(self.application, "config", {})
            limit = config.get("MAX_FRAME_BYTES", DEFAULT_MAX_FRAME_BYTES)
            self.websocket = BoundedWebSocket(self.environ, websocket.stream, self, limit)
            self.environ["wsgi.websocket"] = self.websocket
            # The stock WebSocket's __del__ calls close(), which would write a
            # close frame on the shared stream: leave it nothing to write with.
            websocket.raw_write = None
        return result

    def log_request(self) -> None:
        """Write no access line: URLs carry room codes and Engine.IO sids."""
