"""chatapp.engine.websocket: frames written in order and in one write, a reader
that stops is cut off, frame limits in bytes before the frame is read.

BoundedWebSocket on socket pairs (no server), its encoding checked against
gevent-websocket's, and the limits on the real server.
"""

from __future__ import annotations

import json
import re

import gevent
import pytest
import websocket
from geventwebsocket.websocket import Header

from chatapp.engine import websocket as ws_module
from chatapp.engine.websocket import encode_frame
from chatapp.engine.websocket import text_frame
from chatapp.engine.websocket import unmask
from tests.support.liveserver import CHAT_NAMESPACE
from tests.support.liveserver import LivePerson
from tests.support.liveserver import LiveServer
from tests.support.wire import ByteStream
from tests.support.wire import read_frames

LIMIT = 2048


@pytest.fixture(scope="module")
def frame_limit_server(tmp_path_factory):
    """One live server for the module: 2 KiB frames, lines of up to 5,000 code points."""
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


@pytest.mark.server
def test_limit_counts_utf8_bytes_not_characters(frame_limit_server):
    ada = LivePerson(frame_limit_server.url)
    code = ada.create_room("ada")
    ws = raw_socket(frame_limit_server, ada)
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


@pytest.mark.server
def test_huge_frame_closes_before_it_is_read(frame_limit_server):
    ada = LivePerson(frame_limit_server.url)
    ada.create_room("ada")
    ws = raw_socket(frame_limit_server, ada)
    try:
        # Announce 100 MB and send only the start: the server must not wait
        # for the rest (nor hold it), but close at once.
        header = bytes([0x81, 0xFF]) + (100 * 1024 * 1024).to_bytes(8, "big")
        ws.sock.sendall(header + b"\x00\x00\x00\x00" + b"x" * 1000)
        assert ack_or_close(ws) is None
    finally:
        ws.shutdown()  # close() leaves the socket open once the server hung up
    assert frame_limit_server.health() == 200
    ada.close()


@pytest.mark.parametrize("length", [0, 1, 125, 126, 65535, 65536, 70000])
def test_encode_frame_matches_gevent_websocket_header(length):
    payload = b"a" * length
    stream = ByteStream(encode_frame(payload))
    header = Header.decode_header(stream)
    assert (header.fin, header.opcode, header.length, bool(header.mask)) == (True, 1, length, False)
    assert stream.data == payload


@pytest.mark.parametrize("length", [0, 1, 3, 4, 5, 100, 4097])
def test_unmask_matches_gevent_websocket(length):
    payload = bytes(range(256)) * (length // 256 + 1)
    payload = payload[:length]
    mask = b"\x12\xab\x00\xff"
    header = Header(length=length)
    header.mask = mask
    assert unmask(payload, mask) == bytes(header.unmask_payload(payload))


def test_frames_of_one_turn_go_out_in_order_in_one_write(websocket_pair):
    ws, peer = websocket_pair()
    ws.write_frame(text_frame("one"))
    ws.send("two")  # the Engine.IO writer's path
    ws.write_frame(text_frame("three"))
    gevent.sleep(0)
    assert read_frames(peer, 3) == [b"one", b"two", b"three"]


def test_a_slow_reader_gets_everything_in_order_once_writable_again(websocket_pair):
    ws, peer = websocket_pair()
    big = "x" * 60000
    count = 200  # 12 MB: far more than the socket buffers take at once
    ws_module.MAX_PENDING_BYTES, saved = 64 * 1024 * 1024, ws_module.MAX_PENDING_BYTES
    try:
        for i in range(count):
            ws.write_frame(text_frame(f"{i}:{big}"))
            if i % 10 == 0:
                gevent.sleep(0)
        reader = gevent.spawn(read_frames, peer, count)
        payloads = reader.get(timeout=10)
    finally:
        ws_module.MAX_PENDING_BYTES = saved
    assert [p.split(b":")[0] for p in payloads] == [str(i).encode() for i in range(count)]
    assert not ws.broken


def test_a_reader_that_stops_reading_is_cut_off_past_the_limit(websocket_pair):
    ws, peer = websocket_pair()
    ws_module.MAX_PENDING_BYTES, saved = 1024 * 1024, ws_module.MAX_PENDING_BYTES
    try:
        for _ in range(100):
            ws.write_frame(text_frame("y" * 60000))
            gevent.sleep(0)
    finally:
        ws_module.MAX_PENDING_BYTES = saved
    assert ws.broken


def test_close_frame_is_written_at_once(websocket_pair):
    ws, peer = websocket_pair()
    ws.write_frame(text_frame("last"))
    ws.close()  # writes the close frame; the connection ends before the turn
    data = peer.recv(100)
    assert data.startswith(text_frame("last"))
    assert data[len(text_frame("last"))] == 0x88  # FIN + close


def test_invalid_utf8_still_closes_the_websocket(websocket_pair):
    invalid = b"\x81\x82" + b"\x01\x02\x03\x04" + unmask(b"\xc3\x28", b"\x01\x02\x03\x04")
    ws, peer = websocket_pair(invalid)
    assert ws.receive() is None
    gevent.sleep(0)
    close = peer.recv(100)
    assert close[0] == 0x88 and ws.closed  # gevent-websocket 0.10 sends no close code


@pytest.mark.server
def test_frame_over_the_limit_closes_the_connection(start_server, live_people):
    # MESSAGE_MAX_LENGTH above the line's length: only the frame limit refuses it.
    server = start_server(MAX_FRAME_BYTES=2048, MESSAGE_MAX_LENGTH=5000)
    ada, bob = live_people(server), live_people(server)
    code = ada.create_room("ada")
    bob.join(code, "bob")
    ada_tab = ada.socket()

    small = "s" * 1500  # a frame under 2048 bytes goes through
    assert ada_tab.send_line(small)["ok"] is True

    acks = []
    big = "x" * 4000
    ada_tab.emit("send", {"text": big}, namespace=CHAT_NAMESPACE, callback=acks.append)
    ada_tab.wait_for(lambda c: c.disconnects and not c.connected)
    assert acks == []
    assert server.process is not None and server.process.poll() is None  # still serving

    bob_tab = bob.socket(auth={"room": code})
    (joined,) = bob_tab.received("joined")
    history = [line["text"] for line in joined["history"] if line["kind"] == "chat"]
    assert big not in history
    assert history == [small]
    assert server.health() == 200
