"""The chat's domain types: what rooms hold and the registry answers.

Plain frozen dataclasses, no behaviour beyond their protocol shape. The
registry, the stores, delivery and the web layer all speak in them; they
import nothing of chatapp.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Message:
    """One recorded chat line or join/leave notice, as the protocol sends it."""

    id: int
    kind: str
    name: str
    text: str
    ts: str

    def to_dict(self) -> dict[str, Any]:
        """Return the protocol's JSON object for this message."""
        return {
            "id": self.id,
            "kind": self.kind,
            "name": self.name,
            "text": self.text,
            "ts": self.ts,
        }


@dataclass(frozen=True, slots=True)
class Ended:
    """A membership that ended: its notice, the members left, its connections."""

    notice: Message | None
    members: tuple[str, ...]
    connections: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Present:
    """Who is in a room: the names in join order, as of message ``latest_id``."""

    names: tuple[str, ...]
    latest_id: int


@dataclass(frozen=True, slots=True)
class Membership:
    """A session's seat in a room, as the session cookie remembers it."""

    code: str
    member_id: str
    name: str
