"""Engine.IO sessions held to their limits: per address, in time and in input.

PROTOCOL.md, "Version 2: limits" (Input, Connections). One EngineGuard per
app stands in front of python-engineio and python-socketio, in two roles:

- As Engine.IO's ``connect``, ``message`` and ``disconnect`` handlers (it
  wraps python-socketio's, through the documented ``eio.on``), it sees every
  session of every transport: it gives each an InputBudget and counts it
  under its client address; it drops binary messages (the protocol has no
  binary data, and python-socketio would buffer attachments without bound),
  counts packets for any namespace but /chat as invalid input, and closes a
  session that sends more than CONNECTS_PER_SESSION connects; and a
  background task closes sessions that have not been connected to /chat for
  CONNECT_TIMEOUT_SECONDS.
- As WSGI middleware in front of Engine.IO, it answers a long-polling
  handshake past CONNECTIONS_PER_ADDRESS open sessions or past
  HANDSHAKES_PER_MINUTE with 429 (a WebSocket handshake is refused the same
  way before its upgrade: chatapp.engine.websocket), refuses
  polling bodies over MAX_FRAME_BYTES with 413, and spends the session's
  budget for the packets of every polling body, closing the session past
  it (429).
  python-engineio refuses an oversized body but then waits for a long-poll
  GET to carry the close packet: with none pending, the POST never got an
  answer. Here it gets 413 at once.

WebSocket frames spend the budget where they are read (chatapp.engine.transport,
and chatapp.engine.websocket for a polling session that upgraded). The guard
imports nothing of the chat: the namespace, the address of a request and
where refusals are logged are given to it.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from chatapp.engine.budget import AddressRate
from chatapp.engine.budget import InputBudget
from chatapp.engine.budget import InputPolicy

WSGIApp = Callable[[dict[str, Any], Any], Iterable[bytes]]
# Engine.IO's packet separator in a long-polling body (protocol v4).
RECORD_SEPARATOR = b"\x1e"
# Socket.IO packet types that announce binary attachments.
BINARY_TYPES = ("5", "6")
CONNECT_TYPE, DISCONNECT_TYPE = "0", "1"
RETRY_SOON = ("Retry-After", "1")
# Sessions looked at between two yields of the connect-timeout scan.
SCAN_SLICE = 500
# CONNECT packets to /chat one session may send: the page sends one, and
# one more after a refusal (chat.js). Each costs a store call and a history
# (2.7 ms measured); a client cycling connect and disconnect on one session
# is closed instead.
CONNECTS_PER_SESSION = 4


@dataclass(slots=True)
class GuardSettings:
    """The limits an EngineGuard applies (config names in PROTOCOL.md)."""

    connections_per_address: int
    handshakes_per_minute: int
    connect_timeout: float
    max_frame_bytes: int
    input: InputPolicy


class _Session(InputBudget):
    """An Engine.IO session as the guard sees it: its input budget and a little more.

    One object a session (not a budget and a record of it): there may be
    tens of thousands.
    """

    __slots__ = ("unjoined_since", "connects")

    def __init__(self, policy: InputPolicy, addr: str, now: float) -> None:
        super().__init__(policy, addr)
        self.unjoined_since: float | None = now  # since when it has no /chat connection
        self.connects = 0  # CONNECT packets to /chat so far


def plain_response(
    start_response: Any, status: str, body: str, *headers: tuple[str, str]
) -> list[bytes]:
    """Answer with a short text body: a refusal costs no template."""
    data = body.encode()
    start_response(
        status,
        [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(data))),
            *headers,
        ],
    )
    return [data]


class EngineGuard:
    """Per-session budgets, per-address caps and connect timeouts of one Engine.IO server."""

    def __init__(
        self,
        app: WSGIApp,
        settings: GuardSettings,
        namespace: str,
        address_of: Callable[[dict[str, Any]], str],
        refused: Callable[[str, str, str], None],
        path: str = "socket.io",
    ) -> None:
        self.app = app
        self.settings = settings
        self.namespace = namespace
        # environ -> the client address key, from a request's environ before
        # ProxyFix as well as after it (the WSGI handler asks before the app).
        self.address_of = address_of
        self.refused = refused  # (event, reason, address) -> the refusal log
        self.prefix = "/" + path.strip("/") + "/"
        self._sessions: dict[str, _Session] = {}
        self._per_address: dict[str, int] = {}
        self._handshakes = AddressRate(settings.handshakes_per_minute)
        self._server: Any = None  # python-socketio's Server, once installed
        self._handlers: dict[str, Callable[..., Any]] = {}
        self._scanning = False

    def install(self, socketio_server: Any) -> None:
        """Wrap python-socketio's Engine.IO handlers of ``socketio_server``."""
        self._server = socketio_server
        eio = socketio_server.eio
        for event, handler in (
            ("connect", self._on_connect),
            ("message", self._on_message),
            ("disconnect", self._on_disconnect),
        ):
            self._handlers[event] = eio.handlers[event]
            eio.on(event, handler)

    # -- what the rest of the engine asks ----------------------------------------

    def admits(self, environ: dict[str, Any]) -> bool:
        """Tell whether the client address of a handshake may open one more session.

        Past CONNECTIONS_PER_ADDRESS open at once, or HANDSHAKES_PER_MINUTE
        (a handshake costs 0.7 ms: one address opening and closing sessions
        in a loop held a core), it may not.
        """
        addr = self.address_of(environ)
        if self._per_address.get(addr, 0) >= self.settings.connections_per_address:
            reason = "connections_per_address"
        elif not self._handshakes.take(addr):
            reason = "handshakes_per_minute"
        else:
            return True
        self.refused("session_refused", reason, addr)
        return False

    def admits_handshake(self, environ: dict[str, Any]) -> bool:
        """Tell whether a WebSocket request may be upgraded (False: answer 429)."""
        if not environ.get("PATH_INFO", "").startswith(self.prefix):
            return True
        if "sid" in parse_qs(environ.get("QUERY_STRING", "")):
            return True  # a long-polling session upgrading: already counted
        return self.admits(environ)

    def refused_request(self, reason: str, environ: dict[str, Any]) -> None:
        """Log a request the HTTP server refused (malformed, or no descriptor left)."""
        self.refused("request_refused", reason, self.address_of(environ))

    def budget(self, sid: str) -> InputBudget | None:
        """Return the input budget of Engine.IO session ``sid`` (None: no such session)."""
        return self._sessions.get(sid)

    def overspent(self, budget: InputBudget) -> None:
        """Log a connection closed for spending its input budget."""
        self.refused("session_closed", "input_budget", budget.addr)

    def spend_invalid(self, sid: str) -> None:
        """Count invalid input of session ``sid``; close the session past its budget.

        A person's client never sends invalid input; a few mistakes cost
        nothing, but a script that keeps sending them is cut off (it may
        connect again, and its member is unaffected within the leave grace).
        """
        session = self._sessions.get(sid)
        if session is not None and not session.spend_invalid():
            self.refused("session_closed", "invalid_input", session.addr)
            self._server.eio.start_background_task(self._close, sid)

    # -- Engine.IO's handlers ------------------------------------------------------

    def _on_connect(self, sid: str, environ: dict[str, Any]) -> Any:
        addr = self.address_of(environ)
        self._sessions[sid] = _Session(self.settings.input, addr, time.monotonic())
        self._per_address[addr] = self._per_address.get(addr, 0) + 1
        if not self._scanning:
            self._scanning = True
            self._server.eio.start_background_task(self._close_unjoined)
        accepted = self._handlers["connect"](sid, environ)
        if accepted is not None and accepted is not True:
            self._forget(sid)  # Engine.IO drops a refused session without a disconnect
        return accepted

    def _on_message(self, sid: str, data: Any) -> Any:
        if type(data) is not str or data[:1] in BINARY_TYPES:
            self.spend_invalid(sid)  # dropped: never buffered
            return None
        if self._namespace_of(data) != self.namespace:
            self.spend_invalid(sid)
            if data[:1] != CONNECT_TYPE:
                return None  # only a CONNECT is answered (CONNECT_ERROR)
        elif data[:1] == CONNECT_TYPE and not self._may_connect(sid):
            return None
        return self._handlers["message"](sid, data)

    def _may_connect(self, sid: str) -> bool:
        session = self._sessions.get(sid)
        if session is None:
            return True
        session.connects += 1
        if session.connects <= CONNECTS_PER_SESSION:
            return True
        self.refused("session_closed", "connects_per_session", session.addr)
        self._server.eio.start_background_task(self._close, sid)
        return False

    def _on_disconnect(self, sid: str, reason: Any) -> Any:
        self._forget(sid)
        return self._handlers["disconnect"](sid, reason)

    def _forget(self, sid: str) -> None:
        session = self._sessions.pop(sid, None)
        if session is None:
            return
        left = self._per_address.get(session.addr, 1) - 1
        if left > 0:
            self._per_address[session.addr] = left
        else:
            self._per_address.pop(session.addr, None)

    @staticmethod
    def _namespace_of(data: str) -> str:
        """Return the namespace a Socket.IO packet names, as python-socketio reads it."""
        if data[1:2] != "/":
            return "/"
        end = data.find(",", 1)
        namespace = data[1:] if end < 0 else data[1:end]
        query = namespace.find("?")
        return namespace if query < 0 else namespace[:query]

    # -- connect timeout -----------------------------------------------------------

    def _close_unjoined(self) -> None:
        """Close sessions without a /chat connection for CONNECT_TIMEOUT_SECONDS.

        One task for all sessions, looking at each a few times per timeout:
        a session counts from its handshake, and again from whenever its
        /chat connection ended (refused, left, disconnected by either side).
        It ends when no session is left.
        """
        eio = self._server.eio
        manager = self._server.manager
        timeout = self.settings.connect_timeout
        while self._sessions:
            eio.sleep(timeout / 4)
            now = time.monotonic()
            expired = []
            for looked, (sid, session) in enumerate(list(self._sessions.items()), 1):
                if manager.sid_from_eio_sid(sid, self.namespace) is not None:
                    session.unjoined_since = None
                elif session.unjoined_since is None:
                    session.unjoined_since = now
                elif now - session.unjoined_since >= timeout:
                    expired.append((sid, session))
                if looked % SCAN_SLICE == 0:
                    eio.sleep(0)
            for sid, session in expired:
                self.refused("session_closed", "connect_timeout", session.addr)
                self._close(sid)
            self._handshakes.prune()
        self._scanning = False

    def _close(self, sid: str) -> None:
        socket = self._server.eio.sockets.get(sid)
        if socket is not None and not socket.closed:
            socket.close(wait=False, reason=self._server.eio.reason.SERVER_DISCONNECT)

    # -- long-polling requests (WSGI) ------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        """Hold long-polling requests to their session's limits; pass everything on."""
        if not environ.get("PATH_INFO", "").startswith(self.prefix):
            return self.app(environ, start_response)
        sid = parse_qs(environ.get("QUERY_STRING", "")).get("sid", [None])[0]
        session = self._sessions.get(sid) if sid is not None else None
        websocket = environ.get("wsgi.websocket")
        if websocket is not None:
            # A new WebSocket session was admitted before its upgrade; a
            # polling session that upgrades reads its frames with its budget.
            if session is not None:
                websocket.budget = session
                websocket.guard = self
            return self.app(environ, start_response)
        if sid is None:
            if environ.get("REQUEST_METHOD") == "GET" and not self.admits(environ):
                return plain_response(
                    start_response, "429 Too Many Requests", "Too many sessions", RETRY_SOON
                )
            return self.app(environ, start_response)
        if session is None:
            return self.app(environ, start_response)  # Engine.IO answers an unknown sid
        if environ.get("REQUEST_METHOD") != "POST":
            # A long-poll sends no packet: it waits for the server's, and in
            # a busy room a client polls as often as lines come.
            return self.app(environ, start_response)
        body = self._read_body(environ)
        if body is None:
            self.refused("session_closed", "frame_too_big", session.addr)
            self._close(sid)
            return plain_response(start_response, "413 Payload Too Large", "Payload Too Large")
        if not session.spend(len(body), body.count(RECORD_SEPARATOR) + 1):
            self.overspent(session)
            self._close(sid)
            return plain_response(start_response, "429 Too Many Requests", "Input budget spent")
        return self.app(environ, start_response)

    def _read_body(self, environ: dict[str, Any]) -> bytes | None:
        """Read a polling body of at most MAX_FRAME_BYTES for Engine.IO; None if larger."""
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return None
        if not 0 <= length <= self.settings.max_frame_bytes:
            return None
        body: bytes = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(body)
        return body
