"""Engine.IO WebSocket sessions served by the event loop: no greenlet while idle.

python-engineio serves a WebSocket with three greenlets (the handler that
reads, a writer with its queue, one that sleeps between pings) and pywsgi's
8 KiB buffered reader: an idle connection cost about 60 KiB, most of it the
greenlets' saved stacks (benchmarks/README.md). Here a connection that opens
with ``transport=websocket`` is taken from gevent's WSGI handler right after
the handshake (``ChatWebSocketHandler.detach``), and then:

- the event loop reads it: an io watcher calls ``Connection.on_readable``,
  which parses whole frames (refusing one over MAX_FRAME_BYTES before its
  payload is waited for) and hands each message to the session. Every read
  and every frame spend the connection's input budget (chatapp.engine.budget),
  and the reader is linear in the bytes it reads: a frame that arrives a
  byte at a time is appended to, never copied per byte. A fragmented
  message must be complete within FRAGMENT_TIMEOUT_SECONDS;
- the session handles its messages in a greenlet that exists only while
  there are some, one at a time and in order (python-socketio's handlers may
  block on the store); past INBOX_LIMIT waiting messages, reading pauses;
- with a shared store, a connection's events may overlap (``overlap``):
  while one waits for the store's round trip, the next starts, up to
  MAX_OVERLAPPING, so a sender's lines in flight share round trips instead
  of taking one each. They still queue for the store in the order they came
  (each handler reaches the store's queue before it first waits:
  chatapp.stores.redis), and any other packet (connect, disconnect, close)
  waits until the events before it are done;
- pings are one timer per connection, and a missing pong ends the session;
- writes go through a FrameWriter (chatapp.engine.websocket): batched per turn of
  the loop, one ``send``, the rest when the socket is writable.

The session is an ``engineio.socket.Socket`` registered in the Engine.IO
server like any other, so python-socketio, ``eio.disconnect``, Engine.IO's
service task and HTTP requests naming its sid drive it unchanged.
Connections that begin with long-polling keep python-engineio's own path,
and so does every connection under a server whose handler cannot detach.
tests/engine/test_transport.py pins the behaviour on the real server;
tests/engine/test_library_pins.py the library internals it relies on.
"""

from __future__ import annotations

import io
import socket
import time
from collections.abc import Callable
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs

import gevent
from engineio import exceptions as eio_exceptions
from engineio import packet as eio_packet
from engineio import socket as eio_socket
from engineio.base_server import BaseServer
from gevent.pool import Pool

from chatapp.engine.budget import InputBudget
from chatapp.engine.descriptors import DESCRIPTORS
from chatapp.engine.guard import EngineGuard
from chatapp.engine.websocket import BoundedWebSocket
from chatapp.engine.websocket import encode_frame
from chatapp.engine.websocket import FrameWriter
from chatapp.engine.websocket import is_engineio_text
from chatapp.engine.websocket import text_frame
from chatapp.engine.websocket import unmask

READ = 1  # libev's EV_READ
# Messages a session may have waiting for its greenlet before reading pauses.
INBOX_LIMIT = 32
# Events of one connection that may wait on the store at once (``overlap``).
MAX_OVERLAPPING = 16
# An Engine.IO message that carries a Socket.IO event (``42/chat,...``).
EVENT_MESSAGE = "42"
# How long a closing connection waits for the peer to close its side too.
CLOSE_TIMEOUT_SECONDS = 2.0
# A message sent in fragments must be whole within this (PROTOCOL.md).
FRAGMENT_TIMEOUT_SECONDS = 10.0
# Every read costs at least this many bytes of the input budget: a client
# that sends a byte per TCP segment makes the server wake up once per byte.
READ_COST_FLOOR = 256

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
CLOSE_NORMAL, CLOSE_PROTOCOL_ERROR, CLOSE_INVALID_DATA = 1000, 1002, 1007
CLOSE_POLICY_VIOLATION, CLOSE_TOO_BIG = 1008, 1009
UNSENDABLE_CODES = frozenset({1004, 1005, 1006, 1015})  # RFC 6455 7.4.1: never on the wire

