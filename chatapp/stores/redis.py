"""RedisStore: rooms in a Redis server, shared by several processes and hosts.

Each operation is one call of one Lua script (``redis.lua``), so every read
then write is atomic across processes. The script keeps the same data
shapes and rules as MemoryStore; the contract tests hold both to them.

Each store is one process's view: it has a host id, and every message the
script records is published, in the same call, to the other processes whose
sockets are in that room (``deliveries`` reads what others publish to this
one). So recording a line and sending it to the other hosts cost one round
trip, and a process with every socket of a room publishes nothing.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import time
import uuid
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Sequence
from importlib import resources
from typing import Any

import redis

from chatapp.domain import Ended
from chatapp.domain import Message
from chatapp.domain import Present
from chatapp.stores.base import AddOutcome
from chatapp.stores.base import Appended
from chatapp.stores.base import AppendOutcome
from chatapp.stores.base import Connected
from chatapp.stores.base import ConnectOutcome
from chatapp.stores.base import Created
from chatapp.stores.base import CreateOutcome
from chatapp.stores.base import Delivery
from chatapp.stores.base import Limits
from chatapp.stores.base import NewMember
from chatapp.stores.base import StoreUnavailable
from chatapp.stores.batching import GroupCommit

# A send must answer within 2 s when Redis is gone (PROTOCOL.md: unavailable).
SOCKET_TIMEOUT_SECONDS = 1.0
# A call that Redis runs more than this after it was sent does nothing (the
# caller may have stopped waiting): a stalled Redis never records a line
# that was answered ``unavailable``. Measured on Redis's clock, whose offset
# from ours is read with TIME every CLOCK_CHECK_SECONDS.
LATE_AFTER_SECONDS = SOCKET_TIMEOUT_SECONDS / 2
CLOCK_CHECK_SECONDS = 60.0
CLOCK_RECHECK_SECONDS = 1.0  # after a slow check, and while one is in flight
CLOCK_CHECK_MAX_ROUND_TRIP = 0.05  # a slower TIME round trip gives no good offset
LATE = "~late"
KEY_PREFIX = "chat:"
LISTEN_SECONDS = 5.0
RENEW_BATCH = 100
REFUSAL_LOG_SECONDS = 10.0  # a Redis out of memory refuses every call: log it now and then

log = logging.getLogger(__name__)


def _message(raw: str | bytes) -> Message:
    return _message_from(json.loads(raw))


def _message_from(data: dict[str, Any]) -> Message:
    return Message(int(data["id"]), data["kind"], data["name"], data["text"], data["ts"])


def _names(raw: str | bytes) -> tuple[str, ...]:
    return _name_list(json.loads(raw))


def _name_list(names: object) -> tuple[str, ...]:
    return tuple(names) if isinstance(names, list) else ()  # cjson writes [] as {}


class RedisClock:
    """Deadlines on Redis's clock: ours plus an offset read with TIME now and then."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._offset: float | None = None  # Redis's clock minus ours
        self._next_check = 0.0

    def deadline(self) -> str:
        """Return when, on Redis's clock, a call sent now must no longer run."""
        now = time.time()
        if now >= self._next_check or self._offset is None:
            self._check(now)
        assert self._offset is not None
        return repr(now + self._offset + LATE_AFTER_SECONDS)

    def _check(self, now: float) -> None:
        # One check at a time: calls made meanwhile keep the offset they have
        # (under load, every caller of a busy second checked at once).
        self._next_check = now + CLOCK_RECHECK_SECONDS
        before = time.time()
        seconds, micros = self.client.time()
        after = time.time()
        good = after - before <= CLOCK_CHECK_MAX_ROUND_TRIP
        if good or self._offset is None:
            self._offset = seconds + micros / 1e6 - (before + after) / 2
        # A slow check gives a poor offset: check again soon.
        self._next_check = after + (CLOCK_CHECK_SECONDS if good else CLOCK_RECHECK_SECONDS)


