"""In-order delivery of a room's messages across processes (the Redis store).

With several processes, each records lines in the shared store, and the
store's script publishes every message it records, in the same round trip,
to the other processes whose sockets are in that room (chatapp.stores.redis);
the recording process delivers to its own sockets at once. Publications from
two processes can arrive in either order, and a process misses what is
published while it reconnects after an outage. PROTOCOL.md still wants every
socket to see a room's ids in order, with no gaps and no repeats. So each
process runs a RoomSequencer per room that has local sockets: it delivers id
n+1 only after id n, holds early arrivals, and fills what is missing from the
store (after a short wait for a gap, and by a periodic look at the room's
newest id for losses nothing later reveals).

The member list travels with the join or leave notice that changed it, and
goes out right after it; a notice filled from the store comes without one,
so the list is read from the store then. A list never replaces a newer one:
each is as of a message id, and an older one is dropped.
Everything else that crosses processes (typing, disconnecting a socket of
another process) goes through python-socketio's Redis queue.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from chatapp.domain import Message
from chatapp.stores.base import SharedStore
from chatapp.stores.base import Store
from chatapp.stores.base import StoreUnavailable

log = logging.getLogger(__name__)

# How long a gap may stay open before the store is asked for what is missing.
GAP_WAIT_SECONDS = 0.25
# Waits between attempts to listen again after the store went away.
LISTEN_RETRY_SECONDS = (0.1, 0.5, 1.0, 2.0, 5.0)

# Deliver a room's message to its local sockets, but those listed (their
# history already held it).
Deliver = Callable[[str, Message, list[str]], None]
# The names present in a room: from a notice, or read from the store.
Names = tuple[str, ...]
# Send a room's member list to its local sockets, but those listed.
Announce = Callable[[str, Names, list[str]], None]


def _every_room(code: str) -> bool:
    return True


def _no_room(code: str) -> bool:
    return False


@dataclass
class _RoomState:
    delivered: int  # every local socket of the room has every id up to this one
    sids: set[str] = field(default_factory=set)
    floors: dict[str, int] = field(default_factory=dict)  # sid -> id its history reached
    # Waiting for a smaller id, each with the member list it changed (if known).
    early: dict[int, tuple[Message, Names | None]] = field(default_factory=dict)
    gap_since: float | None = None
    names: Names | None = None  # the member list announced last
    listed: int = 0  # the id the last announced list is as of
    list_owed: bool = False  # a notice went out without its list: read it from the store


class RoomSequencer:
    """Deliver each room's messages to local sockets in id order."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._rooms: dict[str, _RoomState] = {}
        self._lock = threading.RLock()
        self._poll_requested = False
        self.deliver: Deliver = lambda code, message, skip: None
        self.announce: Announce = lambda code, names, skip: None
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
            missed: list[Message] = []
            if state is not None and latest_id < state.delivered:
                # Read first: if the store fails, the socket entered nothing.
                missed = self.store.messages(code, latest_id, state.delivered)
            enter()
            if state is None:
                state = self._rooms[code] = _RoomState(delivered=latest_id, listed=latest_id)
            state.sids.add(sid)
            if latest_id > state.delivered:
                state.floors[sid] = latest_id
            for message in missed:
                self.emit_to(sid, "message", message.to_dict())
            # Its ``joined`` listed the members as of ``latest_id``.
            if state.names is not None and state.listed > latest_id:
                self.emit_to(sid, "members", {"members": list(state.names)})

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

    def offer(self, code: str, message: Message, members: Names | None = None) -> None:
        """Take a recorded message of room ``code`` (from this process or another).

        ``members``: the member list a join or leave notice changed, announced
        right after the notice.
        """
        with self._lock:
            state = self._rooms.get(code)
            if state is None or message.id <= state.delivered:
                return  # no local socket in that room, or already delivered
            state.early[message.id] = (message, members)
            self._drain(code, state)
            if state.early and state.gap_since is None:
                state.gap_since = time.monotonic()
            owed = state.list_owed
        if owed:
            self._announce_from_store(code)

    def poll_soon(self) -> None:
        """Ask the next ``fill_gaps`` to look at every room's newest id (after an outage)."""
        self._poll_requested = True

    def fill_gaps(self, poll: bool | Callable[[str], bool] = True) -> None:
        """Fetch from the store what the publications lost or have held up too long.

        Rooms holding early arrivals are always looked at. ``poll`` says whose
        newest id is read too, which finds losses that no later message
        reveals: every room's (True, and after ``poll_soon``), none (False),
        or those of the rooms whose code it accepts (a slice of them).
        """
        now = time.monotonic()
        polled: Callable[[str], bool]
        if poll is True or self._poll_requested:
            polled = _every_room
        elif poll is False:
            polled = _no_room
        else:
            polled = poll
        self._poll_requested = False
        with self._lock:
            # A gap stays looked at until it is filled, however it was found.
            rooms = [
                (code, state)
                for code, state in self._rooms.items()
                if state.early or state.gap_since is not None or polled(code)
            ]
            owed = [code for code, state in self._rooms.items() if state.list_owed]
        for code in owed:  # the store failed when their lists were first read
            self._announce_from_store(code)
        if not rooms:
            return
        try:
            latest_ids = self.store.latest_ids([code for code, _ in rooms])
            for (code, state), latest in zip(rooms, latest_ids, strict=True):
                upto = max([latest, *state.early])
                if upto <= state.delivered:
                    state.gap_since = None  # closed meanwhile by a publication
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
                    state.early[found.id] = (found, None)
            # Ids the store no longer retains cannot be delivered: skip them.
            if state.early and min(state.early) > state.delivered + 1 and not missing:
                state.delivered = min(state.early) - 1
            elif missing and missing[0].id > state.delivered + 1:
                state.delivered = missing[0].id - 1
            self._drain(code, state)
            state.gap_since = time.monotonic() if state.early else None
            owed = state.list_owed
        if owed:
            self._announce_from_store(code)

    def _announce_from_store(self, code: str) -> None:
        # Read after the notices went out: the list is at least as new as they are.
        try:
            present = self.store.present(code, time.time())
        except StoreUnavailable:
            return  # still owed: fill_gaps reads it again
        with self._lock:
            state = self._rooms.get(code)
            # Unless a notice announced a newer list while the store answered.
            if state is not None and present.latest_id >= state.listed:
                self._list(code, state, present.names, present.latest_id, [])

    def _list(
        self, code: str, state: _RoomState, names: Names, as_of: int, skip: list[str]
    ) -> None:
        state.names, state.listed, state.list_owed = names, as_of, False
        self.announce(code, names, skip)

    def _drain(self, code: str, state: _RoomState) -> None:
        while state.delivered + 1 in state.early:
            message, members = state.early.pop(state.delivered + 1)
            state.delivered += 1
            skip = [sid for sid, floor in state.floors.items() if floor >= state.delivered]
            self.deliver(code, message, skip)
            if message.kind == "chat" or message.id <= state.listed:
                continue  # a newer list went out already
            if members is not None:
                self._list(code, state, members, message.id, skip)
            else:
                state.list_owed = True
        for sid in [sid for sid, floor in state.floors.items() if floor <= state.delivered]:
            del state.floors[sid]
        if not state.early:
            state.gap_since = None


class DeliveryListener:
    """Hand what other processes publish to the sequencer, and listen again after outages."""

    def __init__(self, store: SharedStore, sequencer: RoomSequencer) -> None:
        self.store = store
        self.sequencer = sequencer

    def run(self, sleep: Callable[[float], Any]) -> None:
        """Listen until the process ends; ``sleep`` waits between attempts."""
        failures = 0
        while True:
            try:
                # Once listening, look at every room's newest id for what was
                # published before (polling any earlier leaves a window where
                # a line is neither heard nor seen: found only 5 s later).
                for delivery in self.store.deliveries(self.sequencer.poll_soon):
                    failures = 0
                    self.sequencer.offer(delivery.room, delivery.message, delivery.members)
            except StoreUnavailable:
                log.warning("store unavailable: listening again (missed messages are fetched)")
            except Exception:  # noqa: BLE001 - the listener must outlive any one failure
                log.exception("delivery listener failed; listening again")
            sleep(LISTEN_RETRY_SECONDS[min(failures, len(LISTEN_RETRY_SECONDS) - 1)])
            failures += 1