# One read buffer for every connection: the loop runs one callback at a time.
_READ_BUFFER = bytearray(64 * 1024)
_READ_VIEW = memoryview(_READ_BUFFER)
# A socket's request context never reads a body: the handshake had none.
_NO_BODY = io.BytesIO(b"")
# The environ values a session keeps: CGI variables, headers and WSGI flags.
_KEPT_TYPES = (str, bool, int, tuple)
PING_FRAME = text_frame("2")
TRANSPORT_CLOSE = BaseServer.reason.TRANSPORT_CLOSE
TRANSPORT_ERROR = BaseServer.reason.TRANSPORT_ERROR


class _ProtocolError(Exception):
    """The peer broke RFC 6455 (or our limits); ``code`` is the close code to send."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class WebSocketSessions:
    """WSGI middleware in front of Engine.IO that serves new WebSocket sessions itself."""

    def __init__(
        self,
        app: Callable[..., Iterable[bytes]],
        socketio_server: Any,
        flask_app: Any,
        max_message_bytes: int,
        guard: EngineGuard,
        path: str = "socket.io",
        overlap: bool = False,
    ) -> None:
        self.app = app
        self.socketio_server = socketio_server
        self.guard = guard
        self.flask_app = flask_app
        self.max_message_bytes = max_message_bytes
        self.overlap = overlap  # events may overlap (their handlers wait on the store)
        self.prefix = "/" + path.strip("/") + "/"
        self.connections: set[Connection] = set()  # open ones, for a graceful stop

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        """Take over a new WebSocket session; pass every other request on."""
        websocket = environ.get("wsgi.websocket")
        if type(websocket) is BoundedWebSocket and self._opens_session(environ):
            self._accept(environ, websocket)
            return []
        return self.app(environ, start_response)

    def wait_closed(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for every connection to close; close the rest."""
        deadline = time.monotonic() + timeout
        while self.connections and time.monotonic() < deadline:
            gevent.sleep(0.05)
        for connection in list(self.connections):
            connection.release()

    def _opens_session(self, environ: dict[str, Any]) -> bool:
        if not environ.get("PATH_INFO", "").startswith(self.prefix):
            return False
        if environ.get("CONTENT_LENGTH") not in (None, "", "0"):
            return False  # a handshake has no body; let Engine.IO refuse it
        query = parse_qs(environ.get("QUERY_STRING", ""))
        return (
            query.get("transport") == ["websocket"]
            and query.get("EIO") == ["4"]
            and "sid" not in query
            and "j" not in query
        )

    def _accept(self, environ: dict[str, Any], websocket: BoundedWebSocket) -> None:
        eio = self.socketio_server.eio
        sock, unread = websocket.handler.detach()
        connection = Connection(sock, self.max_message_bytes, self.connections)
        sid = eio.generate_id()
        session = EngineSocket(eio, sid, connection, self.overlap)
        eio.sockets[sid] = session
        session.send(
            eio_packet.Packet(
                eio_packet.OPEN,
                {
                    "sid": sid,
                    "upgrades": [],
                    "pingTimeout": int(eio.ping_timeout * 1000),
                    "pingInterval": int(eio.ping_interval + eio.ping_interval_grace_period) * 1000,
                    "maxPayload": eio.max_http_buffer_size,
                },
            )
        )
        accepted = eio._trigger_event("connect", sid, self._kept_environ(environ), run_async=False)
        budget = self.guard.budget(sid)
        if budget is None or (accepted is not None and accepted is not True):
            eio.sockets.pop(sid, None)  # python-socketio accepts every one; the guard knows it
            connection.close()
            return
        connection.budget = budget
        connection.guard = self.guard
        session.start_pinging()
        connection.start(session, unread)

    def _kept_environ(self, environ: dict[str, Any]) -> dict[str, Any]:
        """Return what python-socketio keeps of the handshake's environ for the session.

        The CGI variables, headers and WSGI flags, not the objects that hold
        pywsgi's buffers and socket: a session keeps its environ as long as it
        lives, and Flask-SocketIO builds each event's request context from it.
        """
        kept = {key: value for key, value in environ.items() if type(value) in _KEPT_TYPES}
        kept["wsgi.input"] = _NO_BODY
        kept["wsgi.errors"] = environ.get("wsgi.errors")
        kept["flask.app"] = self.flask_app  # what Flask-SocketIO's middleware adds
        return kept


