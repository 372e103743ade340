"""Extension singletons, bound to an app by ``create_app``, and accessors."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import current_app
from flask_socketio import SocketIO
from flask_wtf import CSRFProtect

if TYPE_CHECKING:
    from chatapp.broadcast import Broadcaster
    from chatapp.rooms import RoomRegistry

socketio = SocketIO()
csrf = CSRFProtect()


def get_registry() -> RoomRegistry:
    """Return the current app's RoomRegistry."""
    registry: RoomRegistry = current_app.extensions["room_registry"]
    return registry


def get_broadcaster() -> Broadcaster:
    """Return the current app's Broadcaster (delivery to the /chat namespace)."""
    broadcaster: Broadcaster = current_app.extensions["chat_broadcaster"]
    return broadcaster
