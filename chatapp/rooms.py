"""RoomRegistry: every rule of rooms, members and messages (PROTOCOL.md).

Pure Python with no Flask import. The registry validates and normalizes,
draws room codes, keeps the clocks, and asks its Store to record atomically.
It raises domain exceptions and never emits: the callers deliver.
"""

from __future__ import annotations

import functools
import math
import re
import secrets
import string
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from datetime import timezone

from chatapp.domain import Ended
from chatapp.domain import Membership
from chatapp.domain import Message
from chatapp.names import InvalidName
from chatapp.names import is_valid_code
from chatapp.names import name_keys
from chatapp.names import normalize_code
from chatapp.names import normalize_name
from chatapp.stores.base import AddOutcome
from chatapp.stores.base import AppendOutcome
from chatapp.stores.base import ConnectOutcome
from chatapp.stores.base import CreateOutcome
from chatapp.stores.base import NewMember
from chatapp.stores.base import Store
from chatapp.stores.base import StoreUnavailable

__all__ = [
    "Ended",
    "InvalidCode",
    "InvalidName",
    "Message",
    "NameTaken",
    "NoFreeCode",
    "NotJoined",
    "RoomFull",
    "RoomNotFound",
    "RoomRegistry",
    "SendRefused",
    "ServerFull",
    "StoreUnavailable",
    "TooManyAttempts",
    "Welcome",
]

PURGE_INTERVAL_SECONDS = 30.0
# The address of callers with no client (tests, tools): they share its limits.
NO_ADDRESS = ""
CID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Control characters a chat line may not hold: all of C0 and C1 but \t and
# \n, and lone surrogates (which no UTF-8 encoder can carry).
_REFUSED_IN_TEXT = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


class RoomNotFound(LookupError):
    """No room has that code (it never existed or has expired)."""


class InvalidCode(ValueError):
    """The text typed as a room code does not have a code's shape."""


class NameTaken(ValueError):
    """Someone in the room holds that name, or one confusable with it."""


class RoomFull(ValueError):
    """The room has ``ROOM_MAX_MEMBERS`` members."""


class NoFreeCode(RuntimeError):
    """A bounded number of random draws found no unused room code."""


class ServerFull(RuntimeError):
    """``MAX_ROOMS`` rooms live: no room can be created now."""


class TooManyAttempts(PermissionError):
    """The client address is over a lobby limit; it may try again in ``retry_after`` s."""

    def __init__(self, retry_after: float, reason: str = "rate_limited") -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        self.reason = reason


class NotJoined(PermissionError):
    """The session is not (or no longer) a member of that room."""


