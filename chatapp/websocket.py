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

It also writes frames its own way. gevent-websocket's ``send`` encodes the
text, builds a header, and goes through gevent's ``sendall`` (a
``getsockopt`` syscall, a timer and several Python calls a frame), each from
the Engine.IO writer greenlet of the recipient. Here ``write_frame`` only
appends the frame to the connection's batch, from whichever greenlet emits
it; at the end of the event loop's turn one non-blocking ``send`` writes the
whole batch. So a room broadcast (chatapp.fastpath) builds its frame once and
hands the same bytes to every recipient, and a connection that gets several
frames in one turn (busy rooms) costs one system call for all of them. What
the kernel does not take waits, in order, for one flusher greenlet. Every
frame of a connection goes through ``write_frame``, so frames never
interleave or overtake each other.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

import gevent
from geventwebsocket.exceptions import ProtocolError
from geventwebsocket.exceptions import WebSocketError
from geventwebsocket.handler import WebSocketHandler
from geventwebsocket.websocket import Header
from geventwebsocket.websocket import WebSocket

DEFAULT_MAX_FRAME_BYTES = 65536
# A client that stops reading gets its connection closed once this much
# waits for it (a reconnect with last_id catches up), instead of the server
# buffering for it without bound.
MAX_PENDING_BYTES = 8 * 1024 * 1024
OPCODE_TEXT = WebSocket.OPCODE_TEXT


def encode_frame(payload: bytes, opcode: int = OPCODE_TEXT) -> bytes:
    """Return one unmasked, final WebSocket frame (RFC 6455 5.2) of ``payload``."""
    length = len(payload)
    if length < 126:
        return bytes((0x80 | opcode, length)) + payload
    if length < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, length) + payload
    return struct.pack("!BBQ", 0x80 | opcode, 127, length) + payload


def text_frame(text: str) -> bytes:
    """Return the WebSocket text frame that carries ``text``."""
    return encode_frame(text.encode("utf-8"))


def unmask(payload: bytes, mask: bytes) -> bytes:
    """XOR ``payload`` with the 4-byte ``mask``, as big integers (not byte by byte)."""
    length = len(payload)
    key = (mask * (length // 4 + 1))[:length]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(length, "big")


class _WriteBatch:
    """The connections with frames to write at the end of this turn of the loop."""

    def __init__(self) -> None:
        self.dirty: list[BoundedWebSocket] = []

    def add(self, websocket: BoundedWebSocket) -> None:
        if not self.dirty:
            # Runs once the greenlets that are ready now have had their turn.
            gevent.get_hub().loop.run_callback(self.write_out)
        self.dirty.append(websocket)

    def write_out(self) -> None:
        dirty, self.dirty = self.dirty, []
        for websocket in dirty:
            websocket.write_out()


# One per process: the server runs one gevent hub.
_batch = _WriteBatch()


class BoundedWebSocket(WebSocket):  # type: ignore[misc]
    """A WebSocket that refuses large messages and writes frames without blocking."""

    __slots__ = (
        "max_message_bytes",
        "_message_bytes",
        "_socket",
        "_send",
        "_batch",
        "_pending",
        "_pending_bytes",
        "broken",
    )

    def __init__(self, environ: Any, stream: Any, handler: Any, max_message_bytes: int) -> None:
        super().__init__(environ, stream, handler)
        self.max_message_bytes = max_message_bytes
        self._message_bytes = 0
        self._socket = handler.socket
        # gevent's socket wraps a non-blocking stdlib socket (``_sock``);
        # its own send is a C call with no timer and no getsockopt.
        self._send = handler.socket._sock.send
        self._batch: list[bytes] | None = None  # frames of this turn; None: none yet
        self._pending: list[bytes] | None = None  # refused by the kernel; None: none
        self._pending_bytes = 0
        self.broken = False

    # -- reading ---------------------------------------------------------

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
            payload = unmask(payload, header.mask)
        return header, payload

    def read_message(self) -> Any:
        """Read a message; a text one must look like an Engine.IO packet.

        Engine.IO text packets start with their type, a digit 0-6; python-
        engineio raises (and pywsgi logs a traceback) on anything else, such
        as an empty frame. Such a frame closes the connection (1002) instead.
        """
        message = super().read_message()
        if isinstance(message, str) and (not message or message[0] not in "0123456"):
            raise ProtocolError("not an Engine.IO packet")
        return message

    def validate_utf8(self, payload: bytes) -> None:
        """Skip gevent-websocket's byte-by-byte Python validator.

        ``read_message`` decodes every text message with the strict UTF-8
        codec, which refuses exactly what the validator refuses, and the
        connection is closed with 1007 all the same.
        """

    # -- writing ---------------------------------------------------------

    def send_frame(self, message: Any, opcode: int) -> None:
        """Frame ``message`` and write it (the path of ``send`` and ``close``)."""
        if self.closed:
            raise WebSocketError("Connection is already closed")
        if opcode in (self.OPCODE_TEXT, self.OPCODE_PING):
            message = self._encode_bytes(message)
        elif opcode == self.OPCODE_BINARY:
            message = bytes(message)
        self.write_frame(encode_frame(message, opcode))
        if opcode == self.OPCODE_CLOSE:
            self.write_out()  # the connection ends before the turn does
        if self.broken:
            raise WebSocketError("Socket is dead")

    def write_frame(self, frame: bytes) -> None:
        """Add a whole frame to this turn's batch; it is written when the turn ends.

        Never blocks, so it may be called for many connections in a row from
        one greenlet (a room broadcast) without a switch per recipient.
        """
        if self.closed:
            return
        if self._batch is not None:
            self._batch.append(frame)
            return
        self._batch = [frame]
        _batch.add(self)

    def write_out(self) -> None:
        """Write this turn's batch with one non-blocking ``send``."""
        batch, self._batch = self._batch, None
        if not batch or self.broken:
            return
        data = batch[0] if len(batch) == 1 else b"".join(batch)
        if self._pending is not None:
            self._queue(data)
            return
        try:
            sent = self._send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._fail()
            return
        if sent < len(data):
            self._pending = []
            self._queue(data[sent:])
            gevent.spawn(self._flush)

    def _queue(self, data: bytes) -> None:
        if self.broken or self._pending is None:
            return
        self._pending.append(data)
        self._pending_bytes += len(data)
        if self._pending_bytes > MAX_PENDING_BYTES:
            self._fail()

    def _flush(self) -> None:
        """Write what the kernel refused, blocking this greenlet only."""
        try:
            while self._pending:
                chunks, self._pending = self._pending, []
                self._pending_bytes = 0
                self._socket.sendall(b"".join(chunks))
        except OSError:
            self._fail()
            return
        if not self.broken:
            self._pending = None

    def _fail(self) -> None:
        """Drop what waits and end the connection: its reader sees EOF and cleans up."""
        self.broken = True
        self._pending = []
        self._pending_bytes = 0
        try:
            self._socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


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
