"""MemoryStore: rooms inside the one server process.

One lock makes every operation atomic. Nothing inside the lock does I/O, so
under gevent it is never contended across a yield; under threads (the test
client) it is a real mutual exclusion.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections import deque
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field

from chatapp.domain import Ended
from chatapp.domain import Message
from chatapp.domain import Present
from chatapp.stores.base import AddOutcome
from chatapp.stores.base import ANY_EPOCH
from chatapp.stores.base import Appended
from chatapp.stores.base import AppendOutcome
from chatapp.stores.base import Connected
from chatapp.stores.base import ConnectOutcome
from chatapp.stores.base import Created
from chatapp.stores.base import CreateOutcome
from chatapp.stores.base import Limits
from chatapp.stores.base import NewMember


@dataclass(slots=True)
class _Member:
    member_id: str
    name: str
    keys: tuple[str, ...]
    connect_by: float
    present: bool = False  # its join notice is recorded and it has not ended
    conns: set[str] = field(default_factory=set)
    epoch: int = 0  # bumped each time its last connection goes
    send_tokens: float = -1.0  # -1: a full bucket, filled on first use
    send_at: float = 0.0
    typed_at: float = float("-inf")


@dataclass(slots=True)
class _Room:
    code: str
    creator: str  # the address key of the client that created it
    history: deque[Message]
    history_bytes: int = 0  # UTF-8 bytes of the retained messages' text
    members: dict[str, _Member] = field(default_factory=dict)
    holders: dict[str, str] = field(default_factory=dict)  # name key -> member id
    # Memberships that ended other than by leaving, renewable under their name.
    former: OrderedDict[str, tuple[str, tuple[str, ...]]] = field(default_factory=OrderedDict)
    cids: dict[tuple[str, str], int] = field(default_factory=dict)
    cid_by_id: dict[int, tuple[str, str]] = field(default_factory=dict)
    next_id: int = 1
    idle_since: float | None = None  # None while someone is present


class MemoryStore:
    """Keep rooms, members, history and token buckets in this process."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._lock = threading.Lock()
        self._rooms: dict[str, _Room] = {}
        self._expiries: list[tuple[float, str]] = []  # (deadline, code), may be stale
        # Creator address -> codes of the rooms it created that exist.
        self._by_address: dict[str, set[str]] = {}
        self._buckets: dict[str, tuple[float, float, float, int]] = {}

    # -- rooms -------------------------------------------------------------

    def ping(self) -> None:
        """Return at once: memory is always reachable."""

    def create_room(self, code: str, creator: NewMember, address: str, now: float) -> Created:
        """Create room ``code`` with its creator pending, unless a limit says no."""
        with self._lock:
            self._purge_rooms(now)  # from here on, every room counted lives
            mine = self._by_address.get(address, set())
            if len(mine) >= self.limits.rooms_per_address:
                return Created(CreateOutcome.TOO_MANY_ROOMS, self._soonest_expiry(mine, now))
            if len(self._rooms) >= self.limits.max_rooms:
                return Created(CreateOutcome.SERVER_FULL)
            if code in self._rooms:
                return Created(CreateOutcome.CODE_TAKEN)
            room = _Room(code, address, deque())
            self._rooms[code] = room
            self._by_address.setdefault(address, set()).add(code)
            self._seat(room, creator)
            self._set_idle(room, now)  # until a member connects
            return Created(CreateOutcome.CREATED)

    def add_member(self, code: str, member: NewMember, now: float) -> AddOutcome:
        """Reserve ``member``'s name keys in the room, unless taken or full."""
        with self._lock:
            room = self._live_room(code, now)
            if room is None:
                return AddOutcome.NO_ROOM
            self._drop_stale(room, now)
            if member.member_id in room.members:
                return AddOutcome.ALREADY
            if any(key in room.holders for key in member.keys):
                return AddOutcome.NAME_TAKEN
            if len(room.members) >= self.limits.max_members:
                return AddOutcome.FULL
            room.former.pop(member.member_id, None)
            self._seat(room, member)  # a pending member keeps no idle room alive
            return AddOutcome.ADDED

    def has_membership(self, code: str, member_id: str, now: float) -> bool:
        """Tell whether the member holds or may renew a membership there."""
        with self._lock:
            room = self._live_room(code, now)
            if room is None:
                return False
            self._drop_stale(room, now)
            return member_id in room.members or member_id in room.former

    # -- connections -------------------------------------------------------

    def connect(
        self,
        code: str,
        member_id: str,
        conn_id: str,
        last_id: int | None,
        history_on_join: int,
        ts: str,
        now: float,
        lease_until: float | None = None,
    ) -> Connected:
        """Attach a connection, recording the join notice on a first one."""
        with self._lock:
            room = self._live_room(code, now)
            if room is None:
                return Connected(ConnectOutcome.NO_ROOM)
            self._drop_stale(room, now)
            member = room.members.get(member_id) or self._renew(room, member_id, now)
            if member is None:
                return Connected(ConnectOutcome.NOT_MEMBER)
            member.conns.add(conn_id)
            notice = None
            if not member.present:
                member.present = True
                room.members[member_id] = room.members.pop(member_id)  # join order
                room.idle_since = None
                notice = self._record(room, "join", member.name, "", ts)
            history, truncated = self._history(room, last_id, history_on_join)
            return Connected(
                ConnectOutcome.CONNECTED,
                name=member.name,
                notice=notice,
                members=self._present_names(room),
                history=history,
                latest_id=room.next_id - 1,
                truncated=truncated,
            )

    def disconnect(self, code: str, member_id: str, conn_id: str, now: float) -> int | None:
        """Detach a connection; when it was the member's last, return a token."""
        with self._lock:
            room = self._rooms.get(code)
            member = room.members.get(member_id) if room else None
            if member is None or conn_id not in member.conns:
                return None
            member.conns.discard(conn_id)
            if member.conns:
                return None
            member.epoch += 1
            return member.epoch

    def end_if_gone(
        self, code: str, member_id: str, token: int, ts: str, now: float
    ) -> Ended | None:
        """End a membership still without connections since ``token``."""
        with self._lock:
            room = self._rooms.get(code)
            member = room.members.get(member_id) if room else None
            if room is None or member is None or member.conns:
                return None
            if token != ANY_EPOCH and member.epoch != token:
                return None
            notice = self._end(room, member, now, ts)
            self._remember_former(room, member)
            return Ended(notice, self._present_names(room))

    def leave(self, code: str, member_id: str, ts: str, now: float) -> Ended | None:
        """End a membership for good; it can never be renewed."""
        with self._lock:
            room = self._live_room(code, now)
            if room is None:
                return None
            room.former.pop(member_id, None)
            member = room.members.get(member_id)
            if member is None:
                return None
            notice = self._end(room, member, now, ts)
            return Ended(notice, self._present_names(room), tuple(member.conns))

    def renew_leases(
        self, connections: Iterable[tuple[str, str, str]], until: float
    ) -> list[tuple[str, str, str]]:
        """Do nothing: connections live and die with this one process."""
        return []

    def expired_connections(self, now: float, limit: int = 500) -> list[tuple[str, str, str]]:
        """Return nothing: no other process can die holding connections here."""
        return []

    # -- messages ----------------------------------------------------------

    def messages(self, code: str, after_id: int, upto_id: int) -> list[Message]:
        """Return the retained messages with ``after_id < id <= upto_id``."""
        with self._lock:
            room = self._rooms.get(code)
            if room is None:
                return []
            return [m for m in room.history if after_id < m.id <= upto_id]

    def append(
        self,
        code: str,
        member_id: str,
        text: str,
        cid: str | None,
        ts: str,
        rate: float,
        burst: int,
        now: float,
    ) -> Appended:
        """Record a chat line by a present member within its send budget."""
        with self._lock:
            room = self._live_room(code, now)
            member = room.members.get(member_id) if room else None
            if room is None or member is None or not member.present:
                return Appended(AppendOutcome.NOT_MEMBER)
            if cid is not None and (member_id, cid) in room.cids:
                return Appended(AppendOutcome.DUPLICATE, message_id=room.cids[member_id, cid])
            tokens = burst if member.send_tokens < 0 else member.send_tokens
            tokens = min(burst, tokens + max(0.0, now - member.send_at) * rate)
            member.send_at = max(member.send_at, now)  # see _refill
            if tokens < 1:
                member.send_tokens = tokens
                return Appended(AppendOutcome.RATE_LIMITED, retry_after=(1 - tokens) / rate)
            member.send_tokens = tokens - 1
            cid_key = None if cid is None else (member_id, cid)
            message = self._record(room, "chat", member.name, text, ts, cid_key)
            return Appended(AppendOutcome.RECORDED, message=message, message_id=message.id)

    def latest_ids(self, codes: list[str]) -> list[int]:
        """Return the newest message id of each room (0 when none)."""
        with self._lock:
            rooms = [self._rooms.get(code) for code in codes]
            return [room.next_id - 1 if room is not None else 0 for room in rooms]

    def present(self, code: str, now: float) -> Present:
        """Return the names of the room's present members, as of its newest message."""
        with self._lock:
            room = self._live_room(code, now)
            if room is None:
                return Present((), 0)
            return Present(self._present_names(room), room.next_id - 1)

    def touch_typing(self, code: str, member_id: str, interval: float, now: float) -> str | None:
        """Return the member's name when it may be relayed as typing now."""
        with self._lock:
            room = self._rooms.get(code)
            member = room.members.get(member_id) if room else None
            if member is None or not member.present or now - member.typed_at < interval:
                return None
            member.typed_at = now
            return member.name

    # -- token buckets -----------------------------------------------------

    def take_token(self, key: str, rate: float, burst: int, now: float) -> float:
        """Spend one token of bucket ``key``; return 0, or seconds to wait."""
        with self._lock:
            tokens, at = self._refill(key, rate, burst, now)
            if tokens < 1:
                self._buckets[key] = (tokens, at, rate, burst)
                return (1 - tokens) / rate
            self._buckets[key] = (tokens - 1, at, rate, burst)
            return 0.0

    def tokens(self, key: str, rate: float, burst: int, now: float) -> float:
        """Return how many tokens bucket ``key`` holds now."""
        with self._lock:
            return self._refill(key, rate, burst, now)[0]

    def purge(self, now: float) -> int:
        """Delete expired rooms and full buckets; return how many rooms went."""
        with self._lock:
            gone = self._purge_rooms(now)
            for key, (tokens, at, rate, burst) in list(self._buckets.items()):
                if tokens + (now - at) * rate >= burst:
                    del self._buckets[key]
            return gone

    # -- helpers (called with the lock held) -------------------------------

    def _purge_rooms(self, now: float) -> int:
        """Delete every expired room (the heap holds each idle room's deadline)."""
        gone = 0
        while self._expiries and self._expiries[0][0] <= now:
            _, code = heapq.heappop(self._expiries)
            room = self._rooms.get(code)
            if room is not None and self._expired(room, now):
                self._delete(room)
                gone += 1
        return gone

    def _delete(self, room: _Room) -> None:
        del self._rooms[room.code]
        codes = self._by_address[room.creator]
        codes.discard(room.code)
        if not codes:
            del self._by_address[room.creator]

    def _soonest_expiry(self, codes: set[str], now: float) -> float:
        """Return the seconds until the first of these rooms expires (idle_ttl if busy)."""
        rooms = (self._rooms[code] for code in codes)
        idle = [room.idle_since for room in rooms if room.idle_since is not None]
        return min(idle) + self.limits.idle_ttl - now if idle else self.limits.idle_ttl

    def _live_room(self, code: str, now: float) -> _Room | None:
        room = self._rooms.get(code)
        if room is not None and self._expired(room, now):
            self._delete(room)
            return None
        return room

    def _expired(self, room: _Room, now: float) -> bool:
        return room.idle_since is not None and now >= room.idle_since + self.limits.idle_ttl

    def _set_idle(self, room: _Room, since: float) -> None:
        room.idle_since = since
        heapq.heappush(self._expiries, (since + self.limits.idle_ttl, room.code))

    def _seat(self, room: _Room, member: NewMember) -> None:
        room.members[member.member_id] = _Member(
            member.member_id, member.name, member.keys, member.connect_by
        )
        for key in member.keys:
            room.holders[key] = member.member_id

    def _unseat(self, room: _Room, member: _Member) -> None:
        del room.members[member.member_id]
        for key in member.keys:
            if room.holders.get(key) == member.member_id:
                del room.holders[key]

    def _drop_stale(self, room: _Room, now: float) -> None:
        """End memberships that never connected in time (no notice)."""
        stale = [
            m for m in room.members.values() if not m.present and not m.conns and m.connect_by < now
        ]
        for member in stale:
            self._unseat(room, member)
            self._remember_former(room, member)

    def _renew(self, room: _Room, member_id: str, now: float) -> _Member | None:
        former = room.former.get(member_id)
        if former is None or len(room.members) >= self.limits.max_members:
            return None
        name, keys = former
        if any(key in room.holders for key in keys):
            return None
        del room.former[member_id]
        self._seat(room, NewMember(member_id, name, keys, now))
        return room.members[member_id]

    def _end(self, room: _Room, member: _Member, now: float, ts: str) -> Message | None:
        self._unseat(room, member)
        notice = self._record(room, "leave", member.name, "", ts) if member.present else None
        # Members that never connected keep no room alive: idle from now.
        if member.present and not any(m.present for m in room.members.values()):
            self._set_idle(room, now)
        return notice

    def _remember_former(self, room: _Room, member: _Member) -> None:
        room.former[member.member_id] = (member.name, member.keys)
        while len(room.former) > self.limits.former_limit:
            room.former.popitem(last=False)

    def _record(
        self,
        room: _Room,
        kind: str,
        name: str,
        text: str,
        ts: str,
        cid_key: tuple[str, str] | None = None,
    ) -> Message:
        message = Message(room.next_id, kind, name, text, ts)
        room.next_id += 1
        room.history.append(message)
        room.history_bytes += _utf8_length(text)
        if cid_key is not None:
            room.cids[cid_key] = message.id
            room.cid_by_id[message.id] = cid_key
        # The oldest go beyond either limit (a line over the byte limit alone too).
        limits = self.limits
        while len(room.history) > limits.history_limit or room.history_bytes > limits.history_bytes:
            dropped = room.history.popleft()
            room.history_bytes -= _utf8_length(dropped.text)
            dropped_cid = room.cid_by_id.pop(dropped.id, None)
            if dropped_cid is not None:
                del room.cids[dropped_cid]
        return message

    def _history(
        self, room: _Room, last_id: int | None, count: int
    ) -> tuple[tuple[Message, ...], bool]:
        history = room.history
        if last_id is None:
            start = max(0, len(history) - count)
            return tuple(itertools.islice(history, start, None)), False
        oldest = history[0].id if history else room.next_id
        truncated = last_id + 1 < oldest and last_id < room.next_id - 1
        start = min(len(history), max(0, last_id + 1 - oldest))
        return tuple(itertools.islice(history, start, None)), truncated

    def _refill(self, key: str, rate: float, burst: int, now: float) -> tuple[float, float]:
        """Return bucket ``key``'s tokens now, and the time they are counted at.

        Time only ever refills: a clock that steps back (or, in RedisStore,
        another host's clock that runs behind) takes no tokens away.
        """
        entry = self._buckets.get(key)
        if entry is None:
            return float(burst), now
        tokens, since, _, _ = entry
        at = max(since, now)
        return min(float(burst), tokens + (at - since) * rate), at

    @staticmethod
    def _present_names(room: _Room) -> tuple[str, ...]:
        return tuple(m.name for m in room.members.values() if m.present)


def _utf8_length(text: str) -> int:
    """Return the UTF-8 byte length of ``text`` (Lua's ``#`` in redis.lua)."""
    return len(text) if text.isascii() else len(text.encode())
