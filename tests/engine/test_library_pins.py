"""Pin the library internals the fast paths rely on (benchmarks/README.md).

chatapp/fastpath.py, chatapp/websocket.py, chatapp/transport.py and
chatapp/gcpolicy.py reach past the documented APIs of python-socketio,
python-engineio, gevent and gevent-websocket in a few places. These tests fail first when an upgrade
moves one of them; the versions below are the ones they were checked with.
"""

from __future__ import annotations

import gc
import inspect
import logging
import random
import types
from importlib.metadata import version

import engineio
import gevent
import gevent.queue
import gevent.socket
import pytest
import socketio
from geventwebsocket.websocket import Header
from geventwebsocket.websocket import WebSocket

from chatapp.engine import runtime as gcpolicy
from chatapp.engine import websocket as ws_module
from chatapp.engine.fastpath import FastEmitManager
from chatapp.engine.websocket import BoundedWebSocket
from chatapp.engine.websocket import encode_frame
from chatapp.engine.websocket import text_frame
from chatapp.engine.websocket import unmask
from tests.support.liveserver import LiveServer
from tests.support.liveserver import Person

CHECKED_WITH = {
    "python-socketio": "5.18.",
    "python-engineio": "4.15.",
    "gevent-websocket": "0.10.",
    "gevent": "26.",
}


@pytest.mark.parametrize(("package", "prefix"), CHECKED_WITH.items())
def test_library_versions_are_the_ones_checked(package, prefix):
    assert version(package).startswith(prefix), (
        f"{package} {version(package)}: re-check chatapp/fastpath.py and chatapp/websocket.py"
    )


# -- python-socketio / python-engineio ----------------------------------------


def test_manager_emit_signature_and_helpers():
    params = list(inspect.signature(socketio.Manager.emit).parameters)
    assert params[:8] == [
        "self",
        "event",
        "data",
        "namespace",
        "room",
        "skip_sid",
        "callback",
        "to",
    ]
    assert hasattr(socketio.Manager, "get_participants")
    assert hasattr(socketio.Server, "_send_eio_packet")
    assert "environ" in vars(socketio.Server(async_mode="threading"))
    # The Redis manager must reach FastEmitManager.emit through super().
    from chatapp.engine.fastpath import RedisFastEmitManager

    mro = RedisFastEmitManager.__mro__
    assert mro.index(socketio.PubSubManager) < mro.index(FastEmitManager)
    assert mro.index(FastEmitManager) < mro.index(socketio.Manager)


def test_engineio_socket_attributes():
    server = engineio.Server(async_mode="gevent")
    sock = engineio.socket.Socket(server, "sid")
    assert isinstance(sock.queue, gevent.queue.JoinableQueue)
    assert sock.closing is False and sock.closed is False
    assert isinstance(server.sockets, dict)
    # A queued packet is taken by the writer greenlet, which does not yield
    # between taking it and writing it: qsize() == 0 means nothing waits.
    source = inspect.getsource(engineio.socket.Socket._websocket_handler)
    assert "packets = self.poll()" in source and "ws.send(pkt.encode())" in source


def test_engineio_drives_a_socket_through_what_engine_socket_provides():
    # chatapp.engine.transport.EngineSocket skips Socket.__init__ (no queue) and sets
    # the attributes below itself; python-engineio's server reads these.
    base = inspect.getsource(engineio.base_socket.BaseSocket.__init__)
    for name in ("sid", "queue", "last_ping", "connected", "upgrading", "upgraded", "closing"):
        assert f"self.{name} =" in base
    assert "self.closed =" in base and "self.session =" in base
    receive = inspect.getsource(engineio.socket.Socket.receive)
    assert "self.schedule_ping()" in receive  # on every PONG
    assert "self.server._trigger_event('message', self.sid, pkt.data" in receive
    disconnect = inspect.getsource(engineio.Server.disconnect)
    assert "socket.close(reason=self.reason.SERVER_DISCONNECT)" in disconnect
    # The OPEN packet the transport writes has the fields python-engineio's has.
    connect = inspect.getsource(engineio.Server._handle_connect)
    for field in ("'sid'", "'upgrades'", "'pingTimeout'", "'pingInterval'", "'maxPayload'"):
        assert field in connect
    assert "ping_interval_grace_period" in connect
    # python-socketio initializes its manager on the first Engine.IO connect.
    assert "self.manager.initialize()" in inspect.getsource(socketio.Server._handle_eio_connect)


