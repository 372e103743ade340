"""A raw Engine.IO v4 / Socket.IO v5 client over one WebSocket (no fixtures here).

python-socketio's client only ever sends well-formed packets; an attacker
does not. ``RawSocket`` speaks the frames by hand with ``websocket-client``
so tests can send anything (malformed packets, binary attachments, events of
any shape) and read exactly what the server answers. It is synchronous and
works the same in threads and in gevent greenlets (the soak script).

Frames: ``0{...}`` open, ``2``/``3`` ping/pong, ``40/chat,{auth}`` connect,
``44/chat,{...}`` connect error, ``42/chat,N["event",...]`` event (with ack
id ``N``), ``43/chat,N[...]`` ack, ``41/chat,`` namespace disconnect.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import websocket

from tests.support.liveserver import LivePerson

CHAT = "/chat"


class Closed(Exception):
    """The server closed the WebSocket."""


class RawSocket:
    """One WebSocket to a chatapp server, spoken to frame by frame."""

    def __init__(
        self,
        base_url: str,
        cookie: str | None = None,
        origin: str | None = None,
        timeout: float = 5.0,
        query: str = "EIO=4&transport=websocket",
        headers: list[str] | None = None,
    ) -> None:
        url = base_url.replace("http://", "ws://", 1).rstrip("/") + "/socket.io/?" + query
        options: dict[str, Any] = {"timeout": timeout, "enable_multithread": True}
        header = list(headers or [])
        if cookie:
            header.append(f"Cookie: {cookie}")
        options["header"] = header
        # websocket-client sends an Origin of its own unless told otherwise.
        options["suppress_origin"] = origin is None
        if origin is not None:
            options["origin"] = origin
        self.ws = websocket.create_connection(url, **options)
        self.timeout = timeout
        self.events: list[tuple[str, Any]] = []  # (event, first argument) in arrival order
        self.acks: dict[int, Any] = {}
        self.frames: list[str | bytes] = []  # every frame but pings, raw
        self.closed = False
        self.namespace_closed = False
        self._next_ack = 0
        opening = self._recv_frame()
        if not isinstance(opening, str) or not opening.startswith("0"):
            raise AssertionError(f"no Engine.IO open packet: {opening!r}")
        self.handshake = json.loads(opening[1:])

    # -- sending -----------------------------------------------------------------

    def send_text(self, frame: str) -> None:
        """Send one text frame as is."""
        self.ws.send(frame)

    def send_binary(self, frame: bytes) -> None:
        """Send one binary frame as is."""
        self.ws.send_binary(frame)

    def connect(self, auth: Any = None, namespace: str = CHAT) -> tuple[str, Any]:
        """Connect to ``namespace``; return ``("connect", data)`` or ``("connect_error", data)``."""
        body = "" if auth is None else json.dumps(auth, separators=(",", ":"))
        self.send_text(f"40{namespace},{body}")
        found = self.read_until(lambda: self._connect_answer(namespace))
        return found

    def _connect_answer(self, namespace: str) -> tuple[str, Any] | None:
        for frame in self.frames:
            if not isinstance(frame, str):
                continue
            for kind, name in (("40", "connect"), ("44", "connect_error")):
                prefix = f"{kind}{namespace},"
                if frame.startswith(prefix):
                    rest = frame[len(prefix) :]
                    return name, json.loads(rest) if rest else None
        return None

    def emit(self, event: str, *args: Any, ack: bool = False) -> int | None:
        """Send an event on /chat; with ``ack``, ask for an acknowledgement; return its id."""
        ack_id = None
        if ack:
            ack_id = self._next_ack
            self._next_ack += 1
        body = json.dumps([event, *args], separators=(",", ":"), ensure_ascii=False)
        self.send_text(f"42{CHAT},{'' if ack_id is None else ack_id}{body}")
        return ack_id

    def call(self, event: str, *args: Any, timeout: float | None = None) -> Any:
        """Emit with an acknowledgement and wait for it; return the ack's first argument."""
        ack_id = self.emit(event, *args, ack=True)
        assert ack_id is not None
        self.read_until(lambda: ack_id in self.acks, timeout)
        return self.acks[ack_id]

    # -- receiving ---------------------------------------------------------------

    def _recv_frame(self) -> str | bytes:
        try:
            opcode, data = self.ws.recv_data()
        except websocket.WebSocketConnectionClosedException as error:
            self.closed = True
            raise Closed() from error
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            self.closed = True
            raise Closed()
        if opcode == websocket.ABNF.OPCODE_TEXT:
            return data.decode("utf-8") if isinstance(data, bytes) else data
        return data

    def pump(self) -> None:
        """Read one frame (answering pings) and record it; raise Closed or a timeout."""
        frame = self._recv_frame()
        if frame == "2":
            self.send_text("3")
            return
        self.frames.append(frame)
        if not isinstance(frame, str):
            return
        if frame.startswith("1"):
            self.closed = True
            raise Closed()
        prefix = f"4{{}}{CHAT},"
        if frame.startswith(prefix.format(2)):
            name, *args = json.loads(frame[len(prefix.format(2)) :])
            self.events.append((name, args[0] if len(args) == 1 else args))
        elif frame.startswith(prefix.format(3)):
            rest = frame[len(prefix.format(3)) :]
            bracket = rest.index("[")
            self.acks[int(rest[:bracket])] = (json.loads(rest[bracket:]) or [None])[0]
        elif frame.startswith(f"41{CHAT},"):
            self.namespace_closed = True

    def read_until(self, predicate: Callable[[], Any], timeout: float | None = None) -> Any:
        """Read frames until ``predicate()`` is truthy; return it (AssertionError on timeout)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            found = predicate()
            if found:
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"not seen within the timeout; frames: {self.frames[-5:]!r}")
            self.ws.settimeout(remaining)
            try:
                self.pump()
            except websocket.WebSocketTimeoutException:
                pass

    def read_for(self, seconds: float) -> None:
        """Read whatever arrives for ``seconds`` (stops early if the server closes)."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            self.ws.settimeout(remaining)
            try:
                self.pump()
            except websocket.WebSocketTimeoutException:
                return

    def is_closed_within(self, seconds: float) -> bool:
        """Tell whether the server closes the WebSocket (or the namespace) within ``seconds``."""
        try:
            self.read_for(seconds)
        except (Closed, OSError):
            return True
        return self.closed or self.namespace_closed

    def received(self, event: str) -> list[Any]:
        """The payloads of ``event`` received so far."""
        return [payload for name, payload in self.events if name == event]

    def close(self) -> None:
        """Close the WebSocket (never raises)."""
        try:
            self.ws.close(timeout=0.5)
        except Exception:  # noqa: BLE001 - teardown
            pass
        finally:
            self.ws.shutdown()


def chat_room(
    server: Any, closing: Callable[[Any], None], names: Any = ("ada", "bob"), timeout: float = 5.0
) -> tuple[str, list[Any], list[RawSocket]]:
    """People in one new room of a live server, each with one raw socket.

    Return ``(code, people, sockets)``; every socket has its ``joined``, and
    ``closing`` gets everything to close at teardown.
    """
    people, sockets = [], []
    code = None
    for name in names:
        person = LivePerson(server.url)
        closing(person)
        if code is None:
            code = person.create_room(name)
        else:
            person.join(code, name)
        sock = RawSocket(server.url, cookie=person.cookie_header(), timeout=timeout)
        closing(sock)
        assert sock.connect({"room": code})[0] == "connect"
        sock.read_until(lambda s=sock: s.received("joined"))
        people.append(person)
        sockets.append(sock)
    return code, people, sockets
