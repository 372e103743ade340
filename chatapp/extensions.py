"""Extension singletons, bound to an app by ``create_app``, and accessors."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import current_app
from flask_socketio import SocketIO
from flask_wtf import CSRFProtect

if TYPE_CHECKING:
    from chatapp.presence import Presence
    from chatapp.rooms import RoomRegistry

socketio = SocketIO()
csrf = CSRFProtect()


def get_registry() -> RoomRegistry:
    """Return the current app's RoomRegistry."""
    registry: RoomRegistry = current_app.extensions["room_registry"]
    return registry


def get_presence() -> Presence:
    """Return the current app's Presence (connections and the end of memberships)."""
    presence: Presence = current_app.extensions["chat_presence"]
    return presence