class SendRefused(ValueError):
    """A ``send`` the protocol rejects; ``error`` is its ack error code."""

    def __init__(self, error: str, retry_after: float | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.retry_after = retry_after

    def ack(self) -> dict[str, object]:
        """Return the protocol's negative acknowledgement."""
        ack: dict[str, object] = {"ok": False, "error": self.error}
        if self.retry_after is not None:
            ack["retry_after"] = round(self.retry_after, 3)
        return ack


@dataclass(frozen=True, slots=True)
class Welcome:
    """What a newly accepted connection is told, and what the room learns."""

    room: str
    name: str
    members: tuple[str, ...]
    history: tuple[Message, ...]
    latest_id: int
    truncated: bool
    notice: Message | None  # the join notice, on the member's first connection

    def joined_payload(self) -> dict[str, object]:
        """Return the protocol's ``joined`` event payload."""
        return {
            "room": self.room,
            "name": self.name,
            "members": list(self.members),
            "history": [m.to_dict() for m in self.history],
            "latest_id": self.latest_id,
            "truncated": self.truncated,
        }


@dataclass(frozen=True, slots=True)
class Settings:
    """The protocol's tunable limits, with PROTOCOL.md's defaults (and config.py's for the rest)."""

    code_length: int = 4
    code_draws: int = 64
    name_max_length: int = 32
    message_max_length: int = 2000
    history_on_join: int = 50
    member_connect_timeout: float = 60.0  # MEMBER_CONNECT_SECONDS
    send_rate: float = 5.0
    send_burst: int = 10
    typing_interval: float = 2.0
    join_failures_per_minute: int = 20
    creates_per_minute: int = 10
    joins_per_minute: int = 60
    # How long a shared store keeps a connection its process stopped renewing.
    connection_lease: float = 15.0


def utc_timestamp(now: float) -> str:
    """Format ``now`` (epoch seconds) as ISO 8601 UTC with milliseconds and Z."""
    # Rounded to the microsecond first, the way datetime.fromtimestamp does.
    fraction, whole = math.modf(now)
    micros = round(fraction * 1e6)
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    return f"{_utc_second(int(whole))}.{micros // 1000:03d}Z"


@functools.lru_cache(maxsize=4)
def _utc_second(seconds: int) -> str:
    # Every message of the same second shares this part (strftime is the slow bit).
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


class RoomRegistry:
    """Apply the protocol's rules to rooms kept in a Store."""

    def __init__(
        self,
        store: Store,
        settings: Settings | None = None,
        *,
        clock: Callable[[], float] = time.time,
        draw_code: Callable[[int], str] | None = None,
        new_member_id: Callable[[], str] = lambda: secrets.token_urlsafe(12),
    ) -> None:
        self.store = store
        self.settings = settings or Settings()
        self.clock = clock
        self.draw_code = draw_code or _random_code
        self.new_member_id = new_member_id
        self._next_purge = 0.0

    # -- lobby ---------------------------------------------------------------

    def normalize_name(self, raw: str) -> str:
        """Return the canonical form of a display name or raise InvalidName."""
        return normalize_name(raw, self.settings.name_max_length)

    def normalize_code(self, raw: str) -> str:
        """Return a typed room code in canonical form or raise InvalidCode."""
        code = normalize_code(raw)
        if not is_valid_code(code, self.settings.code_length):
            raise InvalidCode(code)
        return code

    def create_room(self, raw_name: str, address: str = NO_ADDRESS) -> Membership:
        """Create a room with a fresh code and seat its creator (pending).

        ``address`` is the client's address key (chatapp.web.addresses). Raise
        TooManyAttempts past CREATES_PER_MINUTE or ROOMS_PER_ADDRESS, and
        ServerFull at MAX_ROOMS; a refused creation records nothing.
        """
        self._admit("create", address, self.settings.creates_per_minute)
        name = self.normalize_name(raw_name)
        now = self.clock()
        if now >= self._next_purge:  # expired rooms go lazily; this frees their memory
            self._next_purge = now + PURGE_INTERVAL_SECONDS
            self.store.purge(now)
        creator = self._new_member(self.new_member_id(), name, now)
        for _ in range(self.settings.code_draws):
            code = self.draw_code(self.settings.code_length)
            created = self.store.create_room(code, creator, address, now)
            if created.outcome is CreateOutcome.CODE_TAKEN:
                continue
            if created.outcome is CreateOutcome.TOO_MANY_ROOMS:
                raise TooManyAttempts(created.retry_after, "too_many_rooms")
            if created.outcome is CreateOutcome.SERVER_FULL:
                raise ServerFull()
            self._take_token("create", address, self.settings.creates_per_minute)
            return Membership(code, creator.member_id, name)
        raise NoFreeCode()

    def join_room(
        self,
        raw_code: str,
        raw_name: str,
        held: Membership | None = None,
        address: str = NO_ADDRESS,
    ) -> Membership:
        """Seat a member in an existing room (pending until it connects).

        ``held`` is the session's earlier membership there, if any. While it
        still has its seat, joining again keeps the seat and its name; once
        it has ended, the member is seated again under the name given now.
        Raise TooManyAttempts, recording nothing, when ``address`` has no
        failed joins left or is past JOINS_PER_MINUTE; a join refused for
        its code, its name or the room counts as a failed join.
        """
        self._admit_join(address)
        try:
            membership = self._join(raw_code, raw_name, held)
        except (InvalidCode, InvalidName, RoomNotFound, NameTaken, RoomFull):
            self._take_token("joinfail", address, self.settings.join_failures_per_minute)
            raise
        self._take_token("join", address, self.settings.joins_per_minute)
        return membership

    def refuse_form(self, action: str, address: str = NO_ADDRESS) -> None:
        """Count a lobby form refused for its fields: a failed join when joining.

        Raise TooManyAttempts instead, recording nothing, when the address
        is over its limits for ``action`` (``create`` or ``join``): that
        answer comes before any other.
        """
        if action != "join":
            self._admit("create", address, self.settings.creates_per_minute)
            return
        self._admit_join(address)
        self._take_token("joinfail", address, self.settings.join_failures_per_minute)

    def is_member(self, code: str, member_id: str) -> bool:
        """Tell whether the member may open the room (holds or may renew a seat)."""
        return self.store.has_membership(code, member_id, self.clock())

    def leave(self, code: str, member_id: str) -> Ended | None:
        """End a membership for good; None when there was none."""
        now = self.clock()
        return self.store.leave(code, member_id, utc_timestamp(now), now)

    # -- connections ----------------------------------------------------------

    def connect(self, code: str, member_id: str, conn_id: str, last_id: object = None) -> Welcome:
        """Attach a connection to its membership; raise if it may not connect."""
        if not isinstance(last_id, int) or isinstance(last_id, bool) or last_id < 0:
            last_id = None
        now = self.clock()
        result = self.store.connect(
            code,
            member_id,
            conn_id,
            last_id,
            self.settings.history_on_join,
            utc_timestamp(now),
            now,
            now + self.settings.connection_lease,
        )
        if result.outcome is ConnectOutcome.NO_ROOM:
            raise RoomNotFound(code)
        if result.outcome is ConnectOutcome.NOT_MEMBER:
            raise NotJoined(code)
        return Welcome(
            code,
            result.name,
            result.members,
            result.history,
            result.latest_id,
            result.truncated,
            result.notice,
        )

    def disconnect(self, code: str, member_id: str, conn_id: str) -> int | None:
        """Detach a connection; return a token when the member has none left."""
        return self.store.disconnect(code, member_id, conn_id, self.clock())

    def end_if_gone(self, code: str, member_id: str, token: int) -> Ended | None:
        """End the membership if no connection came back since ``token``."""
        now = self.clock()
        return self.store.end_if_gone(code, member_id, token, utc_timestamp(now), now)

    def renew_leases(self, connections: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
        """Keep this process's ``(code, member, conn)`` connections alive in the store.

        Return those the store no longer holds (swept as dead meanwhile).
        """
        if not connections:
            return []
        return self.store.renew_leases(connections, self.clock() + self.settings.connection_lease)

    def dead_connections(self) -> list[tuple[str, str, str]]:
        """Return connections whose process stopped renewing their leases."""
        return self.store.expired_connections(self.clock())

    # -- messages -------------------------------------------------------------

    def post(self, code: str, member_id: str, payload: object) -> tuple[int, Message | None]:
        """Record a chat line from a ``send`` payload.

        Return its id and the new Message, or the first id and None when the
        ``cid`` was used before. Raise SendRefused with the ack's error code.
        """
        text, cid = self._parse_send(payload)
        now = self.clock()
        s = self.settings
        result = self.store.append(
            code, member_id, text, cid, utc_timestamp(now), s.send_rate, s.send_burst, now
        )
        if result.outcome is AppendOutcome.NOT_MEMBER:
            raise SendRefused("not_joined")
        if result.outcome is AppendOutcome.RATE_LIMITED:
            raise SendRefused("rate_limited", result.retry_after)
        return result.message_id, result.message

    def typing(self, code: str, member_id: str) -> str | None:
        """Return the name to relay as typing, or None when throttled."""
        return self.store.touch_typing(code, member_id, self.settings.typing_interval, self.clock())

    def ping(self) -> None:
        """Raise StoreUnavailable unless the store answers."""
        self.store.ping()

    # -- helpers --------------------------------------------------------------

    def _join(self, raw_code: str, raw_name: str, held: Membership | None) -> Membership:
        code = self.normalize_code(raw_code)
        name = self.normalize_name(raw_name)
        now = self.clock()
        member = self._new_member(held.member_id if held else self.new_member_id(), name, now)
        outcome = self.store.add_member(code, member, now)
        if outcome is AddOutcome.NO_ROOM:
            raise RoomNotFound(code)
        if outcome is AddOutcome.NAME_TAKEN:
            raise NameTaken(name)
        if outcome is AddOutcome.FULL:
            raise RoomFull(code)
        if outcome is AddOutcome.ALREADY and held is not None:
            return held
        return Membership(code, member.member_id, name)

    def _admit_join(self, address: str) -> None:
        # Failed joins first: once they are spent, even a right guess is refused.
        self._admit("joinfail", address, self.settings.join_failures_per_minute)
        self._admit("join", address, self.settings.joins_per_minute)

    def _admit(self, kind: str, address: str, per_minute: int) -> None:
        """Raise TooManyAttempts unless bucket ``kind`` of the address holds a token."""
        rate = per_minute / 60
        tokens = self.store.tokens(f"{kind}:{address}", rate, per_minute, self.clock())
        if tokens < 1:
            raise TooManyAttempts((1 - tokens) / rate)

    def _take_token(self, kind: str, address: str, per_minute: int) -> None:
        self.store.take_token(f"{kind}:{address}", per_minute / 60, per_minute, self.clock())

    def _new_member(self, member_id: str, name: str, now: float) -> NewMember:
        connect_by = now + self.settings.member_connect_timeout
        return NewMember(member_id, name, name_keys(name), connect_by)

    def _parse_send(self, payload: object) -> tuple[str, str | None]:
        if not isinstance(payload, dict) or not isinstance(payload.get("text"), str):
            raise SendRefused("invalid")
        cid = payload.get("cid")
        if cid is not None and not (isinstance(cid, str) and CID_PATTERN.fullmatch(cid)):
            raise SendRefused("invalid")
        text = payload["text"].replace("\r\n", "\n").replace("\r", "\n")
        if _REFUSED_IN_TEXT.search(text):  # before strip(), which eats \x1c-\x1f
            raise SendRefused("invalid")
        text = text.strip()
        if not text:
            raise SendRefused("empty")
        if len(text) > self.settings.message_max_length:
            raise SendRefused("too_long")
        return text, cid


def _random_code(length: int) -> str:
    return "".join(secrets.choice(string.ascii_uppercase) for _ in range(length))
