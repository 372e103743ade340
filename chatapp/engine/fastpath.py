"""Room broadcasts that cost one frame encoding, then one ``send`` per recipient.

python-socketio's ``Manager.emit`` encodes a broadcast once, but then hands
the packet to every recipient's Engine.IO queue; each recipient's writer
greenlet wakes, encodes the text to UTF-8 again, builds a WebSocket header
and writes it through gevent's ``sendall``. Under load that was about 60 %
of the server's time (benchmarks/README.md). Here the emitting greenlet
builds the WebSocket frame once and writes the same bytes to each
recipient's socket itself, without blocking (chatapp.engine.websocket).

python-socketio documents client managers as its extension point
(``client_manager=``); this one overrides ``emit`` and the room bookkeeping
below. A recipient gets
the frame directly only when that is indistinguishable from the queue:

- its Engine.IO socket is one of chatapp.engine.transport's sessions (which write
  every frame this way), or
- its Engine.IO socket is an open WebSocket of python-engineio's
  (``wsgi.websocket`` in the environ Engine.IO keeps for it is our
  BoundedWebSocket; a connection that began with long-polling keeps the
  polling environ, so it takes the queue) and nothing waits in its Engine.IO
  queue: frames already queued (an ack, a ping) are written by its writer
  greenlet first, so a direct write would overtake them. In that case the
  packet joins the queue, behind them.

Everything else (acks, pings, the connect packet, callbacks, binary data,
the Flask-SocketIO test client) takes python-socketio's own path.

It also keeps, for each connection, the rooms it is in. python-socketio's
``basic_disconnect`` and ``get_rooms`` find them by looking at every room of
the namespace, and every connection has a room of its own: with 10,000
connections each disconnect walked 10,000 rooms. Here both are a lookup.
tests/engine/test_library_pins.py pins the internals this relies on.
"""

from __future__ import annotations

from typing import Any

import socketio
from engineio import packet as eio_packet
from socketio import packet as sio_packet

from chatapp.engine.transport import EngineSocket
from chatapp.engine.websocket import BoundedWebSocket
from chatapp.engine.websocket import FrameWriter
from chatapp.engine.websocket import text_frame


class FastEmitManager(socketio.Manager):  # type: ignore[misc]
    """python-socketio's in-process manager with direct WebSocket broadcasts."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # (namespace, sid) -> the rooms it is in, in the order it entered them.
        self._rooms_of: dict[tuple[str, str], dict[Any, None]] = {}

    def basic_enter_room(self, sid: str, namespace: str, room: Any, eio_sid: Any = None) -> None:
        """Enter a room as python-socketio does, and note it for the connection."""
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)
        self._rooms_of.setdefault((namespace, sid), {})[room] = None

    def basic_leave_room(self, sid: str, namespace: str, room: Any) -> None:
        """Leave a room as python-socketio does, and forget it for the connection."""
        super().basic_leave_room(sid, namespace, room)
        rooms = self._rooms_of.get((namespace, sid))
        if rooms is not None:
            rooms.pop(room, None)
            if not rooms:
                del self._rooms_of[namespace, sid]

    def basic_disconnect(self, sid: str, namespace: str, **kwargs: Any) -> None:
        """Forget a connection as python-socketio 5.18 does, without the walk of all rooms."""
        for room in list(self._rooms_of.get((namespace, sid), ())):
            self.basic_leave_room(sid, namespace, room)
        self.callbacks.pop(sid, None)
        for pending in (self.pending_connect, self.pending_disconnect):
            sids = pending.get(namespace)
            if sids is not None and sid in sids:
                sids.remove(sid)
                if not sids:
                    del pending[namespace]

    def get_rooms(self, sid: str, namespace: str) -> list[Any]:
        """Return the rooms a connection is in (its own among them)."""
        return [room for room in self._rooms_of.get((namespace, sid), ()) if room is not None]

    def emit(
        self,
        event: str,
        data: Any,
        namespace: str,
        room: Any = None,
        skip_sid: Any = None,
        callback: Any = None,
        to: Any = None,
        **kwargs: Any,
    ) -> None:
        """Emit to a room (or one sid), encoding the frame once for all."""
        room = to or room
        if callback is not None or namespace not in self.rooms:
            super().emit(event, data, namespace, room, skip_sid, callback, **kwargs)
            return
        if isinstance(data, tuple):
            args = [event, *data]
        elif data is not None:
            args = [event, data]
        else:
            args = [event]
        pkt = self.server.packet_class(sio_packet.EVENT, namespace=namespace, data=args)
        encoded = pkt.encode()
        if isinstance(encoded, list):  # binary attachments: several packets
            super().emit(event, data, namespace, room, skip_sid, callback, **kwargs)
            return
        eio_pkt = eio_packet.Packet(eio_packet.MESSAGE, encoded)
        frame = text_frame("4" + encoded)
        skip = skip_sid if isinstance(skip_sid, list) else (skip_sid,)
        sockets = self.server.eio.sockets
        environs = self.server.environ
        send_eio_packet = self.server._send_eio_packet
        for sid, eio_sid in self.get_participants(namespace, room):
            if sid in skip:
                continue
            writer = _direct_writer(sockets.get(eio_sid), environs.get(eio_sid))
            if writer is not None:
                writer.write_frame(frame)
            else:
                send_eio_packet(eio_sid, eio_pkt)


def _direct_writer(eio_socket: Any, environ: Any) -> FrameWriter | None:
    """Return the writer to hand the frame to directly, or None to take the queue."""
    if eio_socket is None or eio_socket.closing or eio_socket.closed:
        return None
    if type(eio_socket) is EngineSocket:  # chatapp.engine.transport's sessions: no queue at all
        return eio_socket.connection
    websocket = environ.get("wsgi.websocket") if environ is not None else None
    if type(websocket) is not BoundedWebSocket or eio_socket.queue.qsize():
        return None
    return websocket.writer


class RedisFastEmitManager(socketio.RedisManager, FastEmitManager):  # type: ignore[misc]
    """python-socketio's Redis queue, emitting to this host's sockets through FastEmitManager.

    python-socketio documents client managers as its extension point
    (``client_manager=``). In the method order, FastEmitManager comes after
    the Redis manager and before python-socketio's Manager, so every local
    emit (those the queue brings in, and ``ignore_queue`` ones) encodes each
    frame once.
    """

    def __init__(self, url: str) -> None:
        super().__init__(url, channel="chatapp")