class RedisStore:
    """Keep rooms, members, history and token buckets in Redis."""

    def __init__(self, url: str, limits: Limits, *, prefix: str = KEY_PREFIX) -> None:
        self.limits = limits
        self.prefix = prefix
        self.host_id = uuid.uuid4().hex
        self.channel = f"{prefix}host:{self.host_id}"  # what others publish to us
        self.client = redis.Redis.from_url(
            url,
            socket_timeout=SOCKET_TIMEOUT_SECONDS,
            socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
            health_check_interval=10,
            decode_responses=True,
        )
        source = resources.files("chatapp.stores").joinpath("redis.lua").read_text()
        self._script = self.client.register_script(source)
        self._limits_json = json.dumps(dataclasses.asdict(limits))  # every limit, by its name
        self._leases = f"{prefix}leases"
        self._clock = RedisClock(self.client)
        self._quiet_until = 0.0  # when the next refusal may be logged
        # Lines sent at the same time share a round trip (chatapp.stores.batching).
        # (A partial of the client, not a method: no cycle keeps the store alive.)
        self._appends: GroupCommit[tuple[str, list[Any]]] = GroupCommit(
            functools.partial(_run_together, self.client, self._script, self._leases, self._clock)
        )

    def _run(self, op: str, key: str, now: float, *args: Any, together: bool = False) -> Any:
        try:
            if together:
                # Nothing here waits before the call joins the queue, so calls
                # queue in the order they are made (a connection's overlapping
                # sends rely on it: chatapp.engine.transport). The batch takes its
                # deadline when it is sent.
                call = [op, repr(now), self._limits_json, self.host_id, *args]
                reply = self._appends((key, call))
            else:
                deadline = self._clock.deadline()
                call = [op, repr(now), self._limits_json, self.host_id, deadline, *args]
                reply = self._script(keys=[key, self._leases], args=call)
        except redis.RedisError as error:
            raise self._unavailable(error) from error
        if reply == LATE:
            raise StoreUnavailable("Redis ran the call too late; it did nothing")
        return reply

    def _unavailable(self, error: redis.RedisError) -> StoreUnavailable:
        # Redis is gone or slow (a connection error, a timeout), or it refuses
        # to run calls now: out of memory, a read-only replica, a busy script.
        # A refused call did nothing (it fails at its first write), and the
        # user is told to try again; the operator is told why.
        if isinstance(error, redis.ResponseError):
            now = time.monotonic()
            if now >= self._quiet_until:
                self._quiet_until = now + REFUSAL_LOG_SECONDS
                log.error("Redis refuses calls: %s", error)
        return StoreUnavailable(str(error))

    def _room(self, code: str) -> str:
        return f"{self.prefix}{{{code}}}"

    # -- rooms -------------------------------------------------------------

    def ping(self) -> None:
        """Return when Redis answers, else raise StoreUnavailable."""
        try:
            self.client.ping()
        except redis.RedisError as error:
            raise self._unavailable(error) from error

    def create_room(self, code: str, creator: NewMember, address: str, now: float) -> Created:
        """Create room ``code`` with its creator pending, unless a limit says no."""
        reply = self._run("create_room", self._room(code), now, *_member_args(creator), address)
        return Created(CreateOutcome(reply[0]), float(reply[1]) if len(reply) > 1 else 0.0)

    def add_member(self, code: str, member: NewMember, now: float) -> AddOutcome:
        """Reserve ``member``'s name keys in the room, unless taken or full."""
        return AddOutcome(self._run("add_member", self._room(code), now, *_member_args(member)))

    def has_membership(self, code: str, member_id: str, now: float) -> bool:
        """Tell whether the member holds or may renew a membership there."""
        return bool(self._run("has_membership", self._room(code), now, member_id))

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
        reply = self._run(
            "connect",
            self._room(code),
            now,
            ts,
            member_id,
            conn_id,
            -1 if last_id is None else last_id,
            history_on_join,
            repr(lease_until if lease_until is not None else now + 1e9),
        )
        outcome = ConnectOutcome(reply[0])
        if outcome is not ConnectOutcome.CONNECTED:
            return Connected(outcome)
        name, notice, latest, truncated, members, *history = reply[1:]
        return Connected(
            outcome,
            name=name,
            notice=_message(notice) if notice else None,
            members=_names(members),
            history=tuple(_message(m) for m in history),
            latest_id=int(latest),
            truncated=bool(truncated),
        )

    def disconnect(self, code: str, member_id: str, conn_id: str, now: float) -> int | None:
        """Detach a connection; when it was the member's last, return a token."""
        token = self._run("disconnect", self._room(code), now, member_id, conn_id)
        return None if token is None else int(token)

    def end_if_gone(
        self, code: str, member_id: str, token: int, ts: str, now: float
    ) -> Ended | None:
        """End a membership still without connections since ``token``."""
        reply = self._run("end_if_gone", self._room(code), now, ts, member_id, token)
        if reply is None:
            return None
        notice, members = reply
        return Ended(_message(notice) if notice else None, _names(members))

    def leave(self, code: str, member_id: str, ts: str, now: float) -> Ended | None:
        """End a membership for good; it can never be renewed."""
        reply = self._run("leave", self._room(code), now, ts, member_id)
        if reply is None:
            return None
        notice, members, *connections = reply
        return Ended(_message(notice) if notice else None, _names(members), tuple(connections))

    def renew_leases(
        self, connections: Iterable[tuple[str, str, str]], until: float
    ) -> list[tuple[str, str, str]]:
        """Extend the leases of this process's live connections; return those swept."""
        entries = ["|".join(c) for c in connections]
        gone = []
        # Small calls: Redis serves everyone else's lines between them.
        for start in range(0, len(entries), RENEW_BATCH):
            gone += self._run(
                "renew", self._leases, until, repr(until), *entries[start : start + RENEW_BATCH]
            )
        return [(code, member, conn) for code, member, conn in (e.split("|", 2) for e in gone)]

    def expired_connections(self, now: float, limit: int = 500) -> list[tuple[str, str, str]]:
        """Return connections whose lease ran out: their process is gone."""
        entries = self._run("expired", self._leases, now, limit)
        return [(code, member, conn) for code, member, conn in (e.split("|", 2) for e in entries)]

    # -- messages ----------------------------------------------------------

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
        reply = self._run(
            "append",
            self._room(code),
            now,
            ts,
            member_id,
            text,
            cid or "",
            rate,
            burst,
            together=True,
        )
        outcome = AppendOutcome(reply[0])
        if outcome is AppendOutcome.RECORDED:
            message = Message(int(reply[1]), "chat", reply[2], text, ts)
            return Appended(outcome, message=message, message_id=message.id)
        if outcome is AppendOutcome.DUPLICATE:
            return Appended(outcome, message_id=int(reply[1]))
        if outcome is AppendOutcome.RATE_LIMITED:
            return Appended(outcome, retry_after=float(reply[1]))
        return Appended(outcome)

    def messages(self, code: str, after_id: int, upto_id: int) -> list[Message]:
        """Return the retained messages with ``after_id < id <= upto_id``."""
        return [_message(m) for m in self._run("messages", self._room(code), 0, after_id, upto_id)]

    def latest_ids(self, codes: list[str]) -> list[int]:
        """Return the newest message id of each room (0 when none), in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        for code in codes:
            pipe.hget(self._room(code), "last")
        try:
            return [int(last or 0) for last in pipe.execute()]
        except redis.RedisError as error:
            raise self._unavailable(error) from error

    def present(self, code: str, now: float) -> Present:
        """Return the names of the room's present members, as of its newest message."""
        latest, *names = self._run("present", self._room(code), now)
        return Present(tuple(names), int(latest))

    def touch_typing(self, code: str, member_id: str, interval: float, now: float) -> str | None:
        """Return the member's name when it may be relayed as typing now."""
        name = self._run("touch_typing", self._room(code), now, member_id, interval)
        return None if name is None else str(name)

    # -- token buckets -----------------------------------------------------

    def take_token(self, key: str, rate: float, burst: int, now: float) -> float:
        """Spend one token of bucket ``key``; return 0, or seconds to wait."""
        return float(self._run("bucket", f"{self.prefix}bucket:{key}", now, rate, burst, 1))

    def tokens(self, key: str, rate: float, burst: int, now: float) -> float:
        """Return how many tokens bucket ``key`` holds now."""
        return float(self._run("bucket", f"{self.prefix}bucket:{key}", now, rate, burst, 0))

    def purge(self, now: float) -> int:
        """Do nothing: Redis expires idle rooms and buckets by itself."""
        return 0

    # -- deliveries from other processes -------------------------------------

    def deliveries(self, on_listening: Callable[[], None]) -> Iterator[Delivery]:
        """Yield what other processes record in rooms where this one has sockets.

        Calls ``on_listening()`` when Redis confirms the subscription: what is
        published from then on arrives here. Blocks; raises StoreUnavailable
        when the connection to Redis is lost (what was published meanwhile is
        lost too: the caller fills the gap from ``messages``).
        """
        # Typed from redis-py 8.2 on, untyped before.
        pubsub = self.client.pubsub()  # type: ignore[no-untyped-call, unused-ignore]
        try:
            pubsub.subscribe(self.channel)
            while True:
                # A bounded wait, so that the client's health checks run.
                item = pubsub.get_message(timeout=LISTEN_SECONDS)
                if item is None:
                    continue
                if item.get("type") == "subscribe":
                    on_listening()
                    continue
                delivery = _delivery(item.get("data"))
                if delivery is not None:
                    yield delivery
        except redis.RedisError as error:
            raise self._unavailable(error) from error
        finally:
            pubsub.close()


