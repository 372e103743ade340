"""chatapp: a self-hostable real-time chat on Flask and Flask-SocketIO.

This module imports nothing beyond the standard library at import time:
``python -m chatapp`` imports the package before ``__main__`` runs, and
gevent's monkey-patching there must come before Flask, Engine.IO and
anything that touches ``ssl`` or ``socket`` are imported. The factory
imports them when it runs, as flaskr's does.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Mapping
from typing import Any
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask
    from flask.typing import ResponseReturnValue

    from chatapp.engine.guard import EngineGuard
    from chatapp.rooms import RoomRegistry
    from chatapp.web.refusals import RefusalLog

SECRET_KEY_FILE = "secret_key"


def create_app(
    config: str | type = "config.ProductionConfig",
    overrides: Mapping[str, Any] | None = None,
) -> Flask:
    """Create and configure a chatapp application."""
    from flask import Flask
    from werkzeug.middleware.proxy_fix import ProxyFix

    from chatapp import lobby
    from chatapp import room
    from chatapp.extensions import csrf
    from chatapp.web.cookie import ChatSessionInterface
    from chatapp.web.errors import register_error_handlers
    from chatapp.web.security import register_request_limits
    from chatapp.web.security import register_security_headers

    app = Flask(
        __name__,
        instance_relative_config=True,
        instance_path=os.environ.get("CHATAPP_INSTANCE_PATH") or None,
    )
    app.config.from_object(config)
    if not app.testing:
        app.config.from_pyfile("config.py", silent=True)
        app.config.from_prefixed_env("CHATAPP")
    app.config.update(overrides or {})
    _normalize_config(app)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _instance_secret_key(app)

    app.session_interface = ChatSessionInterface()
    app.extensions["refusal_log"] = _make_refusal_log()
    register_request_limits(app)  # before CSRFProtect's check, which reads the form
    csrf.init_app(app)
    app.extensions["room_registry"] = _make_registry(app)
    _register_socketio(app)
    for blueprint in (lobby.bp, room.bp):
        app.register_blueprint(blueprint)
    _register_health(app)
    register_error_handlers(app)
    register_security_headers(app)
    if app.config["TRUSTED_PROXIES"]:
        hops = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]
    return app


def _normalize_config(app: Flask) -> None:
    """Accept comma-separated lists from the environment."""
    origins = app.config["ALLOWED_ORIGINS"]
    if isinstance(origins, str):
        app.config["ALLOWED_ORIGINS"] = [o.strip() for o in origins.split(",") if o.strip()]


def _instance_secret_key(app: Flask) -> str:
    """Return the key kept in the instance folder, generating it the first time.

    The key is written to a file of its own, then linked into place, which
    fails if the name exists: of several processes starting at once (two
    containers on one volume) the first to link wins, and the others read
    its whole key, never a file still being written.
    """
    os.makedirs(app.instance_path, exist_ok=True)
    path = os.path.join(app.instance_path, SECRET_KEY_FILE)
    if not os.path.exists(path):
        fd, draft = tempfile.mkstemp(dir=app.instance_path, prefix=".secret_key.")  # 0600
        try:
            with os.fdopen(fd, "w", encoding="ascii") as new:
                new.write(secrets.token_hex(32) + "\n")
            os.link(draft, path)
        except FileExistsError:
            pass  # another process linked its key first: use that one
        finally:
            os.unlink(draft)
    with open(path, encoding="ascii") as existing:
        key = existing.read().strip()
    if not key:
        raise RuntimeError(f"{path} is empty: delete it to generate a new key")
    return key


def _make_refusal_log() -> RefusalLog:
    from chatapp.extensions import socketio
    from chatapp.web.logs import write_event
    from chatapp.web.refusals import RefusalLog

    # Looked up when a refusal comes: socketio's server is this app's by then.
    return RefusalLog(
        write_event,
        lambda task: socketio.start_background_task(task),
        lambda seconds: socketio.sleep(seconds),
    )


def _make_guard(app: Flask, namespace: str) -> EngineGuard:
    from chatapp.engine.budget import InputPolicy
    from chatapp.engine.guard import EngineGuard
    from chatapp.engine.guard import GuardSettings
    from chatapp.web.addresses import client_address_finder

    cfg = app.config
    settings = GuardSettings(
        connections_per_address=cfg["CONNECTIONS_PER_ADDRESS"],
        handshakes_per_minute=cfg["HANDSHAKES_PER_MINUTE"],
        connect_timeout=cfg["CONNECT_TIMEOUT_SECONDS"],
        max_frame_bytes=cfg["MAX_FRAME_BYTES"],
        input=InputPolicy(
            packets_per_second=cfg["INPUT_RATE"],
            packet_burst=cfg["INPUT_BURST"],
            bytes_per_second=cfg["INPUT_BYTES_PER_SECOND"],
            byte_burst=4 * cfg["MAX_FRAME_BYTES"],
        ),
    )
    return EngineGuard(
        app.wsgi_app,
        settings,
        namespace,
        client_address_finder(cfg["TRUSTED_PROXIES"]),
        app.extensions["refusal_log"].refuse,
    )


def _register_socketio(app: Flask) -> None:
    from chatapp.delivery.broadcast import Broadcaster
    from chatapp.delivery.sequencer import RoomSequencer
    from chatapp.engine.fastpath import FastEmitManager
    from chatapp.engine.fastpath import RedisFastEmitManager
    from chatapp.engine.packets import safe_packet_class
    from chatapp.engine.transport import WebSocketSessions
    from chatapp.extensions import socketio
    from chatapp.presence import Presence
    from chatapp.sockets import CHAT_NAMESPACE
    from chatapp.sockets import ChatNamespace
    from chatapp.web.metrics import Metrics
    from chatapp.web.metrics import register_metrics

    cfg = app.config
    sequencer = None
    manager: Any
    if _is_shared(cfg["STORE"]):
        # Broadcasts between processes go through the same Redis.
        sequencer = RoomSequencer(app.extensions["room_registry"].store)
        manager = RedisFastEmitManager(cfg["STORE"])
    else:
        # Encodes each broadcast once and writes it to every WebSocket directly.
        manager = FastEmitManager()
    socketio.init_app(
        app,
        async_mode=cfg["SOCKETIO_ASYNC_MODE"],
        # Origins are checked in the connect handler, which refuses with the
        # reason "origin"; an empty list turns off Engine.IO's own CORS
        # handling, so no CORS header ever names a foreign origin.
        cors_allowed_origins=[],
        max_http_buffer_size=cfg["MAX_FRAME_BYTES"],
        ping_interval=cfg["SOCKETIO_PING_INTERVAL"],
        ping_timeout=cfg["SOCKETIO_PING_TIMEOUT"],
        # One connection's events run in order, in its own reader; a sender's
        # lines keep their order and no greenlet is spawned per event.
        async_handlers=False,
        # Packets no client library writes become an ignored event, not a traceback.
        serializer=safe_packet_class(CHAT_NAMESPACE),
        client_manager=manager,
        # Only /chat exists: a CONNECT to any other namespace gets CONNECT_ERROR.
        namespaces=[CHAT_NAMESPACE],
    )
    # Every session's input, address and time limits (chatapp.engine.guard).
    guard = _make_guard(app, CHAT_NAMESPACE)
    guard.install(socketio.server)
    app.extensions["engine_guard"] = guard
    app.wsgi_app = guard  # type: ignore[method-assign]
    # New WebSocket sessions are served by the event loop, one small object each.
    sessions = WebSocketSessions(
        app.wsgi_app,
        socketio.server,
        app,
        cfg["MAX_FRAME_BYTES"],
        guard,
        # A shared store's round trip is what a send waits for: a connection's
        # next sends may go meanwhile and share it.
        overlap=sequencer is not None,
    )
    app.wsgi_app = sessions  # type: ignore[method-assign]
    broadcaster = Broadcaster(socketio, CHAT_NAMESPACE, sequencer)
    metrics = Metrics()
    register_metrics(app, metrics)
    presence = Presence(app, app.extensions["room_registry"], broadcaster, socketio, CHAT_NAMESPACE)
    app.extensions["chat_presence"] = presence
    namespace = ChatNamespace(CHAT_NAMESPACE, presence, broadcaster, metrics, guard)
    socketio.on_namespace(namespace)

    def graceful_stop(timeout: float) -> None:
        # Every local socket is told to go (it reconnects elsewhere, or here
        # once restarted, and catches up by last_id); then its WebSocket has
        # up to ``timeout`` to close before it is closed.
        presence.close_all()
        sessions.wait_closed(timeout)

    app.extensions["graceful_stop"] = graceful_stop


def _is_shared(store_url: str) -> bool:
    return store_url != "memory"


def _make_registry(app: Flask) -> RoomRegistry:
    from chatapp.rooms import RoomRegistry
    from chatapp.rooms import Settings
    from chatapp.stores import Limits
    from chatapp.stores import make_store

    cfg = app.config
    limits = Limits(
        max_members=cfg["ROOM_MAX_MEMBERS"],
        history_limit=cfg["ROOM_HISTORY_LIMIT"],
        idle_ttl=cfg["ROOM_IDLE_TTL"],
        leave_grace=cfg["LEAVE_GRACE_SECONDS"],
        max_rooms=cfg["MAX_ROOMS"],
        rooms_per_address=cfg["ROOMS_PER_ADDRESS"],
        history_bytes=cfg["ROOM_HISTORY_BYTES"],
    )
    settings = Settings(
        code_length=cfg["ROOM_CODE_LENGTH"],
        name_max_length=cfg["NAME_MAX_LENGTH"],
        message_max_length=cfg["MESSAGE_MAX_LENGTH"],
        history_on_join=cfg["HISTORY_ON_JOIN"],
        member_connect_timeout=cfg["MEMBER_CONNECT_SECONDS"],
        send_rate=cfg["SEND_RATE"],
        send_burst=cfg["SEND_BURST"],
        typing_interval=cfg["TYPING_INTERVAL_SECONDS"],
        join_failures_per_minute=cfg["JOIN_FAILURES_PER_MINUTE"],
        creates_per_minute=cfg["CREATES_PER_MINUTE"],
        joins_per_minute=cfg["JOINS_PER_MINUTE"],
        connection_lease=cfg["CONNECTION_LEASE_SECONDS"],
    )
    return RoomRegistry(make_store(cfg["STORE"], limits), settings)


def _register_health(app: Flask) -> None:
    from flask import jsonify

    from chatapp.extensions import get_registry
    from chatapp.stores import StoreUnavailable

    @app.get("/healthz")
    def healthz() -> ResponseReturnValue:
        try:
            get_registry().ping()
        except StoreUnavailable:
            return jsonify(status="unavailable"), 503
        return jsonify(status="ok")
