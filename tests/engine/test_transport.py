"""chatapp.engine.transport on the real server: WebSocket framing, pings, closing, flow.

A hand-written client sends frames byte by byte (fragments, control
frames, protocol errors, frames written together with the handshake) and
reads exactly what comes back, so each rule of RFC 6455 and Engine.IO that
the transport implements itself is pinned here.
"""

from __future__ import annotations

import json
import os
import re
import socket
import struct
import time

import pytest
import redis
import socketio

from tests.support.liveserver import LivePerson
from tests.support.liveserver import LiveServer
from tests.support.liveserver import wait_for
from tests.support.wire import BINARY
from tests.support.wire import CLOSE
from tests.support.wire import frame
from tests.support.wire import PING
from tests.support.wire import PONG
from tests.support.wire import TEXT
from tests.support.wire import Wire

pytestmark = pytest.mark.server

LIMIT = 4096
SETTINGS = {
    "MAX_FRAME_BYTES": LIMIT,
    "SOCKETIO_PING_INTERVAL": 1,
    "SOCKETIO_PING_TIMEOUT": 1,
    "LEAVE_GRACE_SECONDS": 0.3,
    "SEND_RATE": 100000,
    "SEND_BURST": 100000,
    "CREATES_PER_MINUTE": 1000,
    "JOIN_FAILURES_PER_MINUTE": 1000,
    "JOINS_PER_MINUTE": 1000,
    "ROOMS_PER_ADDRESS": 1000,
    # These tests send bursts far past a connection's input budget on purpose.
    "INPUT_RATE": 100000,
    "INPUT_BURST": 100000,
}