def test_pywsgi_lets_go_of_a_detached_connection():
    # ChatWebSocketHandler.detach sets socket = None: pywsgi's request loop
    # then stops, and its clean-up (read out, close) skips the socket.
    from gevent.pywsgi import WSGIHandler
    from geventwebsocket.handler import WebSocketHandler

    handle = inspect.getsource(WSGIHandler.handle)
    assert "while self.socket is not None:" in handle
    assert "if self.socket is not None:" in handle
    assert "if not self.websocket.closed:" in inspect.getsource(WebSocketHandler.run_websocket)
    assert callable(gevent.socket.socket.detach)
    assert "if self.close_connection:" in inspect.getsource(WSGIHandler.handle_one_request)


class _FakeHandler:
    logger = logging.getLogger(__name__)
    server = types.SimpleNamespace(application=None)

    def __init__(self, sock):
        self.socket = sock


class _Stream:
    """What gevent-websocket reads from: here, bytes given in advance."""

    def __init__(self, data=b""):
        self.data = data

    def read(self, n):
        chunk, self.data = self.data[:n], self.data[n:]
        return chunk

    def write(self, data):
        raise AssertionError("frames must go through write_frame")


@pytest.fixture
def websocket_pair():
    """Make BoundedWebSockets on one end of socket pairs; close them afterwards."""
    opened = []

    def make(incoming=b""):
        ours, theirs = gevent.socket.socketpair()
        opened.extend((ours, theirs))
        return BoundedWebSocket({}, _Stream(incoming), _FakeHandler(ours), 65536), theirs

    yield make
    for sock in opened:
        sock.close()


def _read_frames(sock, count):
    """Read ``count`` unmasked frames from ``sock``; return their payloads."""
    buffer = b""
    payloads = []
    while len(payloads) < count:
        while True:
            parsed = _parse(buffer)
            if parsed is None:
                break
            payload, buffer = parsed
            payloads.append(payload)
        if len(payloads) < count:
            chunk = sock.recv(1 << 20)
            assert chunk, "closed early"
            buffer += chunk
    return payloads


def _parse(buffer):
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


def test_fast_emit_writes_frames_directly_and_queues_behind_waiting_packets(websocket_pair):
    server = socketio.Server(async_mode="gevent", client_manager=FastEmitManager())
    direct, direct_peer = websocket_pair()
    behind, behind_peer = websocket_pair()
    for eio_sid, websocket in (("e1", direct), ("e2", behind)):
        server.eio.sockets[eio_sid] = engineio.socket.Socket(server.eio, eio_sid)
        server.environ[eio_sid] = {"wsgi.websocket": websocket}
        server.manager.enter_room(eio_sid + "s", "/chat", None, eio_sid=eio_sid)
        server.manager.enter_room(eio_sid + "s", "/chat", "ROOM")
    waiting = engineio.packet.Packet(engineio.packet.MESSAGE, "earlier")
    server.eio.sockets["e2"].queue.put(waiting)

    server.emit("message", {"id": 1}, to="ROOM", namespace="/chat")
    gevent.sleep(0)  # the end of this turn writes the batches

    assert _read_frames(direct_peer, 1) == [b'42/chat,["message",{"id":1}]']
    queued = server.eio.sockets["e2"].queue
    assert [queued.get_nowait().encode() for _ in range(2)] == [
        "4earlier",
        '42/chat,["message",{"id":1}]',
    ]


def _manager_state(manager):
    return {
        namespace: {room: dict(members) for room, members in rooms.items()}
        for namespace, rooms in manager.rooms.items()
    }


def test_room_index_keeps_python_socketios_state():
    # The same operations on python-socketio's Manager and on FastEmitManager
    # leave the same rooms, and get_rooms answers the same, without a walk.
    stock, ours = socketio.Manager(), FastEmitManager()
    for manager in (stock, ours):
        socketio.Server(async_mode="threading", client_manager=manager)
    rng = random.Random(7)
    connected: set[tuple[str, str]] = set()
    for step in range(3000):
        namespace = rng.choice(["/chat", "/other"])
        sid = f"s{rng.randrange(40)}"
        room = rng.choice(["ABCD", "EFGH", "IJKL"])
        op = rng.random()
        for manager in (stock, ours):
            if (namespace, sid) not in connected:
                manager.basic_enter_room(sid, namespace, None, eio_sid="e" + sid)
                manager.basic_enter_room(sid, namespace, sid, eio_sid="e" + sid)
            elif op < 0.5:
                manager.basic_enter_room(sid, namespace, room)
            elif op < 0.8:
                manager.basic_leave_room(sid, namespace, room)
            else:
                manager.pre_disconnect(sid, namespace)
                manager.basic_disconnect(sid, namespace)
        if (namespace, sid) not in connected:
            connected.add((namespace, sid))
        elif op >= 0.8:
            connected.discard((namespace, sid))
        assert _manager_state(ours) == _manager_state(stock), step
        assert sorted(ours.get_rooms(sid, namespace)) == sorted(stock.get_rooms(sid, namespace))
        assert ours.pending_disconnect == stock.pending_disconnect
    assert ours._rooms_of.keys() == connected


