"""The session's memberships: which rooms this browser joined, under which name.

The signed session cookie holds them as ``[[code, member_id, name], ...]``,
oldest first (a list, because the session serializer sorts object keys).
The server stays the authority: a membership in the cookie is only a claim
that the RoomRegistry checks.
"""

from __future__ import annotations

from flask import session

from chatapp.domain import Membership

SESSION_KEY = "rooms"
MAX_MEMBERSHIPS = 10


def memberships() -> list[Membership]:
    """Return the memberships the session holds, oldest first."""
    raw = session.get(SESSION_KEY)
    if not isinstance(raw, list):
        return []
    return [
        Membership(*entry)
        for entry in raw
        if isinstance(entry, list) and len(entry) == 3 and all(isinstance(v, str) for v in entry)
    ]


def find(code: str) -> Membership | None:
    """Return the session's membership in room ``code``, if any."""
    return next((m for m in memberships() if m.code == code), None)


def newest() -> Membership | None:
    """Return the membership joined most recently, if any."""
    held = memberships()
    return held[-1] if held else None


def remember(membership: Membership) -> None:
    """Record a membership as the newest, dropping the oldest past the limit."""
    held = [m for m in memberships() if m.code != membership.code]
    held.append(membership)
    _store(held[-MAX_MEMBERSHIPS:])


def forget(code: str) -> Membership | None:
    """Drop the membership in room ``code`` from the session and return it."""
    held = memberships()
    dropped = next((m for m in held if m.code == code), None)
    if dropped is not None:
        _store([m for m in held if m.code != code])
    return dropped


def _store(held: list[Membership]) -> None:
    session[SESSION_KEY] = [[m.code, m.member_id, m.name] for m in held]
    session.permanent = True