class Connection(FrameWriter):
    """One WebSocket read by the event loop; whole messages go to its session.

    It writes its own frames (a FrameWriter). Once released it holds no
    reference back to its session, so a closed connection is freed as soon
    as python-socketio lets go of the session, without waiting for the
    cyclic garbage collector (which runs rarely: chatapp.engine.runtime).
    """

    __slots__ = (
        "session",
        "max_message_bytes",
        "budget",
        "guard",
        "_registry",
        "_reader",
        "_timer",
        "_fragment_timer",
        "_buffer",
        "_needed",
        "_fragments",
        "_fragments_bytes",
        "_fragments_opcode",
        "paused",
        "closing",
        "released",
    )

    def __init__(self, sock: Any, max_message_bytes: int, registry: set[Connection]) -> None:
        super().__init__(sock)
        self.session: EngineSocket | None = None
        self.max_message_bytes = max_message_bytes
        self.budget: InputBudget | None = None  # set before reading starts
        self.guard: EngineGuard | None = None  # told when the budget is spent
        self._registry = registry
        registry.add(self)
        self._reader = gevent.get_hub().loop.io(sock.fileno(), READ, ref=False)
        self._timer: Any = None
        self._fragment_timer: Any = None  # runs while a fragmented message is open
        # The start of a frame not yet whole: a bytearray, grown in place; b""
        # (shared, no allocation) while there is none.
        self._buffer: bytearray | bytes = b""
        self._needed = 0  # the bytes _buffer must hold before parsing can go on
        self._fragments: list[bytes] | None = None  # a message in several frames
        self._fragments_bytes = 0
        self._fragments_opcode = TEXT
        self.paused = False
        self.closing = False  # our close frame is on its way; input is dropped
        self.released = False  # the descriptor is closed

    def start(self, session: EngineSocket, unread: bytes = b"") -> None:
        """Start reading for ``session``, beginning with bytes already read."""
        self.session = session
        self._reader.start(self.on_readable)
        if unread:
            self._received(unread)

    def set_timer(self, seconds: float, callback: Callable[[], None]) -> None:
        """Call ``callback`` from the event loop in ``seconds`` (replacing any timer)."""
        if self._timer is not None:
            self._timer.stop()
        self._timer = gevent.get_hub().loop.timer(seconds, ref=False)
        self._timer.start(callback)

    def pause(self) -> None:
        """Stop reading until ``resume``: the session has enough waiting."""
        if not self.paused:
            self.paused = True
            self._reader.stop()

    def resume(self) -> None:
        """Read again after ``pause`` (not once closing)."""
        if self.paused and not self.closing:
            self.paused = False
            self._reader.start(self.on_readable)

    # -- reading (event loop callbacks) ----------------------------------------

    def on_readable(self) -> None:
        """Read what the kernel has; parse the frames it completes."""
        try:
            count = self.sock.recv_into(_READ_BUFFER)
        except BlockingIOError:
            return
        except OSError:
            count = 0
        if not count:
            self._ended()
        elif not self.closing:
            self._received(bytes(_READ_VIEW[:count]))

    def _received(self, data: bytes) -> None:
        try:
            self._spend(max(len(data), READ_COST_FLOOR), 0)
            if self._buffer:
                self._buffer += data  # in place: a byte at a time stays linear
                if len(self._buffer) < self._needed:
                    return
                data = bytes(self._buffer)
                self._buffer = b""
            consumed, self._needed = self._parse(data)
        except _ProtocolError as error:
            self.protocol_error(error.code)
            return
        if consumed < len(data) and not self.closing:
            self._buffer = bytearray(data[consumed:])

    def _spend(self, size: int, packets: int) -> None:
        budget = self.budget
        if budget is not None and not budget.spend(size, packets):
            if self.guard is not None:
                self.guard.overspent(budget)
            raise _ProtocolError(CLOSE_POLICY_VIOLATION)

    def _parse(self, buffer: bytes) -> tuple[int, int]:
        """Handle every whole frame at the start of ``buffer``.

        Return the bytes used, and how many of the rest must have arrived
        before the next frame can be parsed.
        """
        end = len(buffer)
        at = 0
        while not self.closing:
            if end - at < 2:
                return at, 2
            first, second = buffer[at], buffer[at + 1]
            length = second & 0x7F
            head = 2
            if length == 126:
                if end - at < 4:
                    return at, 4
                length = int.from_bytes(buffer[at + 2 : at + 4], "big")
                head = 4
            elif length == 127:
                if end - at < 10:
                    return at, 10
                length = int.from_bytes(buffer[at + 2 : at + 10], "big")
                head = 10
            opcode = first & 0x0F
            fin = bool(first & 0x80)
            if first & 0x70:
                raise _ProtocolError(CLOSE_PROTOCOL_ERROR)  # extension bits nobody agreed on
            if opcode >= CLOSE:
                if not fin or length > 125:
                    raise _ProtocolError(CLOSE_PROTOCOL_ERROR)
            elif length + (self._fragments_bytes if opcode == CONTINUATION else 0) > (
                self.max_message_bytes
            ):
                raise _ProtocolError(CLOSE_TOO_BIG)  # before waiting for the payload
            masked = second & 0x80
            start = at + head + (4 if masked else 0)
            if end - start < length:
                return at, start - at + length
            self._spend(0, 1)
            payload = buffer[start : start + length]
            if masked and length:
                payload = unmask(payload, buffer[start - 4 : start])
            at = start + length
            self._frame(opcode, fin, payload)
        return at, 0

    def _frame(self, opcode: int, fin: bool, payload: bytes) -> None:
        if opcode in (TEXT, BINARY):
            if self._fragments is not None:
                raise _ProtocolError(CLOSE_PROTOCOL_ERROR)  # a new message inside one
            if fin:
                self._message(opcode, payload)
            else:
                self._fragments = [payload]
                self._fragments_bytes = len(payload)
                self._fragments_opcode = opcode
                self._fragment_timer = gevent.get_hub().loop.timer(
                    FRAGMENT_TIMEOUT_SECONDS, ref=False
                )
                self._fragment_timer.start(self._fragments_late)
        elif opcode == CONTINUATION:
            if self._fragments is None:
                raise _ProtocolError(CLOSE_PROTOCOL_ERROR)
            if payload:
                self._fragments.append(payload)
                self._fragments_bytes += len(payload)
            if fin:
                parts = self._fragments
                self._drop_fragments()
                self._message(self._fragments_opcode, b"".join(parts))
        elif opcode == CLOSE:
            self._peer_closed(payload)
        elif opcode == PING:
            self.write_frame(encode_frame(payload, PONG))
        elif opcode != PONG:
            raise _ProtocolError(CLOSE_PROTOCOL_ERROR)

    def _drop_fragments(self) -> None:
        self._fragments = None
        self._fragments_bytes = 0
        if self._fragment_timer is not None:
            self._fragment_timer.stop()
            self._fragment_timer = None

    def _fragments_late(self) -> None:
        """A fragmented message was not whole in time: close."""
        if self._fragments is not None:
            self.protocol_error(CLOSE_POLICY_VIOLATION)

    def _message(self, opcode: int, payload: bytes) -> None:
        assert self.session is not None
        if opcode == BINARY:
            self.session.on_message(payload)
            return
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            raise _ProtocolError(CLOSE_INVALID_DATA) from None
        if not is_engineio_text(text):
            raise _ProtocolError(CLOSE_PROTOCOL_ERROR)  # python-engineio would raise on it
        self.session.on_message(text)

    def _peer_closed(self, payload: bytes) -> None:
        """Answer the peer's close frame with ours (its code), then end."""
        code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
        if code is not None and not (1000 <= code < 5000 and code not in UNSENDABLE_CODES):
            code = CLOSE_PROTOCOL_ERROR
        self.close(code)
        self._lost(TRANSPORT_CLOSE)

    def _ended(self) -> None:
        """The peer closed its side (or the connection broke)."""
        if self.closing:
            self.release()  # the end of our closing handshake
            return
        self._lost(TRANSPORT_CLOSE)
        self.release()

    # -- ending ----------------------------------------------------------------

    def protocol_error(self, code: int) -> None:
        """Fail the connection (RFC 6455 7.1.7) with ``code``; the session ends.

        Nothing more is read: a peer that broke the protocol or spent its
        budget may be flooding, and reading only to drop cost a core's time
        until the close timeout. The kernel stops it by flow control.
        """
        self._closing_frame(code)
        self._reader.stop()
        self._lost(TRANSPORT_ERROR)

    def close(self, code: int | None = CLOSE_NORMAL) -> None:
        """Send a close frame, then end once the peer closes too (or after a timeout)."""
        if self._closing_frame(code):
            # Read on, to see the peer's end (and drop what it still sends).
            self.paused = False
            self._reader.start(self.on_readable)

    def _closing_frame(self, code: int | None) -> bool:
        """Write our close frame and shut our side after it; False if already closing."""
        if self.closing or self.released:
            return False
        self.closing = True
        self._buffer = b""
        self._drop_fragments()
        reason = b"" if code is None else code.to_bytes(2, "big")
        self.write_frame(encode_frame(reason, CLOSE))
        self.when_flushed(self._shut_write)
        self.set_timer(CLOSE_TIMEOUT_SECONDS, self.release)
        return True

    def release(self) -> None:
        """Stop watching and close the descriptor."""
        if self.released:
            return
        self.released = True
        self.closing = True
        self._reader.stop()
        if self._timer is not None:
            self._timer.stop()
        self._drop_fragments()
        self.fail()  # nothing more goes out
        try:
            self.sock.close()
        except OSError:
            pass
        self._registry.discard(self)
        self.session = None
        DESCRIPTORS.open -= 1  # counted since chatapp.engine.websocket accepted it

    def _shut_write(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def write_failed(self) -> None:
        """The peer stopped reading (past the limit) or the connection broke."""
        if not self.released:
            self._lost(TRANSPORT_ERROR)
            self.release()

    def _lost(self, reason: str) -> None:
        if self.session is not None:
            self.session.on_lost(reason)


class EngineSocket(eio_socket.Socket):  # type: ignore[misc]
    """An Engine.IO session over a Connection: no queue, writer or ping greenlet."""

    def __init__(
        self, server: Any, sid: str, connection: Connection, overlap: bool = False
    ) -> None:
        # Not Socket.__init__: it makes the queue of a writer greenlet this
        # socket does not have. These are the attributes python-engineio reads.
        self.server = server
        self.sid = sid
        self.connection = connection
        self.overlap = overlap
        self.session: dict[str, Any] = {}
        self.last_ping: float | None = None  # when the unanswered ping went out
        self.connected = True
        self.upgrading = False
        self.upgraded = True  # HTTP requests naming this sid get a 400
        self.closing = False
        self.closed = False
        self._inbox: list[str | bytes] = []  # short: reading pauses at INBOX_LIMIT
        self._worker: gevent.Greenlet | None = None  # the greenlet taking from the inbox
        self._worker_in_event = False  # it handles an event itself (it may be waiting)
        self._overlapping: Pool | None = None  # events handed off; made at the first
        self._lost: str | None = None  # why the connection ended, once it has

    # -- from the connection (event loop callbacks) ------------------------------

    def on_message(self, data: str | bytes) -> None:
        """Queue a message from the client; start a greenlet to handle it if none runs."""
        if self.closing or self.closed:
            return
        self._inbox.append(data)
        if self._worker is None:
            self._worker = gevent.spawn(self._work)
        elif self._worker_in_event and len(self._inbox) == 1 and self._overlaps(data):
            self._hand_off()
        elif len(self._inbox) >= INBOX_LIMIT:
            self.connection.pause()

    def on_lost(self, reason: str) -> None:
        """End the session once the messages before the end are handled."""
        if self._lost is None:
            self._lost = reason
        if self._worker is None and not self.closed:
            self._worker = gevent.spawn(self._work)

    def _work(self) -> None:
        me = gevent.getcurrent()
        handed_off = False  # some events of this round run in their own greenlets
        try:
            while self._worker is me and self._inbox and not self.closed:
                data = self._inbox.pop(0)
                if not self._overlaps(data):
                    self._wait_overlapping()
                    handed_off = False
                    self._receive(data)
                elif self._inbox or handed_off:
                    # More waits behind it (or went ahead): it gets its own greenlet.
                    # Pool.spawn waits while MAX_OVERLAPPING are in flight.
                    self._pool().spawn(self._receive, data)
                    handed_off = True
                else:
                    self._worker_in_event = True
                    try:
                        self._receive(data)
                    finally:
                        if self._worker is me:
                            self._worker_in_event = False
                if self.connection.paused and len(self._inbox) < INBOX_LIMIT // 2:
                    self.connection.resume()
            if self._worker is me and self._lost is not None and not self.closed:
                self._wait_overlapping()
                self.close(wait=False, abort=True, reason=self._lost)
        finally:
            if self._worker is me:
                self._worker = None
                self._worker_in_event = False

    def _overlaps(self, data: str | bytes) -> bool:
        return self.overlap and isinstance(data, str) and data.startswith(EVENT_MESSAGE)

    def _hand_off(self) -> None:
        """Let the worker, waiting in an event, finish it alone; a new one takes the inbox.

        The waiting event already queued for the store (chatapp.stores.redis),
        so the next one, started after it, queues behind it.
        """
        pool = self._pool()
        if pool.full():
            return  # the next message waits for the worker
        assert self._worker is not None
        pool.add(self._worker)
        self._worker_in_event = False
        self._worker = gevent.spawn(self._work)

    def _pool(self) -> Pool:
        if self._overlapping is None:
            self._overlapping = Pool(MAX_OVERLAPPING)
        return self._overlapping

    def _wait_overlapping(self) -> None:
        if self._overlapping is not None:
            self._overlapping.join()

    def _receive(self, data: str | bytes) -> None:
        try:
            self.receive(eio_packet.Packet(encoded_packet=data))
        except eio_exceptions.UnknownPacketError:
            pass  # python-engineio ignores these too
        except eio_exceptions.SocketIsClosedError:
            pass
        except Exception:  # noqa: BLE001 - as python-engineio: log, then end the session
            self.server.logger.exception("Unknown receive error")
            self.on_lost(TRANSPORT_ERROR)

    # -- pings -------------------------------------------------------------------

    def start_pinging(self) -> None:
        """Send the next ping after the ping interval."""
        self.last_ping = None
        self.connection.set_timer(self.server.ping_interval, self._ping)

    def schedule_ping(self) -> None:
        """Answer a pong (python-engineio calls this for each): ping again later."""
        if self.last_ping is not None:  # a pong nobody asked for changes nothing
            self.start_pinging()

    def _ping(self) -> None:
        if self.closing or self.closed:
            return
        self.last_ping = time.time()
        self.connection.write_frame(PING_FRAME)
        self.connection.set_timer(self.server.ping_timeout, self._pong_missing)

    def _pong_missing(self) -> None:
        if self.last_ping is not None:
            self.on_lost(self.server.reason.PING_TIMEOUT)

    # -- python-engineio's interface ---------------------------------------------

    def send(self, pkt: eio_packet.Packet) -> None:
        """Write a packet to the client (at the end of this turn of the loop)."""
        if self.closed:
            return
        encoded = pkt.encode()
        if isinstance(encoded, str):
            self.connection.write_frame(text_frame(encoded))
        else:
            self.connection.write_frame(encode_frame(encoded, BINARY))

    def close(self, wait: bool = True, abort: bool = False, reason: Any = None) -> None:
        """End the session: disconnect handlers, a CLOSE packet unless aborted, the close frame."""
        if self.closed or self.closing:
            return
        self.closing = True
        self.server._trigger_event(
            "disconnect",
            self.sid,
            reason or self.server.reason.SERVER_DISCONNECT,
            run_async=False,
        )
        if not abort:
            self.send(eio_packet.Packet(eio_packet.CLOSE))
        self.closed = True
        self._inbox.clear()
        self.connection.close()
        if self.server.sockets.get(self.sid) is self:
            del self.server.sockets[self.sid]
