"""Fixtures of the engine tests: BoundedWebSockets on socket pairs, with no server."""

from __future__ import annotations

import logging
import types

import gevent.socket
import pytest

from chatapp.engine.websocket import BoundedWebSocket
from tests.support.wire import ByteStream


class _FakeHandler:
    """What a BoundedWebSocket asks of its pywsgi handler."""

    logger = logging.getLogger(__name__)
    server = types.SimpleNamespace(application=None)

    def __init__(self, sock):
        self.socket = sock


@pytest.fixture
def websocket_pair():
    """Make BoundedWebSockets on one end of socket pairs; close them afterwards."""
    opened = []

    def make(incoming=b""):
        ours, theirs = gevent.socket.socketpair()
        opened.extend((ours, theirs))
        return BoundedWebSocket({}, ByteStream(incoming), _FakeHandler(ours), 65536), theirs

    yield make
    for sock in opened:
        sock.close()
