"""Delivery of a room's events to its sockets, in id order.

PROTOCOL.md: each socket receives a room's messages in increasing id order,
with no gaps or repeats, across ``joined.history`` and the live ``message``
events after it. With the memory store, recording a message and handing it
to the sockets happen under one lock per room, so two concurrent sends
(greenlets or threads) cannot hand over ids 6 and 5 in that order, and a
connecting socket takes its history snapshot and enters the room between
two deliveries, never in the middle of one. With a shared store, messages
of other processes arrive in any order anyway, and the RoomSequencer
(chatapp.delivery.sequencer) puts them all in order.
"""

from __future__ import annotations

import contextlib
import threading
import zlib
from collections.abc import Iterable
from contextlib import AbstractContextManager

from flask_socketio import SocketIO

from chatapp.delivery.sequencer import RoomSequencer
from chatapp.domain import Ended
from chatapp.domain import Message

# A fixed pool of locks, picked by the room code's hash: bounded memory and
# no clean-up, at the cost of two rooms now and then sharing a lock.
LOCK_STRIPES = 256


class Broadcaster:
    """Send room events on the ``/chat`` namespace, one room at a time."""

    def __init__(
        self, socketio: SocketIO, namespace: str, sequencer: RoomSequencer | None = None
    ) -> None:
        self.socketio = socketio
        self.namespace = namespace
        # Several processes (the Redis store) also order deliveries per host.
        self.sequencer = sequencer
        self._locks = [threading.Lock() for _ in range(LOCK_STRIPES)]
        if sequencer is not None:
            sequencer.emit_to = self._emit_to
            sequencer.deliver = self._deliver_here
            sequencer.announce = self._announce_here

    def lock(self, code: str) -> AbstractContextManager[object]:
        """Return the lock that orders room ``code``'s deliveries.

        With a shared store, the sequencer orders them (whatever order the
        store answers in), and lines sent at once share a round trip to the
        store (chatapp.stores.batching): holding a lock around each would
        send them one by one.
        """
        if self.sequencer is not None:
            return contextlib.nullcontext()
        return self._locks[zlib.crc32(code.encode()) % LOCK_STRIPES]

    def admit(self, code: str, sid: str, joined: dict[str, object], latest_id: int) -> None:
        """Put a new connection in its room and send it ``joined``, in order."""

        def enter() -> None:
            self.socketio.server.enter_room(sid, code, namespace=self.namespace)
            self._emit_to(sid, "joined", joined)

        if self.sequencer is None:
            enter()
        else:
            self.sequencer.admit(code, sid, latest_id, enter)

    def release(self, code: str, sid: str) -> None:
        """Forget a connection that left its room."""
        if self.sequencer is not None:
            self.sequencer.release(code, sid)

    def _emit_to(self, sid: str, event: str, data: object) -> None:
        # One socket lives in this process only: no need for the queue.
        self.socketio.server.emit(event, data, to=sid, namespace=self.namespace, ignore_queue=True)

    def message(self, code: str, message: Message) -> None:
        """Send a recorded message to everyone in the room.

        With a shared store, the store already sent it to the other
        processes when it recorded it: this process delivers to its own
        sockets, in id order.
        """
        if self.sequencer is None:
            self.socketio.emit("message", message.to_dict(), to=code, namespace=self.namespace)
        else:
            self.sequencer.offer(code, message)

    def notice(self, code: str, notice: Message, names: tuple[str, ...]) -> None:
        """Send a join or leave notice, then the member list it changed.

        A shared store sent both to the other processes when it recorded the
        notice; the sequencer sends the list here right after the notice.
        """
        if self.sequencer is None:
            self.message(code, notice)
            self._announce_here(code, names, [])
        else:
            self.sequencer.offer(code, notice, names)

    def here(self, event: str, data: object, code: str, skip: list[str] | None = None) -> None:
        """Send an event to this process's sockets of a room, but those in ``skip``."""
        if self.sequencer is None:
            self.socketio.emit(event, data, to=code, skip_sid=skip, namespace=self.namespace)
        else:
            self.socketio.server.emit(
                event, data, to=code, skip_sid=skip, namespace=self.namespace, ignore_queue=True
            )

    def _deliver_here(self, code: str, message: Message, skip: list[str]) -> None:
        self.here("message", message.to_dict(), code, skip or None)

    def _announce_here(self, code: str, names: tuple[str, ...], skip: list[str]) -> None:
        self.here("members", {"members": list(names)}, code, skip or None)

    def typing(self, code: str, name: str, skip: Iterable[str]) -> None:
        """Tell the room but the typist's connections that ``name`` is typing."""
        self.socketio.emit(
            "typing", {"name": name}, to=code, skip_sid=list(skip), namespace=self.namespace
        )

    def departure(self, code: str, ended: Ended) -> None:
        """Announce an ended membership and close its remaining connections."""
        if ended.notice is not None:
            self.notice(code, ended.notice, ended.members)
        for sid in ended.connections:
            self.socketio.server.disconnect(sid, namespace=self.namespace)
