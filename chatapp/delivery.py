"""In-order delivery of a room's messages across processes (the Redis store).

With several processes, each records lines in the shared store and publishes
them on Flask-SocketIO's Redis message queue; every process then emits them
to its own sockets. Publications from two processes can arrive in either
order, and python-socketio's queue drops a publication after two failed
tries and re-subscribes with a back-off of up to a minute after an outage.
PROTOCOL.md still wants every socket to see a room's ids in order, with no
gaps and no repeats. So each process runs a RoomSequencer per room that has
local sockets: it delivers id n+1 only after id n, holds early arrivals, and
fills what is missing from the store (after a short wait for a gap, and by a
periodic look at the room's newest id for losses nothing later reveals).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from typing import Any

import socketio

from chatapp.fastpath import FastEmitManager
from chatapp.stores.base import Message
from chatapp.stores.base import Store
from chatapp.stores.base import StoreUnavailable

log = logging.getLogger(__name__)

# How long a gap may stay open before the store is asked for what is missing.
GAP_WAIT_SECONDS = 0.25


@dataclass
class _RoomState:
    delivered: int  # every local socket of the room has every id up to this one
    sids: set[str] = field(default_factory=set)
    floors: dict[str, int] = field(default_factory=dict)  # sid -> id its history reached
    early: dict[int, dict[str, Any]] = field(default_factory=dict)  # id -> queue message
    gap_since: float | None = None


class RoomSequencer:
    """Deliver each room's ``message`` events to local sockets in id order."""

    def __init__(self, store: Store, namespace: str) -> None:
        self.store = store
        self.namespace = namespace
        self._rooms: dict[str, _RoomState] = {}
        self._lock = threading.RLock()
        self.emit_local: Callable[[dict[str, Any]], None] = lambda message: None
        self.emit_to: Callable[[str, str, Any], None] = lambda sid, event, data: None

    def admit(self, code: str, sid: str, latest_id: int, enter: Callable[[], None]) -> None:
        """Enter a socket whose history reached ``latest_id`` into the room.

        ``enter`` puts the socket in the Socket.IO room and sends it
        ``joined``; anything this process delivered past ``latest_id`` before
        then is sent to it from the store, and anything up to it that arrives
        later is not sent to it again.
        """
        with self._lock:
            state = self._rooms.get(code)
            if state is None:
                state = self._rooms[code] = _RoomState(delivered=latest_id)
            enter()
            state.sids.add(sid)
            if latest_id > state.delivered:
                state.floors[sid] = latest_id
            elif latest_id < state.delivered:
                for message in self.store.messages(code, latest_id, state.delivered):
                    self.emit_to(sid, "message", message.to_dict())

    def release(self, code: str, sid: str) -> None:
        """Forget a socket that left; forget the room with its last socket."""
        with self._lock:
            state = self._rooms.get(code)
            if state is None:
                return
            state.sids.discard(sid)
            state.floors.pop(sid, None)
            if not state.sids:
                del self._rooms[code]

    def offer(self, message: dict[str, Any]) -> None:
        """Take a ``message`` event from the queue (or from this process)."""
        code = message.get("room")
        data = message.get("data")
        payload = data[0] if isinstance(data, list) and data else data
        message_id = payload.get("id") if isinstance(payload, dict) else None
        with self._lock:
            state = self._rooms.get(code) if isinstance(code, str) else None
            if state is None or not isinstance(message_id, int):
                self.emit_local(message)  # no local socket in that room: nothing to order
                return
            if message_id <= state.delivered:
                return
            state.early[message_id] = message
            self._drain(state)
            if state.early and state.gap_since is None:
                state.gap_since = time.monotonic()

    def fill_gaps(self) -> None:
        """Fetch from the store what the queue lost or has held up too long."""
        now = time.monotonic()
        with self._lock:
            rooms = list(self._rooms.items())
        if not rooms:
            return
        try:
            latest_ids = self.store.latest_ids([code for code, _ in rooms])
            for (code, state), latest in zip(rooms, latest_ids, strict=True):
                upto = max([latest, *state.early])
                if upto <= state.delivered:
                    continue
                if state.gap_since is None:
                    state.gap_since = now
                elif now - state.gap_since >= GAP_WAIT_SECONDS:
                    log.info(
                        "filling ids %d..%d of %s from the store", state.delivered + 1, upto, code
                    )
                    self._fill(code, state, upto)
        except StoreUnavailable:
            return

    def _fill(self, code: str, state: _RoomState, upto: int) -> None:
        missing = self.store.messages(code, state.delivered, upto)
        with self._lock:
            if self._rooms.get(code) is not state:
                return
            for found in missing:
                if found.id > state.delivered and found.id not in state.early:
                    state.early[found.id] = _queue_message(code, self.namespace, found)
            # Ids the store no longer retains cannot be delivered: skip them.
            if state.early and min(state.early) > state.delivered + 1 and not missing:
                state.delivered = min(state.early) - 1
            elif missing and missing[0].id > state.delivered + 1:
                state.delivered = missing[0].id - 1
            self._drain(state)
            state.gap_since = time.monotonic() if state.early else None

    def _drain(self, state: _RoomState) -> None:
        while state.delivered + 1 in state.early:
            message = state.early.pop(state.delivered + 1)
            state.delivered += 1
            skip = [sid for sid, floor in state.floors.items() if floor >= state.delivered]
            if skip:
                message = {**message, "skip_sid": skip}
            self.emit_local(message)
        for sid in [sid for sid, floor in state.floors.items() if floor <= state.delivered]:
            del state.floors[sid]
        if not state.early:
            state.gap_since = None


def _queue_message(code: str, namespace: str, message: Message) -> dict[str, Any]:
    return {
        "method": "emit",
        "event": "message",
        "data": [message.to_dict()],
        "namespace": namespace,
        "room": code,
        "skip_sid": None,
        "callback": None,
    }


class OrderedRedisManager(socketio.RedisManager, FastEmitManager):  # type: ignore[misc]
    """Flask-SocketIO's Redis queue, with chat lines passed through a sequencer.

    python-socketio documents client managers as its extension point
    (``client_manager=``); this one overrides only where a queued emit is
    handled on each host. Each host then emits to its own sockets through
    FastEmitManager (one frame encoding per broadcast): in the method order,
    it comes after the Redis manager and before python-socketio's Manager.
    """

    def __init__(self, url: str, sequencer: RoomSequencer, namespace: str) -> None:
        super().__init__(url, channel="chatapp")
        self.sequencer = sequencer
        self.chat_namespace = namespace
        sequencer.emit_local = super()._handle_emit

    def _handle_emit(self, message: dict[str, Any]) -> None:
        if message.get("event") == "message" and message.get("namespace") == self.chat_namespace:
            self.sequencer.offer(message)
        else:
            super()._handle_emit(message)
