"""Store backends for the RoomRegistry, chosen by the ``STORE`` setting."""

from __future__ import annotations

from chatapp.domain import Message
from chatapp.stores.base import Limits
from chatapp.stores.base import Store
from chatapp.stores.base import StoreUnavailable
from chatapp.stores.memory import MemoryStore

__all__ = ["Limits", "MemoryStore", "Message", "Store", "StoreUnavailable", "make_store"]


def make_store(url: str, limits: Limits) -> Store:
    """Return the store that ``url`` names: ``memory`` or ``redis://...``."""
    if url == "memory":
        return MemoryStore(limits)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from chatapp.stores.redis import RedisStore

        return RedisStore(url, limits)
    raise ValueError(f"unknown STORE {url!r}: use 'memory' or 'redis://host:port/db'")