# -- gevent / gevent-websocket ------------------------------------------------


def test_gevent_socket_wraps_a_nonblocking_stdlib_socket():
    ours, theirs = gevent.socket.socketpair()
    with ours, theirs:
        assert ours._sock.gettimeout() == 0.0  # _sock.send never blocks
        assert ours._sock.send(b"x") == 1
        assert theirs.recv(1) == b"x"
    assert callable(gevent.get_hub().loop.run_callback)


def test_gevent_websocket_read_path_calls_what_we_override():
    source = inspect.getsource(WebSocket.read_message)
    assert "self.read_frame()" in source
    assert "self.validate_utf8(" in source and "self._decode_bytes(message)" in source
    assert "self.send_frame(" in inspect.getsource(WebSocket.close)
    assert "self.send_frame(" in inspect.getsource(WebSocket.send)
    assert "__del__" in vars(WebSocket)  # why upgrade_connection disarms the stock one


@pytest.mark.parametrize("length", [0, 1, 125, 126, 65535, 65536, 70000])
def test_encode_frame_matches_gevent_websocket_header(length):
    payload = b"a" * length
    stream = _Stream(encode_frame(payload))
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
    assert _read_frames(peer, 3) == [b"one", b"two", b"three"]


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
        reader = gevent.spawn(_read_frames, peer, count)
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


# -- gc --------------------------------------------------------------------


def test_gc_policy_freezes_and_takes_over_full_collections():
    before = gc.get_threshold()
    try:
        task = gcpolicy.schedule_full_collections(3600)
        assert task is not None
        assert gc.get_threshold()[2] == gcpolicy.NEVER
        assert gc.get_freeze_count() > 0
        task.kill()
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
    assert gcpolicy.schedule_full_collections(0) is None


# -- the real server -----------------------------------------------------------


@pytest.mark.server
def test_broadcast_reaches_every_member_in_order(tmp_path):
    live = LiveServer({}, tmp_path).start()
    try:
        people = [Person(live.url) for _ in range(4)]
        code = people[0].create_room("p0")
        for i, person in enumerate(people[1:], 1):
            person.join(code, f"p{i}")
        clients = [person.socket({"room": code}) for person in people]
        for n in range(30):
            clients[n % 4].send_line(f"line {n}")
        for client in clients:
            client.wait_for(lambda c: sum(1 for m in c.lines() if m["kind"] == "chat") == 30)
            chat = [m for m in client.lines() if m["kind"] == "chat"]
            assert [m["text"] for m in chat] == [f"line {n}" for n in range(30)]
            ids = [m["id"] for m in client.lines()]
            assert ids == sorted(ids) and len(ids) == len(set(ids))
        for client in clients:
            client.close()
    finally:
        live.close()


# -- the limits (chatapp/guard.py, chatapp/packets.py, chatapp/websocket.py) ----------


def test_python_socketio_still_buffers_the_attachments_a_packet_announces():
    # The hole chatapp.engine.packets.SafePacket closes (python-socketio 5.18.1):
    # its own Packet takes any count of attachments and keeps each one it is
    # given until the count is reached. If this fails, upstream bounds it now.
    pkt = socketio.packet.Packet(encoded_packet='59999999999-/chat,["send",{"num":0}]')
    assert pkt.attachment_count == 9999999999
    for _ in range(3):
        assert not pkt.add_attachment(b"x" * 1000)
    assert len(pkt.attachments) == 3
    assert "self._binary_packet[eio_sid] = pkt" in inspect.getsource(
        socketio.Server._handle_eio_message
    )


def test_the_engineio_handlers_the_guard_wraps():
    # chatapp.engine.guard replaces these through eio.on() and calls what it replaced;
    # it asks the manager which sessions are connected to /chat.
    server = socketio.Server(async_mode="threading", namespaces=["/chat"])
    assert set(server.eio.handlers) == {"connect", "message", "disconnect"}
    assert "self.namespaces == '*' or namespace in self.namespaces" in inspect.getsource(
        socketio.Server._handle_connect
    )
    assert server.manager.sid_from_eio_sid("nobody", "/chat") is None


def test_pywsgi_sets_the_application_only_once_the_headers_are_in():
    # ChatWebSocketHandler reads its settings from the server's application,
    # and cancels the header timeout in read_request.
    from gevent.pywsgi import WSGIHandler

    source = inspect.getsource(WSGIHandler.handle_one_request)
    assert source.index("self.read_request(") < source.index(
        "self.application = self.server.application"
    )
    assert "except socket.error" in source  # a BaseException passes through
