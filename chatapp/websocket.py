"""gevent-websocket's handler: bounded frames, detaching, and frames written in batches.

The handshake of every WebSocket is gevent-websocket's. A new Engine.IO
session is then taken over by chatapp.transport (``ChatWebSocketHandler.
detach``); what stays here (a long-polling session upgrading) reads through
gevent-websocket, bounded as follows.

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

It also writes frames its own way (FrameWriter, which chatapp.transport's
connections use too). gevent-websocket's ``send`` encodes the text, builds a
header, and goes through gevent's ``sendall`` (a ``getsockopt`` syscall, a
timer and several Python calls a frame), each from the Engine.IO writer
greenlet of the recipient. Here ``write_frame`` only appends the frame to the
connection's batch, from whichever greenlet emits it; at the end of the event
loop's turn one non-blocking ``send`` writes the whole batch. So a room
broadcast (chatapp.fastpath) builds its frame once and hands the same bytes
to every recipient, and a connection that gets several frames in one turn
(busy rooms) costs one system call for all of them. What the kernel does not
take waits, in order, until the socket is writable again. Every frame of a
connection goes through ``write_frame``, so frames never interleave or
overtake each other.
"""

from __future__ import annotations

import _socket
import socket
import struct
from collections.abc import Callable
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
WRITE = 2  # libev's EV_WRITE


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
    """The writers with frames to write at the end of this turn of the loop."""

    def __init__(self) -> None:
        self.dirty: list[FrameWriter] = []

    def add(self, writer: FrameWriter) -> None:
        if not self.dirty:
            # Runs once the greenlets that are ready now have had their turn.
            gevent.get_hub().loop.run_callback(self.write_out)
        self.dirty.append(writer)

    def write_out(self) -> None:
        dirty, self.dirty = self.dirty, []
        for writer in dirty:
            writer.write_out()


# One per process: the server runs one gevent hub.
_batch = _WriteBatch()


