"""gevent-websocket's handler: bounded frames, detaching, and frames written in batches.

The handshake of every WebSocket is gevent-websocket's. A new Engine.IO
session is then taken over by chatapp.engine.transport (``ChatWebSocketHandler.
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
tests/engine/test_websocket.py pins the behaviour against the installed
version.

It also writes frames its own way (FrameWriter, which chatapp.engine.transport's
connections use too). gevent-websocket's ``send`` encodes the text, builds a
header, and goes through gevent's ``sendall`` (a ``getsockopt`` syscall, a
timer and several Python calls a frame), each from the Engine.IO writer
greenlet of the recipient. Here ``write_frame`` only appends the frame to the
connection's batch, from whichever greenlet emits it; at the end of the event
loop's turn one non-blocking ``send`` writes the whole batch. So a room
broadcast (chatapp.engine.fastpath) builds its frame once and hands the same bytes
to every recipient, and a connection that gets several frames in one turn
(busy rooms) costs one system call for all of them. What the kernel does not
take waits, in order, until the socket is writable again. Every frame of a
connection goes through ``write_frame``, so frames never interleave or
overtake each other.
"""

from __future__ import annotations

import _socket
import logging
import socket
import struct
from collections.abc import Callable
from typing import Any

import gevent
from gevent.pywsgi import OldMessage
from geventwebsocket.exceptions import ProtocolError
from geventwebsocket.exceptions import WebSocketError
from geventwebsocket.handler import WebSocketHandler
from geventwebsocket.websocket import Header
from geventwebsocket.websocket import WebSocket

from chatapp.engine.descriptors import DESCRIPTORS
from chatapp.engine.guard import plain_response
from chatapp.engine.guard import RETRY_SOON

DEFAULT_MAX_FRAME_BYTES = 65536
DEFAULT_HEADER_TIMEOUT_SECONDS = 10.0
# Once the process is short of descriptors, a connection has this long to
# send its request line and headers (only /healthz is served then).
SHORT_HEADER_TIMEOUT_SECONDS = 1.0
FRAGMENT_TIMEOUT_SECONDS = 10.0  # a fragmented message must be whole within this
HEALTH_PATH = "/healthz"
# http.client's limits on request headers, which pywsgi relied on.
MAX_HEADER_LINE = 65536
MAX_HEADERS = 100
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
    """A WebSocket that refuses large messages and writes frames without blocking.

    It reads within its session's input budget (``budget``, which
    chatapp.engine.guard gives it for a long-polling session that upgrades), and a
    message in fragments must be whole within FRAGMENT_TIMEOUT_SECONDS.
    """

    __slots__ = (
        "max_message_bytes",
        "_message_bytes",
        "writer",
        "budget",
        "guard",
        "_fragments_due",
    )

    def __init__(self, environ: Any, stream: Any, handler: Any, max_message_bytes: int) -> None:
        super().__init__(environ, stream, handler)
        self.max_message_bytes = max_message_bytes
        self._message_bytes = 0
        self.budget: Any = None  # an InputBudget, set before the first read
        self.guard: Any = None  # the EngineGuard to tell when the budget is spent
        self._fragments_due: gevent.Timeout | None = None
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
        if self.budget is not None and not self.budget.spend(header.length + 2):
            if self.guard is not None:
                self.guard.overspent(self.budget)
            raise ProtocolError("input budget spent")
        if header.opcode in (self.OPCODE_TEXT, self.OPCODE_BINARY):
            self._message_bytes = 0
            if not header.fin and self._fragments_due is None:
                # Raised in this (the reading) greenlet, wherever it waits.
                self._fragments_due = gevent.Timeout.start_new(
                    FRAGMENT_TIMEOUT_SECONDS, ProtocolError("fragmented message not completed")
                )
        if header.fin and header.opcode in (
            self.OPCODE_TEXT,
            self.OPCODE_BINARY,
            self.OPCODE_CONTINUATION,
        ):
            self._cancel_fragments_due()
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

    def _cancel_fragments_due(self) -> None:
        if self._fragments_due is not None:
            self._fragments_due.close()
            self._fragments_due = None

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
        self._cancel_fragments_due()

    def close(self, *args: Any, **kwargs: Any) -> None:
        """Close as gevent-websocket does; a fragment deadline dies with the socket."""
        self._cancel_fragments_due()
        super().close(*args, **kwargs)


def is_engineio_text(message: str) -> bool:
    """Tell whether a text message starts like an Engine.IO packet (type 0-6)."""
    return bool(message) and message[0] in "0123456"


class _HeadersLate(BaseException):
    """The request line and headers did not arrive in time (a BaseException:
    pywsgi's handlers catch Exception and would answer 400 and log it)."""


# gevent-websocket logs a warning for each malformed upgrade request, which
# a client can send in a loop; each is answered 4xx, which says it all. (A
# Logger made directly is in no hierarchy: it configures nothing.)
_QUIET = logging.Logger("chatapp.engine.websocket.client_errors", logging.CRITICAL)


