"""A WebSocket client spoken frame by frame, for tests of the real server.

python-socketio's client only sends well-formed frames; these tests need
fragments, control frames, protocol errors, frames written with the
handshake, a frame a byte at a time, and connections from any loopback
address (no fixtures here).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def frame(payload: bytes | str, opcode: int = TEXT, fin: bool = True, rsv: int = 0) -> bytes:
    """One masked client frame (RFC 6455 5.2)."""
    if isinstance(payload, str):
        payload = payload.encode()
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    length = len(payload)
    if length < 126:
        head += bytes([0x80 | length])
    elif length < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", length)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", length)
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class HandshakeRefused(Exception):
    """The server answered the WebSocket handshake with ``status``, not 101."""

    def __init__(self, status: int, head: bytes) -> None:
        super().__init__(status, head)
        self.status = status


class Wire:
    """A WebSocket to the server spoken frame by frame.

    ``cookie``: the session's Cookie header; ``early``: bytes written with
    the handshake, before the 101 arrives; ``source``: the local address to
    connect from (any 127.x.y.z is loopback: a client address of its own);
    ``sid``: upgrade that long-polling session instead of opening one (the
    probe and the upgrade packet are left to the caller). Raise
    HandshakeRefused when the server does not upgrade.
    """

    def __init__(
        self,
        port: int,
        cookie: str = "",
        early: bytes = b"",
        source: str | None = None,
        timeout: float = 5.0,
        sid: str | None = None,
    ) -> None:
        self.sock = socket.create_connection(
            ("127.0.0.1", port), timeout=timeout, source_address=(source, 0) if source else None
        )
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            "GET /socket.io/?EIO=4&transport=websocket"
            + (f"&sid={sid}" if sid else "")
            + " HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            + (f"Cookie: {cookie}\r\n" if cookie else "")
            + "\r\n"
        )
        self.sock.sendall(request.encode() + early)  # early: frames sent before the 101
        self.buffer = b""
        try:
            while b"\r\n\r\n" not in self.buffer:
                self.buffer += self._recv()
        except BaseException:
            self.sock.close()
            raise
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 101"):
            self.sock.close()
            raise HandshakeRefused(int(head.split(b" ", 2)[1]), head)
        if sid is not None:
            self.handshake = {"sid": sid}
            return
        opcode, payload = self.read()
        assert opcode == TEXT and payload.startswith(b"0{"), payload
        self.handshake = json.loads(payload[1:])

    def _recv(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError
        return data

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self) -> tuple[int, bytes]:
        """The next frame from the server: (opcode, payload); EOFError when it hung up."""
        while True:
            if len(self.buffer) >= 2:
                length, start = self.buffer[1] & 0x7F, 2
                if length == 126 and len(self.buffer) >= 4:
                    length, start = struct.unpack("!H", self.buffer[2:4])[0], 4
                elif length == 127 and len(self.buffer) >= 10:
                    length, start = struct.unpack("!Q", self.buffer[2:10])[0], 10
                if length < 126 or start > 2:
                    if len(self.buffer) >= start + length:
                        opcode = self.buffer[0] & 0x0F
                        payload = self.buffer[start : start + length]
                        self.buffer = self.buffer[start + length :]
                        return opcode, payload
            self.buffer += self._recv()

    def read_until(self, predicate, timeout: float = 5.0):
        """Read text frames (answering Engine.IO pings) until ``predicate(text)``; return it."""
        self.sock.settimeout(timeout)
        while True:
            opcode, payload = self.read()
            if opcode != TEXT:
                continue
            text = payload.decode()
            if text == "2":
                self.send(frame("3"))
                continue
            if predicate(text):
                return text

    def joined(self, code: str | None = None) -> dict:
        """Connect to /chat (room ``code``); return ``joined`` once the CONNECT packet is in."""
        auth = json.dumps({"room": code}) if code is not None else ""
        self.send(frame("40/chat," + auth))
        text = self.read_until(lambda t: t.startswith('42/chat,["joined"'))
        self.read_until(lambda t: t.startswith("40/chat,"))
        return json.loads(text[len("42/chat,") :])[1]

    def ack(self, ack_id: int) -> dict:
        prefix = f"43/chat,{ack_id}"
        text = self.read_until(lambda t: t.startswith(prefix + "["))
        return json.loads(text[len(prefix) :])[0]

    def close_code(self, timeout: float = 5.0) -> int | None:
        """Read until the server's close frame; return its code (None: none given)."""
        self.sock.settimeout(timeout)
        while True:
            opcode, payload = self.read()
            if opcode == CLOSE:
                return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None

    def hung_up_within(self, seconds: float) -> bool:
        """Tell whether the server closes the TCP connection within ``seconds``."""
        self.sock.settimeout(seconds)
        try:
            while True:
                self._recv()
        except EOFError:
            return True
        except TimeoutError:
            return False
        except OSError:
            return True

    def close(self) -> None:
        self.sock.close()


def read_frames(sock: socket.socket, count: int) -> list[bytes]:
    """Read ``count`` unmasked (server) frames from ``sock``; return their payloads."""
    buffer = b""
    payloads: list[bytes] = []
    while len(payloads) < count:
        while True:
            parsed = parse_frame(buffer)
            if parsed is None:
                break
            payload, buffer = parsed
            payloads.append(payload)
        if len(payloads) < count:
            chunk = sock.recv(1 << 20)
            assert chunk, "closed early"
            buffer += chunk
    return payloads


def parse_frame(buffer: bytes) -> tuple[bytes, bytes] | None:
    """Split one unmasked frame off ``buffer``: ``(payload, rest)``, or None when incomplete."""
    if len(buffer) < 2:
        return None
    length, start = buffer[1] & 0x7F, 2
    if length == 126:
        length, start = int.from_bytes(buffer[2:4], "big"), 4
    elif length == 127:
        length, start = int.from_bytes(buffer[2:10], "big"), 10
    if len(buffer) < start + length:
        return None
    return buffer[start : start + length], buffer[start + length :]


class ByteStream:
    """A stream gevent-websocket reads from: here, bytes given in advance."""

    def __init__(self, data: bytes = b"") -> None:
        self.data = data

    def read(self, n: int) -> bytes:
        chunk, self.data = self.data[:n], self.data[n:]
        return chunk

    def write(self, data: bytes) -> None:
        raise AssertionError("frames must go through write_frame")