@pytest.fixture(scope="module", params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def transport_server(request, tmp_path_factory):
    """One live server for the module, on each store: 4 KiB frames, 1 s pings, budgets lifted."""
    # On Redis a send waits for the store, so a connection's events overlap
    # (chatapp.engine.transport): the same rules must hold there too.
    settings = dict(SETTINGS)
    if request.param == "redis":
        settings["STORE"] = request.getfixturevalue("redis_server")
    live = LiveServer(settings, tmp_path_factory.mktemp("transport")).start()
    yield live
    live.close()


def send_packet(ack_id: int, text: str) -> str:
    return f'42/chat,{ack_id}["send",{json.dumps({"text": text})}]'


@pytest.fixture
def wires(transport_server, closing):
    """Open Wires for people; close them at teardown."""

    def open_wire(person: LivePerson, early: bytes = b"") -> Wire:
        wire = Wire(transport_server.port, person.cookie_header(), early)
        closing(wire)
        return wire

    return open_wire


@pytest.fixture
def watched_room(transport_server, live_people):
    """ada's room with bob watching through python-socketio; ada's wire is not open yet."""
    ada, bob = live_people(transport_server), live_people(transport_server)
    code = ada.create_room("ada")
    bob.join(code, "bob")
    watcher = bob.socket({"room": code})
    return code, ada, watcher


def chat_texts(client) -> list[str]:
    """The texts of the chat lines a python-socketio client got, in id order.

    python-engineio's client handles each message in a thread of its own, so
    the order it records them in is not the order they came in.
    """
    lines = {line["id"]: line for line in client.lines() if line["kind"] == "chat"}
    return [lines[i]["text"] for i in sorted(lines)]


def test_fragments_and_control_frames_between_them(wires, watched_room):
    code, ada, watcher = watched_room
    wire = wires(ada)
    wire.joined()
    packet = send_packet(1, "in three pieces").encode()
    wire.send(frame(packet[:10], fin=False))
    wire.send(frame(b"are you there?", opcode=PING))  # control frames may interleave
    assert wire.read() == (PONG, b"are you there?")
    wire.send(frame(packet[10:20], opcode=0, fin=False))
    wire.send(frame(packet[20:], opcode=0))
    assert wire.ack(1) == {"ok": True, "id": 3}
    watcher.wait_for_line(lambda m: m["text"] == "in three pieces")


def test_frames_written_with_the_handshake_are_kept(wires, watched_room):
    # The client writes its connect and a line before the server's 101 arrives.
    code, ada, watcher = watched_room
    early = frame("40/chat,") + frame(send_packet(1, "early bird"))
    wire = wires(ada, early=early)
    assert wire.ack(1) == {"ok": True, "id": 3}
    watcher.wait_for_line(lambda m: m["text"] == "early bird")


def test_a_burst_is_handled_in_order_with_nothing_lost(wires, watched_room):
    # Far more packets than the session queues before it stops reading, in
    # fewer bytes than a connection's burst (4 * MAX_FRAME_BYTES).
    code, ada, watcher = watched_room
    wire = wires(ada)
    wire.joined()
    count = 300
    wire.send(b"".join(frame(send_packet(i, f"burst {i}")) for i in range(count)))
    acks = [wire.ack(i) for i in range(count)]
    assert [a["id"] for a in acks] == list(range(3, 3 + count))
    watcher.wait_for(lambda c: len(chat_texts(c)) == count, timeout=10)
    assert chat_texts(watcher) == [f"burst {i}" for i in range(count)]


def script_calls(store_url: str, code: str, op: str, action) -> int:
    """Run ``action()``; return how many script calls of ``op`` room ``code`` had meanwhile."""
    import redis

    watcher, marker = redis.Redis.from_url(store_url), redis.Redis.from_url(store_url)
    try:
        with watcher.monitor() as monitor:
            action()
            marker.echo("end of the count")
            calls = 0
            while "end of the count" not in (command := monitor.next_command()["command"]):
                words = command.split(" ", 6)
                if words[0] == "EVALSHA" and f"{{{code}}}" in words[3] and words[5] == op:
                    calls += 1
            return calls
    finally:
        watcher.close()
        marker.close()


def test_on_redis_a_connections_lines_in_flight_share_round_trips(
    transport_server, wires, watched_room
):
    # Each line still waits for Redis, but the next ones go meanwhile.
    store = transport_server.env.get("CHATAPP_STORE")
    if store is None:
        pytest.skip("the memory store answers at once: nothing waits to overlap")
    code, ada, watcher = watched_room
    wire = wires(ada)
    wire.joined()
    count = 100

    def burst():
        wire.send(b"".join(frame(send_packet(i, f"line {i}")) for i in range(count)))
        acks = [wire.ack(i) for i in range(count)]
        assert [a["id"] for a in acks] == list(range(3, 3 + count))

    assert script_calls(store, code, "append", burst) < count / 4

    def one_by_one():
        # Each line comes while the ones before it wait for Redis, then bob's.
        pauser = redis.Redis.from_url(store)
        pauser.execute_command("CLIENT", "PAUSE", 400, "WRITE")
        pauser.close()
        wire.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(count, count + 3):
            wire.send(frame(send_packet(i, f"line {i}")))
            time.sleep(0.03)
        watcher.emit("send", {"text": "from bob"}, namespace="/chat")
        acks = [wire.ack(i) for i in range(count, count + 3)]
        assert [a["id"] for a in acks] == list(range(3 + count, 3 + count + 3))

    # The first went alone; the others queued as they came, and went together.
    assert script_calls(store, code, "append", one_by_one) == 2
    watcher.wait_for(lambda c: len(chat_texts(c)) == count + 4, timeout=10)
    expected = [f"line {i}" for i in range(count + 3)] + ["from bob"]
    assert chat_texts(watcher) == expected  # ids in the order the lines came


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        ([frame("42/chat,", rsv=4)], 1002),  # an extension bit nobody negotiated
        ([frame(b"", opcode=0x3)], 1002),  # a reserved opcode
        ([frame("more", opcode=0)], 1002),  # a continuation of nothing
        ([frame(b"x" * 126, opcode=PING)], 1002),  # a control frame over 125 bytes
        ([frame(b"", opcode=PING, fin=False)], 1002),  # a fragmented control frame
        ([frame("42/chat,", fin=False), frame("42/chat,")], 1002),  # a message inside one
        ([frame(b"4\xc3\x28")], 1007),  # not UTF-8
        ([frame("hello")], 1002),  # not an Engine.IO packet
        ([frame(b"")], 1002),
        ([frame("4" + "x" * LIMIT)], 1009),  # one frame over MAX_FRAME_BYTES
        ([frame("4" + "x" * 3000, fin=False), frame("x" * 2000, opcode=0)], 1009),
    ],
)
def test_protocol_errors_close_with_their_code_and_record_nothing(
    transport_server, wires, watched_room, frames, code
):
    _, ada, watcher = watched_room
    wire = wires(ada)
    wire.joined()
    wire.send(b"".join(frames))
    assert wire.close_code() == code
    assert wire.hung_up_within(5)
    assert transport_server.health() == 200
    assert chat_texts(watcher) == []
    assert "Traceback" not in transport_server.log_text()


