"""Read what a Flask-SocketIO test client received on /chat."""

from __future__ import annotations

from typing import Any

from flask_socketio import SocketIOTestClient

from chatapp.sockets import CHAT_NAMESPACE


def events(client: SocketIOTestClient, name: str) -> list[Any]:
    """Return the payloads of the events called ``name`` received so far."""
    payloads = []
    for packet in client.get_received(CHAT_NAMESPACE):
        if packet["name"] == name:
            args = packet["args"]
            payloads.append(args[0] if isinstance(args, list) else args)
    return payloads


def received(client: SocketIOTestClient) -> list[tuple[str, Any]]:
    """Return ``(event, payload)`` for everything received so far."""
    out = []
    for packet in client.get_received(CHAT_NAMESPACE):
        args = packet["args"]
        out.append((packet["name"], args[0] if isinstance(args, list) else args))
    return out
