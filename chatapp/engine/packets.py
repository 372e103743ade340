"""Socket.IO packets from clients that python-socketio would choke on.

python-socketio raises on a packet it cannot decode (``42/chat,[``, a
binary frame nobody announced, an event whose data is not a list, a packet
type only servers send), and Engine.IO logs the exception with a traceback
at ERROR. A script can fill the log that way, and PROTOCOL.md wants such
input ignored. python-socketio takes a packet class as its ``serializer``
(its documented extension point); this one turns every such packet into an
event named MALFORMED on the app's namespace, which the namespace ignores
and counts against the connection's budget for invalid input.

Binary packets (an event or ack with attachments) are malformed too: the
protocol has no binary data, and python-socketio buffers the attachments a
packet announces, without bound, until they have all arrived (a packet
announcing 9,999,999,999 of them grew the server by 230 MB a second; python-
socketio 5.18.1 still does). Decoding one as MALFORMED announces none.
On the real server chatapp.engine.guard drops such packets before python-socketio
sees them; this class keeps the rule for every other way in (Flask-SocketIO's
test client).
"""

from __future__ import annotations

from typing import Any

from socketio import packet

MALFORMED = "\x00malformed"
FROM_CLIENTS = frozenset({packet.CONNECT, packet.DISCONNECT, packet.EVENT, packet.ACK})


class SafePacket(packet.Packet):  # type: ignore[misc]
    """A Socket.IO packet whose decoding never raises.

    A malformed packet becomes an event on ``namespace``: the one the app
    handles (``safe_packet_class`` makes the class for it).
    """

    namespace_for_malformed = "/"

    def __init__(self, *args: Any, encoded_packet: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, encoded_packet=encoded_packet, **kwargs)
        if encoded_packet is not None and not encoded_packet:
            self._malformed()  # an empty message: python-socketio skips decoding it

    def decode(self, encoded_packet: Any) -> int:
        """Decode as python-socketio does, or into a MALFORMED event."""
        try:
            super().decode(encoded_packet)
        except Exception:  # noqa: BLE001 - any undecodable input is the client's
            return self._malformed()
        if not self._well_formed():
            return self._malformed()
        return 0  # attachments: a packet that announces some is malformed

    def _well_formed(self) -> bool:
        kind, data = self.packet_type, self.data
        if kind not in FROM_CLIENTS:
            return False
        if kind == packet.EVENT:
            return isinstance(data, list) and bool(data) and isinstance(data[0], str)
        if kind == packet.ACK:
            return isinstance(data, list)
        return True

    def _malformed(self) -> int:
        self.packet_type = packet.EVENT
        self.namespace = self.namespace_for_malformed
        self.id = None
        self.data = [MALFORMED]
        return 0


def safe_packet_class(namespace: str) -> type[SafePacket]:
    """Return the SafePacket class whose malformed packets are events on ``namespace``."""
    return type("SafePacket", (SafePacket,), {"namespace_for_malformed": namespace})