def test_huge_declared_length_closes_before_the_payload(wires, watched_room):
    _, ada, _ = watched_room
    wire = wires(ada)
    wire.joined()
    wire.send(bytes([0x81, 0xFF]) + (1 << 40).to_bytes(8, "big") + os.urandom(4) + b"x" * 10)
    assert wire.close_code() == 1009


@pytest.mark.parametrize(
    ("sent", "answered"),
    [
        (struct.pack("!H", 1001) + b"going away", 1001),  # the server echoes the code
        (b"", None),
        (struct.pack("!H", 1005), 1002),  # a code that must never be sent
    ],
)
def test_closing_handshake_then_the_member_leaves(wires, watched_room, sent, answered):
    _, ada, watcher = watched_room
    wire = wires(ada)
    wire.joined()
    watcher.wait_for(lambda c: c.received("members")[-1:] == [{"members": ["bob", "ada"]}])
    wire.send(frame(sent, opcode=CLOSE))
    assert wire.close_code() == answered
    assert wire.hung_up_within(5)
    leave = watcher.wait_for_line(lambda m: m["kind"] == "leave", timeout=5)
    assert leave["name"] == "ada"


def test_a_client_that_answers_pings_stays_and_a_silent_one_is_dropped(wires, watched_room):
    code, ada, watcher = watched_room
    answering = ada.socket({"room": code})  # python-socketio answers every ping
    silent = wires(ada)  # a second tab of the same member, which never answers
    assert silent.handshake["pingInterval"] == 1000
    assert silent.handshake["pingTimeout"] == 1000
    silent.send(frame("40/chat,"))
    started = time.monotonic()
    silent.sock.settimeout(5)
    pings = 0
    while True:
        opcode, payload = silent.read()
        if opcode == TEXT and payload == b"2":
            pings += 1
        if opcode == CLOSE:
            break
    waited = time.monotonic() - started
    assert pings == 1 and 1.5 <= waited <= 4, (pings, waited)
    assert silent.hung_up_within(5)
    time.sleep(2)  # two more ping rounds for the answering tab
    assert answering.connected
    assert answering.send_line("still here")["ok"]
    watcher.wait_for_line(lambda m: m["text"] == "still here")
    assert [m["kind"] for m in watcher.lines()].count("leave") == 0


def test_binary_frames_are_dropped(wires, watched_room):
    # A binary event (its placeholder in a text frame, the attachment in a
    # binary one): the protocol has no binary data, so neither is answered.
    _, ada, watcher = watched_room
    wire = wires(ada)
    wire.joined()
    wire.send(frame('451-/chat,3["send",{"_placeholder":true,"num":0}]'))
    wire.send(frame(b"\x00\x01binary", opcode=BINARY))
    wire.send(frame(send_packet(4, "after the binary")))
    seen: list[str] = []
    wire.read_until(lambda text: seen.append(text) or text.startswith("43/chat,4["))
    assert [text for text in seen if text.startswith("43/chat,3")] == []
    watcher.wait_for(lambda c: chat_texts(c) == ["after the binary"])


def test_long_polling_and_its_upgrade_still_work(transport_server, watched_room):
    # Engine.IO's own path serves clients that start with polling and upgrade.
    code, ada, watcher = watched_room
    client = socketio.Client(reconnection=False)
    lines = []
    client.on("message", lines.append, namespace="/chat")
    client.connect(
        transport_server.url,
        headers={"Cookie": ada.cookie_header()},
        auth={"room": code},
        transports=["polling", "websocket"],
        namespaces=["/chat"],
        wait_timeout=5,
    )
    try:
        wait_for(lambda: client.transport() == "websocket")
        ack = client.call("send", {"text": "upgraded"}, namespace="/chat", timeout=5)
        assert ack["ok"]
        watcher.send_line("to the upgraded one")
        wait_for(
            lambda: (
                [m["text"] for m in lines if m["kind"] == "chat"][-1:] == ["to the upgraded one"]
            )
        )
    finally:
        client.disconnect()
        client.shutdown()
    assert chat_texts(watcher)[:1] == ["upgraded"]


def test_an_http_request_for_a_websocket_sid_is_refused(transport_server, wires, watched_room):
    _, ada, _ = watched_room
    wire = wires(ada)
    sid = wire.handshake["sid"]
    response = ada.http.get(
        f"{transport_server.url}/socket.io/?EIO=4&transport=polling&sid={sid}", timeout=5
    )
    assert response.status_code == 400
    wire.send(frame("40/chat,"))
    assert re.match(r"42/chat,\[\"joined\"", wire.read_until(lambda t: "joined" in t))