class ChatWebSocketHandler(WebSocketHandler):  # type: ignore[misc]
    """gevent-websocket's handler, holding each connection to the server's limits.

    - Bounded messages (BoundedWebSocket) and no access log.
    - The request line and headers must arrive within HEADER_TIMEOUT_SECONDS
      (slowloris), a second once the process is short of descriptors.
    - Each connection is counted in chatapp.engine.descriptors until it ends (or
      until chatapp.engine.transport takes it over); when descriptors run short,
      every request but ``/healthz`` gets a 503 at once.
    - A WebSocket handshake past its address's cap (chatapp.engine.guard) gets a
      429 before the upgrade, which a WSGI app would see only after it.
    - pywsgi's one line per malformed request goes to the refusal log, at a
      bounded rate.
    """

    socket: Any  # pywsgi's connection; None once detached
    _holds_descriptor = False
    _headers_due: gevent.Timeout | None = None

    @property
    def logger(self) -> logging.Logger:
        """Return a logger that drops gevent-websocket's notes on malformed upgrades."""
        return _QUIET

    def handle(self) -> None:
        """Serve the connection's requests, counting its descriptor meanwhile."""
        DESCRIPTORS.open += 1
        self._holds_descriptor = True
        try:
            super().handle()
        finally:
            if self._holds_descriptor:
                DESCRIPTORS.open -= 1

    def handle_one_request(self) -> Any:
        """Handle a request whose line and headers arrive in time; drop it otherwise."""
        if DESCRIPTORS.short:
            seconds = SHORT_HEADER_TIMEOUT_SECONDS
        else:
            seconds = self._setting("HEADER_TIMEOUT_SECONDS", DEFAULT_HEADER_TIMEOUT_SECONDS)
        self._headers_due = gevent.Timeout.start_new(seconds, _HeadersLate)
        try:
            return super().handle_one_request()
        except _HeadersLate:
            return None  # pywsgi closes the connection
        finally:
            self._headers_due.close()

    def MessageClass(self, fp: Any, *args: Any) -> Any:  # noqa: N802 - pywsgi's name
        """Read the request's headers into pywsgi's message class, without the email parser.

        pywsgi parses headers with ``http.client.parse_headers``, which hands
        them to the ``email`` package's feed parser: 45 us for a browser's
        dozen headers, four times a join. This reads the same lines with the
        same limits (65,536 bytes a line, 100 headers) in 4 us. A header with
        no name, a name with white space, or a folded line (obsolete since
        RFC 7230, which lets a server refuse it) is refused with 400.
        """
        message = OldMessage()
        headers = message._headers
        while True:
            line = fp.readline(MAX_HEADER_LINE + 1)
            if len(line) > MAX_HEADER_LINE:
                message.status = "Line too long"
                return message
            if line in (b"\r\n", b"\n", b""):
                return message
            name, colon, value = line.decode("latin-1").partition(":")
            if not colon or not name or name != name.strip() or len(headers) >= MAX_HEADERS:
                message.status = "Invalid header"
                return message
            headers.append((name, value.strip(" \t\r\n")))

    def read_request(self, raw_requestline: str) -> Any:
        """Read the headers; from then on the request may take its time."""
        result = super().read_request(raw_requestline)
        if self._headers_due is not None:
            self._headers_due.close()
        return result

    def run_application(self) -> Any:
        """Answer 503 when descriptors run short (but for /healthz); else run the app."""
        if DESCRIPTORS.short and self.environ.get("PATH_INFO") != HEALTH_PATH:
            self._refused("descriptors")
            self.result = plain_response(
                self.start_response,
                "503 Service Unavailable",
                "The server is at its limit of open connections. Try again in a moment.",
                ("Connection", "close"),
            )
            self.process_result()
            return None
        return super().run_application()

    def upgrade_connection(self) -> Any:
        """Upgrade as gevent-websocket does, then bound the new WebSocket.

        A handshake that would open a session past its address's cap is
        answered 429 instead, before anything is upgraded.
        """
        guard = self._guard()
        if guard is not None and not guard.admits_handshake(self.environ):
            return plain_response(
                self.start_response, "429 Too Many Requests", "Too many sessions", RETRY_SOON
            )
        result = super().upgrade_connection()
        websocket = getattr(self, "websocket", None)
        if websocket is not None:
            limit = self._setting("MAX_FRAME_BYTES", DEFAULT_MAX_FRAME_BYTES)
            self.websocket = BoundedWebSocket(self.environ, websocket.stream, self, limit)
            self.environ["wsgi.websocket"] = self.websocket
            # The stock WebSocket's __del__ calls close(), which would write a
            # close frame on the shared stream: leave it nothing to write with.
            websocket.raw_write = None
        return result

    def log_error(self, msg: str, *args: Any) -> None:
        """Count a malformed request in the refusal log instead of a line each."""
        self._refused("bad_request")

    # The server's application, not ``self.application``: pywsgi sets that
    # only once a request's headers are in.
    def _setting(self, name: str, default: Any) -> Any:
        return getattr(self.server.application, "config", {}).get(name, default)

    def _guard(self) -> Any:
        extensions = getattr(self.server.application, "extensions", None)
        return extensions.get("engine_guard") if extensions is not None else None

    def _refused(self, reason: str) -> None:
        guard = self._guard()
        if guard is None:
            return
        environ = getattr(self, "environ", None)
        if not environ:  # the request line itself was malformed
            environ = {"REMOTE_ADDR": _peer(self.client_address)}
        guard.refused_request(reason, environ)

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
        self._holds_descriptor = False  # the new owner counts it now
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


def _peer(client_address: Any) -> str:
    """Return the IP address of pywsgi's ``client_address``."""
    return client_address[0] if isinstance(client_address, tuple) else str(client_address)
