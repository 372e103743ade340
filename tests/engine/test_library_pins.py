"""Pin the library internals the engine relies on (benchmarks/README.md).

chatapp/engine/ (fastpath, websocket, transport, guard, packets, runtime)
reaches past the documented APIs of python-socketio, python-engineio, gevent
and gevent-websocket in a few places. These checks read the libraries (their
versions, signatures, attributes and source text), not chatapp's behaviour,
which the other modules of tests/engine/ test; they fail first when an
upgrade moves one of them. The versions below are the ones they were checked
with.
"""

from __future__ import annotations

import inspect
from importlib.metadata import version

import engineio
import gevent
import gevent.queue
import gevent.socket
import pytest
import socketio
from geventwebsocket.websocket import WebSocket

from chatapp.engine.fastpath import FastEmitManager

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


# -- the limits (chatapp/engine/guard.py, packets.py, websocket.py) --------------------


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


def test_pywsgi_reads_headers_through_message_class():
    # ChatWebSocketHandler.MessageClass replaces the email parser: pywsgi must
    # still call it, read ``status`` and use the py3 OldMessage it returns.
    from gevent.pywsgi import OldMessage
    from gevent.pywsgi import WSGIHandler

    source = inspect.getsource(WSGIHandler.read_request)
    assert "self.headers = self.MessageClass(self.rfile, 0)" in source
    assert "if self.headers.status:" in source
    message = OldMessage()
    message._headers.append(("Content-Type", "text/plain"))
    assert message.typeheader == "text/plain" and list(message.headers) == [
        "Content-Type: text/plain\r\n"
    ]
