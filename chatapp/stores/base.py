"""The Store interface: where rooms, members and messages live.

Where the rules live. The RoomRegistry validates and decides whatever it
can without the store: it normalizes names and codes, computes name keys,
parses lines, keeps the clock, draws codes, and turns the outcomes below
into the protocol's answers. Every rule that reads and then writes shared
state (a name already taken, a room full, a membership gone stale, the
send budget and cid de-duplication, the history a connection is owed, the
typing throttle, the room limits) runs inside the store, atomically: under
a lock in memory, in one Lua script call in Redis, so that two processes
cannot both pass it. Those rules are therefore written twice, in
stores/memory.py and stores/redis.lua; the table at the top of redis.lua
pairs them, and the contract suite (tests/domain/test_rooms.py, over both stores)
is the proof that they agree.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from chatapp.domain import Ended
from chatapp.domain import Message
from chatapp.domain import Present

# ``end_if_gone`` with this token ends the membership whatever its epoch.
ANY_EPOCH = -1
# In ``expired_connections``: the member's last connection went a leave
# grace ago, and the process that saw it go did not end the membership.
GONE = "~gone"


class StoreUnavailable(RuntimeError):
    """The store cannot be reached; nothing was recorded."""


@dataclass(frozen=True, slots=True)
class NewMember:
    """A membership about to be recorded: who, under which name keys."""

    member_id: str
    name: str
    keys: tuple[str, ...]
    connect_by: float


class CreateOutcome(enum.Enum):
    """How creating a room went."""

    CREATED = "created"
    CODE_TAKEN = "code_taken"  # a live room has that code: draw another
    SERVER_FULL = "server_full"  # ``max_rooms`` rooms live
    TOO_MANY_ROOMS = "too_many_rooms"  # the address created ``rooms_per_address`` live ones


@dataclass(frozen=True, slots=True)
class Created:
    """What creating a room did; ``retry_after``: when the address may create again."""

    outcome: CreateOutcome
    retry_after: float = 0.0


class AddOutcome(enum.Enum):
    """How adding a member to a room went."""

    ADDED = "added"
    ALREADY = "already"  # this member id is in that room already
    NO_ROOM = "no_room"
    NAME_TAKEN = "name_taken"
    FULL = "full"


class ConnectOutcome(enum.Enum):
    """How attaching a connection to a membership went."""

    CONNECTED = "connected"
    NO_ROOM = "no_room"
    NOT_MEMBER = "not_member"


@dataclass(frozen=True, slots=True)
class Connected:
    """A connection attached to a member, and what the room looked like then."""

    outcome: ConnectOutcome
    name: str = ""
    notice: Message | None = None
    members: tuple[str, ...] = ()
    history: tuple[Message, ...] = ()
    latest_id: int = 0
    truncated: bool = False


class AppendOutcome(enum.Enum):
    """How recording a chat line went."""

    RECORDED = "recorded"
    DUPLICATE = "duplicate"  # the cid was used before: ``message_id`` is the first id
    NOT_MEMBER = "not_member"
    RATE_LIMITED = "rate_limited"


@dataclass(frozen=True, slots=True)
class Appended:
    """What recording a chat line did."""

    outcome: AppendOutcome
    message: Message | None = None
    message_id: int = 0
    retry_after: float = 0.0


@dataclass(frozen=True, slots=True)
class Delivery:
    """A message another process recorded, as a shared store sends it on."""

    room: str
    message: Message
    members: tuple[str, ...] | None = None  # the member list, when it changed


@dataclass(frozen=True, slots=True)
class Limits:
    """The room sizes and timings a store needs to apply atomically."""

    max_members: int
    history_limit: int
    # A room with no present member (members that never connected do not
    # count) is deleted this long after it was created or its last one ended.
    idle_ttl: float
    former_limit: int = 1000  # ended memberships remembered for renewal, per room
    leave_grace: float = 5.0  # shared stores: when any process may end a gone member
    max_rooms: int = 1000  # live rooms at once
    rooms_per_address: int = 20  # live rooms created by one client address
    history_bytes: int = 65536  # UTF-8 bytes of message text a room retains


class Store(Protocol):
    """Storage for rooms; every method is atomic and may raise StoreUnavailable."""

    def ping(self) -> None:
        """Return when the store is reachable, else raise StoreUnavailable."""

    def create_room(self, code: str, creator: NewMember, address: str, now: float) -> Created:
        """Create room ``code`` with its creator pending, for client ``address``.

        Refused when the code is taken, when ``max_rooms`` rooms live, or when
        the address created ``rooms_per_address`` rooms that still live. A
        new room is idle (see ``idle_ttl``) until a member connects.
        """

    def add_member(self, code: str, member: NewMember, now: float) -> AddOutcome:
        """Reserve ``member``'s name keys in the room, unless taken or full."""

    def has_membership(self, code: str, member_id: str, now: float) -> bool:
        """Tell whether the member holds or may renew a membership there."""

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
        """Attach a connection, recording the join notice on a first one.

        A membership that ended other than by leaving is renewed under its
        name when that name is free and the room has a seat. The result's
        history follows PROTOCOL.md's rules for ``last_id``. A store shared
        by several processes holds the connection until ``lease_until``
        unless its process renews the lease.
        """

    def disconnect(self, code: str, member_id: str, conn_id: str, now: float) -> int | None:
        """Detach a connection; when it was the member's last, return a token."""

    def end_if_gone(
        self, code: str, member_id: str, token: int, ts: str, now: float
    ) -> Ended | None:
        """End a membership still without connections since ``token``."""

    def leave(self, code: str, member_id: str, ts: str, now: float) -> Ended | None:
        """End a membership for good; it can never be renewed."""

    def renew_leases(
        self, connections: Iterable[tuple[str, str, str]], until: float
    ) -> list[tuple[str, str, str]]:
        """Extend the leases of this process's ``(code, member, conn)`` connections.

        Return those it holds no more (detached meanwhile): nothing brings them back.
        """

    def expired_connections(self, now: float, limit: int = 500) -> list[tuple[str, str, str]]:
        """Return ``(code, member, conn)`` whose lease ran out: their process died."""

    def messages(self, code: str, after_id: int, upto_id: int) -> list[Message]:
        """Return the retained messages with ``after_id < id <= upto_id``."""

    def latest_ids(self, codes: list[str]) -> list[int]:
        """Return the newest message id of each room (0 when none)."""

    def present(self, code: str, now: float) -> Present:
        """Return the names of the room's present members, as of its newest message."""

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

    def touch_typing(self, code: str, member_id: str, interval: float, now: float) -> str | None:
        """Return the member's name when it may be relayed as typing now."""

    def take_token(self, key: str, rate: float, burst: int, now: float) -> float:
        """Spend one token of bucket ``key``; return 0, or seconds to wait."""

    def tokens(self, key: str, rate: float, burst: int, now: float) -> float:
        """Return how many tokens bucket ``key`` holds now."""

    def purge(self, now: float) -> int:
        """Delete expired rooms and idle buckets; return how many rooms went."""


class SharedStore(Store, Protocol):
    """A store several processes share: it also sends on what others record."""

    def deliveries(self, on_listening: Callable[[], None]) -> Iterator[Delivery]:
        """Yield what other processes record in rooms with sockets here.

        ``on_listening()`` runs once the store will send on everything
        recorded from then on.
        """
