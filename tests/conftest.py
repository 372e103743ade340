"""The fixtures every layer shares; each name is defined once in the whole suite.

In this process: ``app`` (fresh per test; ``@pytest.mark.settings(NAME=value)``
overrides config before the factory runs), ``registry``, ``socketio_client``,
``people`` and ``room`` (InProcessPerson: Flask's and Flask-SocketIO's test
clients), ``refusals``. Real processes: ``start_server`` (live servers),
``live_people`` (LivePerson: HTTP and WebSocket), ``redis_server``
(one for the session) and ``redis_url`` (emptied per test), ``redis_proc``
(a Redis of the test's own). And ``closing``. A layer's own fixtures live in
its conftest.py or its module, under names of their own.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_socketio import SocketIOTestClient

from chatapp import create_app
from chatapp.extensions import socketio
from chatapp.rooms import RoomRegistry
from chatapp.sockets import CHAT_NAMESPACE
from tests.support.inprocess import InProcessPerson
from tests.support.inprocess import SocketFactory

# Short timings so presence rules can be watched in real time.
FAST = {"LEAVE_GRACE_SECONDS": 0.2}


@pytest.fixture
def app(request: pytest.FixtureRequest) -> Iterator[Flask]:
    """A fresh app; ``@pytest.mark.settings(NAME=value)`` overrides config."""
    marker = request.node.get_closest_marker("settings")
    overrides = {**FAST, **(marker.kwargs if marker else {})}
    yield create_app("config.TestingConfig", overrides)


@pytest.fixture
def registry(app: Flask) -> RoomRegistry:
    """The app's RoomRegistry."""
    return app.extensions["room_registry"]


@pytest.fixture
def socketio_client(app: Flask) -> Iterator[SocketFactory]:
    """Make Socket.IO test clients on /chat; disconnect them at teardown."""
    clients: list[SocketIOTestClient] = []

    def make(flask_client: FlaskClient | None = None, **kwargs: Any) -> SocketIOTestClient:
        client = socketio.test_client(
            app,
            namespace=CHAT_NAMESPACE,
            flask_test_client=flask_client or app.test_client(),
            **kwargs,
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        if client.is_connected(CHAT_NAMESPACE):
            client.disconnect(CHAT_NAMESPACE)


@pytest.fixture
def people(app: Flask, socketio_client: SocketFactory) -> Callable[[], InProcessPerson]:
    """Make people of this test's app (InProcessPerson), each with its own session."""
    return lambda: InProcessPerson(app, socketio_client)


@pytest.fixture
def start_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Any]]:
    """Start live servers with the given settings; stop them all at teardown, also on failure.

    ``start(gunicorn=False, open_files=None, **settings)`` returns a started
    ``LiveServer``: ``python -m chatapp``, or gunicorn with chatapp's worker.
    """
    from tests.support.liveserver import LiveServer

    servers: list[LiveServer] = []

    def start(
        gunicorn: bool = False, open_files: tuple[int, int] | None = None, **settings: object
    ) -> LiveServer:
        server = LiveServer(
            settings, tmp_path_factory.mktemp("live"), gunicorn=gunicorn, open_files=open_files
        )
        servers.append(server)
        return server.start()

    try:
        yield start
    finally:
        for server in servers:
            try:
                server.stop()
            except BaseException:
                server.kill()
                raise


@pytest.fixture
def live_people() -> Iterator[Callable[[Any], Any]]:
    """Make people of a live server or container (LivePerson); close them at teardown."""
    from tests.support.liveserver import LivePerson

    made: list[LivePerson] = []

    def make(server: Any) -> LivePerson:
        person = LivePerson(server.url)
        made.append(person)
        return person

    yield make
    for person in made:
        person.close()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server on a free loopback port, for the whole session."""
    from tests.support.redisproc import RedisProcess

    server = RedisProcess(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server.url
    server.stop()


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """The session's Redis, emptied for this test."""
    import redis

    client = redis.Redis.from_url(redis_server)
    client.flushdb()
    client.close()
    return redis_server


@pytest.fixture
def refusals(app: Flask, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Record the data of every connection the /chat namespace refuses.

    The test client swallows CONNECT_ERROR packets, so this spies on the
    handler's answer, which python-socketio sends as the packet's data.
    """
    from socketio.exceptions import ConnectionRefusedError

    seen: list[Any] = []
    namespace = socketio.server.namespace_handlers[CHAT_NAMESPACE]
    trigger = namespace.trigger_event

    def spy(event: str, *args: Any) -> Any:
        try:
            return trigger(event, *args)
        except ConnectionRefusedError as refusal:
            seen.append(refusal.error_args)
            raise

    monkeypatch.setattr(namespace, "trigger_event", spy)
    return seen


@pytest.fixture
def closing() -> Iterator[Callable[[Any], None]]:
    """Collect things with ``close()`` to close at teardown, newest first."""
    things: list[Any] = []
    yield things.append
    for thing in reversed(things):
        try:
            thing.close()
        except Exception:  # noqa: BLE001 - teardown goes on
            pass


@pytest.fixture
def room(people: Callable[[], InProcessPerson]) -> tuple[str, InProcessPerson, InProcessPerson]:
    """ada created a room and bob joined it; neither has connected yet."""
    ada, bob = people(), people()
    code = ada.create_room("ada")
    bob.join(code, "bob")
    return code, ada, bob


@pytest.fixture
def redis_proc(tmp_path: Path) -> Iterator[Any]:
    """A redis-server of this test's own, writing every change to disk first."""
    from tests.support.redisproc import RedisProcess

    server = RedisProcess(tmp_path / "redis", persistent=True)
    server.start()
    yield server
    server.stop()
