"""Frame limits in bytes, before the frame is read, on the real server.

Pins chatapp/websocket.py against the installed gevent-websocket.
"""

from __future__ import annotations

import json
import re

import pytest
import websocket

from tests.support.liveserver import LiveServer
from tests.support.liveserver import Person

pytestmark = pytest.mark.server

LIMIT = 2048


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    settings = {"MAX_FRAME_BYTES": LIMIT, "MESSAGE_MAX_LENGTH": 5000}
    live = LiveServer(settings, tmp_path_factory.mktemp("limits")).start()
    yield live
    live.close()


def raw_socket(server, person):
    """Open /chat over a raw WebSocket; return it after ``joined``."""
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{server.port}/socket.io/?EIO=4&transport=websocket",
        header=[f"Cookie: {person.cookie_header()}"],
        timeout=5,
    )
    assert ws.recv().startswith("0")
    ws.send("40/chat,")
    while True:
        frame = ws.recv()
        if frame.startswith('42/chat,["joined"'):
            return ws


def ack_or_close(ws):
    """Return the next ack frame, or None when the server closed the socket."""
    try:
        while True:
            frame = ws.recv()
            if not frame:
                return None
            if frame.startswith("43/chat,"):
                return json.loads(re.sub(r"^43/chat,\d+", "", frame))[0]
    except (websocket.WebSocketConnectionClosedException, ConnectionError):
        return None


def test_limit_counts_utf8_bytes_not_characters(server):
    ada = Person(server.url)
    code = ada.create_room("ada")
    ws = raw_socket(server, ada)
    try:
        small = "€" * 600  # 600 characters, 1,800 bytes: under the limit
        ws.send(f'42/chat,1["send",{{"text":"{small}"}}]')
        assert ack_or_close(ws) == {"ok": True, "id": 2}
        big = "€" * 1500  # 1,500 characters but 4,500 bytes
        ws.send(f'42/chat,2["send",{{"text":"{big}"}}]')
        assert ack_or_close(ws) is None
    finally:
        ws.shutdown()  # close() leaves the socket open once the server hung up
    history = ada.socket({"room": code}).received("joined")[0]["history"]
    assert [m["text"] for m in history if m["kind"] == "chat"] == [small]
    ada.close()


def test_huge_frame_closes_before_it_is_read(server):
    ada = Person(server.url)
    ada.create_room("ada")
    ws = raw_socket(server, ada)
    try:
        # Announce 100 MB and send only the start: the server must not wait
        # for the rest (nor hold it), but close at once.
        header = bytes([0x81, 0xFF]) + (100 * 1024 * 1024).to_bytes(8, "big")
        ws.sock.sendall(header + b"\x00\x00\x00\x00" + b"x" * 1000)
        assert ack_or_close(ws) is None
    finally:
        ws.shutdown()  # close() leaves the socket open once the server hung up
    assert server.health() == 200
    ada.close()
