"""A person using the app in this process, through Flask's and Flask-SocketIO's test clients."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask
from flask_socketio import SocketIOTestClient

SocketFactory = Callable[..., SocketIOTestClient]


class InProcessPerson:
    """One browser of an app in this process: its own test client (cookie jar), forms and sockets.

    (``tests.support.liveserver.LivePerson`` is its twin for a live server.)
    """

    def __init__(self, app: Flask, make_socket: SocketFactory) -> None:
        self.client = app.test_client()
        self._make_socket = make_socket
        self.code = ""

    def create_room(self, name: str) -> str:
        """Create a room as ``name``; return its code."""
        response = self.client.post("/", data={"name": name, "code": "", "create": ""})
        assert response.status_code == 303, response.data
        self.code = response.headers["Location"].rsplit("/", 1)[1]
        return self.code

    def join(self, code: str, name: str) -> None:
        """Join room ``code`` as ``name`` (must succeed)."""
        response = self.client.post("/", data={"name": name, "code": code, "join": ""})
        assert response.status_code == 303, response.data
        self.code = response.headers["Location"].rsplit("/", 1)[1]

    def socket(self, **auth: Any) -> SocketIOTestClient:
        """Connect a tab to the room (``auth`` as the protocol's payload)."""
        return self._make_socket(self.client, auth=auth or None)