def _run_together(
    client: redis.Redis,
    script: Any,
    leases: str,
    clock: RedisClock,
    calls: Sequence[tuple[str, list[Any]]],
) -> list[Any]:
    """Run appends in one round trip: one script call per room, all in one pipeline.

    Not a transaction: each room's call is atomic alone. A room's lines keep
    their order, each recorded at its own time; every call of the round trip
    runs under the deadline of the moment it is sent.
    """
    rooms: dict[str, list[int]] = {}  # room key -> indexes of its calls, in order
    for i, (key, _) in enumerate(calls):
        rooms.setdefault(key, []).append(i)
    deadline = clock.deadline()
    merged = [
        (key, _room_call([calls[i][1] for i in indexes], deadline))
        for key, indexes in rooms.items()
    ]
    if len(merged) == 1:
        key, args = merged[0]
        replies = [script(keys=[key, leases], args=args)]
    else:
        pipe = client.pipeline(transaction=False)
        for key, args in merged:
            pipe.evalsha(script.sha, 2, key, leases, *args)
        replies = pipe.execute(raise_on_error=False)
        for n, reply in enumerate(replies):
            if isinstance(reply, redis.exceptions.NoScriptError):  # Redis lost its scripts
                key, args = merged[n]
                try:
                    replies[n] = script(keys=[key, leases], args=args)
                except redis.RedisError as error:  # this room's alone: others may have recorded
                    replies[n] = error
    results: list[Any] = [None] * len(calls)
    for indexes, reply in zip(rooms.values(), replies, strict=True):
        # One reply per line, or one LATE or error for all of the room's lines.
        lines = reply if isinstance(reply, list) else [reply] * len(indexes)
        for i, line in zip(indexes, lines, strict=True):
            results[i] = line
    return results


def _room_call(calls: list[list[Any]], deadline: str) -> list[Any]:
    """Join one room's queued appends into one call: each line with its own time."""
    op, now, limits, host = calls[0][:4]
    args = [op, now, limits, host, deadline]
    for call in calls:
        args.append(call[1])
        args.extend(call[4:])
    return args


def _delivery(raw: object) -> Delivery | None:
    """Parse one publication of redis.lua (None for anything else)."""
    if not isinstance(raw, str):
        return None
    try:
        data = json.loads(raw)
        names = data.get("p")
        return Delivery(
            str(data["r"]),
            _message_from(data["m"]),
            None if names is None else _name_list(names),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _member_args(member: NewMember) -> tuple[str, str, str, str]:
    return (member.member_id, member.name, json.dumps(list(member.keys)), repr(member.connect_by))
