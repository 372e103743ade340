"""Room broadcasts that cost one frame encoding, then one ``send`` per recipient.

python-socketio's ``Manager.emit`` encodes a broadcast once, but then hands
the packet to every recipient's Engine.IO queue; each recipient's writer
greenlet wakes, encodes the text to UTF-8 again, builds a WebSocket header
and writes it through gevent's ``sendall``. Under load that was about 60 %
of the server's time (benchmarks/README.md). Here the emitting greenlet
builds the WebSocket frame once and writes the same bytes to each
recipient's socket itself, without blocking (chatapp.websocket).

python-socketio documents client managers as its extension point
(``client_manager=``); this one overrides ``emit`` only. A recipient gets
the frame directly only when that is indistinguishable from the queue:

- its Engine.IO socket is an open WebSocket (``wsgi.websocket`` in the
  environ Engine.IO keeps for it is our BoundedWebSocket; a connection that
  began with long-polling keeps the polling environ, so it takes the queue);
- nothing waits in its Engine.IO queue: frames already queued (an ack, a
  ping) are written by its writer greenlet first, so a direct write would
  overtake them. In that case the packet joins the queue, behind them.

Everything else (acks, pings, the connect packet, callbacks, binary data,
the Flask-SocketIO test client) takes python-socketio's own path.
tests/test_perf_internals.py pins the internals this relies on.
"""

from __future__ import annotations

from typing import Any

import socketio
from engineio import packet as eio_packet
from socketio import packet as sio_packet

from chatapp.websocket import BoundedWebSocket
from chatapp.websocket import text_frame


class FastEmitManager(socketio.Manager):  # type: ignore[misc]
    """python-socketio's in-process manager with direct WebSocket broadcasts."""

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
            websocket = _direct_websocket(sockets.get(eio_sid), environs.get(eio_sid))
            if websocket is not None:
                websocket.write_frame(frame)
            else:
                send_eio_packet(eio_sid, eio_pkt)


def _direct_websocket(eio_socket: Any, environ: Any) -> BoundedWebSocket | None:
    """Return the WebSocket to write to directly, or None to take the queue."""
    if eio_socket is None or environ is None or eio_socket.closing or eio_socket.closed:
        return None
    websocket = environ.get("wsgi.websocket")
    if type(websocket) is not BoundedWebSocket or eio_socket.queue.qsize():
        return None
    return websocket