class FrameWriter:
    """Write whole frames to a non-blocking socket without ever blocking.

    ``write_frame`` adds a frame to this turn's batch; at the end of the
    turn one ``send`` writes the batch. What the kernel does not take waits,
    in order, for the socket to become writable (an event-loop watcher, no
    greenlet). Past ``MAX_PENDING_BYTES`` waiting, or when the connection
    breaks, the writer gives up and calls ``write_failed`` once.
    """

    __slots__ = (
        "sock",
        "_on_flushed",
        "_batch",
        "_pending",
        "_pending_bytes",
        "_watcher",
        "broken",
    )

    def __init__(self, sock: Any) -> None:
        self.sock = sock  # a stdlib (not gevent) socket, non-blocking
        self._on_flushed: Callable[[], None] | None = None
        self._batch: list[bytes] | None = None  # frames of this turn; None: none yet
        self._pending: list[bytes] | None = None  # refused by the kernel; None: none
        self._pending_bytes = 0
        self._watcher: Any = None  # the write watcher while something is pending
        self.broken = False

    def write_frame(self, frame: bytes) -> None:
        """Add a whole frame to this turn's batch; it is written when the turn ends."""
        if self.broken:
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
        sent = self._send(data)
        if sent is None:
            return
        if sent < len(data):
            self._pending = []
            self._queue(data[sent:])
            if not self.broken:
                self._watcher = gevent.get_hub().loop.io(self.sock.fileno(), WRITE, ref=False)
                self._watcher.start(self._on_writable)
        elif self._on_flushed is not None:
            self._flushed()

    def when_flushed(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once everything written so far has reached the kernel."""
        self._on_flushed = callback
        if self._batch is None and self._pending is None:
            self._flushed()

    def fail(self) -> None:
        """Drop what waits, stop writing and call ``write_failed`` (once)."""
        if self.broken:
            return
        self.broken = True
        self._batch = None
        self._pending = None
        self._pending_bytes = 0
        self._stop_watching()
        self.write_failed()

    def write_failed(self) -> None:
        """End the connection: whoever reads it sees EOF and cleans up."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _send(self, data: bytes) -> int | None:
        """Send what the kernel takes now; None when the connection broke."""
        try:
            sent: int = self.sock.send(data)
        except BlockingIOError:
            return 0
        except OSError:
            self.fail()
            return None
        return sent

    def _queue(self, data: bytes) -> None:
        assert self._pending is not None
        self._pending.append(data)
        self._pending_bytes += len(data)
        if self._pending_bytes > MAX_PENDING_BYTES:
            self.fail()

    def _on_writable(self) -> None:
        pending = self._pending
        if not pending:
            return
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        sent = self._send(data)
        if sent is None:
            return
        if sent < len(data):
            self._pending = [data[sent:]]
            self._pending_bytes = len(data) - sent
            return
        self._pending = None
        self._pending_bytes = 0
        self._stop_watching()
        if self._on_flushed is not None and self._batch is None:
            self._flushed()

    def _flushed(self) -> None:
        callback, self._on_flushed = self._on_flushed, None
        if callback is not None:
            callback()

    def _stop_watching(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None


class BoundedWebSocket(WebSocket):  # type: ignore[misc]
    """A WebSocket that refuses large messages and writes frames without blocking."""

    __slots__ = ("max_message_bytes", "_message_bytes", "writer")

    def __init__(self, environ: Any, stream: Any, handler: Any, max_message_bytes: int) -> None:
        super().__init__(environ, stream, handler)
        self.max_message_bytes = max_message_bytes
        self._message_bytes = 0
        # gevent's socket wraps a non-blocking stdlib socket (``_sock``);
        # its own send is a C call with no timer and no getsockopt.
        self.writer = FrameWriter(handler.socket._sock)

    @property
    def broken(self) -> bool:
        """Tell whether writing failed (the connection is ending)."""
        return self.writer.broken

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
        if isinstance(message, str) and not is_engineio_text(message):
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
        self.writer.write_frame(encode_frame(message, opcode))
        if opcode == self.OPCODE_CLOSE:
            self.writer.write_out()  # the connection ends before the turn does
        if self.writer.broken:
            raise WebSocketError("Socket is dead")

    def write_frame(self, frame: bytes) -> None:
        """Add a whole frame to this turn's batch (see FrameWriter)."""
        if not self.closed:
            self.writer.write_frame(frame)

    def detach(self) -> None:
        """Stop using the connection without closing it (someone else owns it now).

        A closed WebSocket writes no close frame, neither when gevent-websocket
        ends the request nor when it is collected.
        """
        self.closed = True  # type: ignore[misc]  # a slot of gevent-websocket's WebSocket


def is_engineio_text(message: str) -> bool:
    """Tell whether a text message starts like an Engine.IO packet (type 0-6)."""
    return bool(message) and message[0] in "0123456"


class ChatWebSocketHandler(WebSocketHandler):  # type: ignore[misc]
    """gevent-websocket's handler with bounded messages and no access log."""

    socket: Any  # pywsgi's connection; None once detached

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

    def detach(self) -> tuple[Any, bytes]:
        """Give the upgraded connection to a new owner: its socket and the unread bytes.

        pywsgi reads out and closes its socket once the handler returns; after
        this the handler has no socket (which also ends its request loop), the
        WebSocket it made is marked closed (no close frame is written), and the
        returned non-blocking socket is the only one left on the descriptor.
        """
        unread = self._unread_input()
        self.websocket.detach()
        self.close_connection = True
        own, self.socket = self.socket, None
        raw = _socket.socket(fileno=own.detach())
        raw.setblocking(False)
        return raw, unread

    def _unread_input(self) -> bytes:
        """Return what the request reader buffered past the handshake (clients send nothing)."""
        timeout = self.socket.gettimeout()
        self.socket.settimeout(0.0)  # peek at the buffer, never wait for the network
        try:
            return bytes(self.rfile.peek())
        except OSError:
            return b""
        finally:
            self.socket.settimeout(timeout)

    def log_request(self) -> None:
        """Write no access line: URLs carry room codes and Engine.IO sids."""
