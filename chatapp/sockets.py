"""The ``/chat`` Socket.IO namespace: parse, call, emit, acknowledge.

Each handler checks what the client sent, asks the RoomRegistry (lines,
typing) or Presence (connections and memberships) and answers as
PROTOCOL.md says. Rules live in the registry and its stores; connection
bookkeeping and the end of memberships in chatapp.presence.
"""

from __future__ import annotations

import time
from typing import Any
from typing import NoReturn

from flask import current_app
from flask import g
from flask import request
from flask_socketio import ConnectionRefusedError
from flask_socketio import Namespace
from werkzeug.exceptions import SecurityError

from chatapp.delivery.broadcast import Broadcaster
from chatapp.engine.guard import EngineGuard
from chatapp.extensions import get_registry
from chatapp.names import normalize_code
from chatapp.presence import Presence
from chatapp.rooms import NotJoined
from chatapp.rooms import RoomNotFound
from chatapp.rooms import SendRefused
from chatapp.rooms import StoreUnavailable
from chatapp.web import memberships
from chatapp.web.addresses import origin_allowed
from chatapp.web.logs import log_refusal
from chatapp.web.metrics import Metrics

CHAT_NAMESPACE = "/chat"
CLIENT_EVENTS = frozenset({"send", "typing"})
RESERVED_EVENTS = frozenset({"connect", "disconnect"})


def refuse(reason: str, code: str | None = None) -> NoReturn:
    """Log and refuse a connection with the protocol's reason."""
    log_refusal("connect_refused", reason, request.remote_addr, room=code)
    raise ConnectionRefusedError(reason)


def current_sid() -> str:
    """Return the id of the connection whose event is being handled."""
    sid = g.get("chat_sid")  # set by ChatNamespace._trigger_in_app_context
    if sid is None:
        sid = request.sid  # type: ignore[attr-defined]  # set by Flask-SocketIO
    return str(sid)


def current_addr() -> str | None:
    """Return the client address of the connection whose event is being handled."""
    if "chat_sid" in g:
        addr: str | None = g.chat_addr
        return addr
    return request.remote_addr


class ChatNamespace(Namespace):  # type: ignore[misc]  # Flask-SocketIO is untyped
    """The /chat events: parse, call the registry and presence, emit, acknowledge."""

    def __init__(
        self,
        namespace: str,
        presence: Presence,
        broadcaster: Broadcaster,
        metrics: Metrics,
        guard: EngineGuard,
    ) -> None:
        super().__init__(namespace)
        self.presence = presence
        self.broadcaster = broadcaster
        self.metrics = metrics
        self.guard = guard  # counts invalid input against the connection's budget
        metrics.track_presence(presence.counts)

    def trigger_event(self, event: str, *args: Any) -> Any:
        """Dispatch only the protocol's events; ignore everything else.

        A client may send an event named ``connect`` or ``disconnect``;
        python-socketio delivers those to the same handlers as the real ones.
        The real ones arrive while the socket is connecting or disconnecting,
        a client's only while it is fully connected.
        """
        sid = args[0]
        if event in CLIENT_EVENTS:
            return self._trigger_in_app_context(event, *args)
        if event in RESERVED_EVENTS and not self.server.manager.is_connected(sid, self.namespace):
            return super().trigger_event(event, *args)  # the server's own connect/disconnect
        self._spend_invalid(sid)
        return self.server.not_handled

    def _trigger_in_app_context(self, event: str, sid: str, *args: Any) -> Any:
        """Run ``on_send``/``on_typing`` in an app context, not a request context.

        Flask-SocketIO pushes a request context for every event, and pushing
        it opens and verifies the session cookie again (about 100 us, more
        than the rest of a send). These handlers need the app, the sid and
        the client address, not the request or the session:
        ``current_sid()`` and ``current_addr()`` read them from ``g``.
        """
        environ = self.server.get_environ(sid, namespace=self.namespace)
        if not environ:
            return self.server.not_handled  # a client we have no record of
        with environ["flask.app"].app_context():
            g.chat_sid = sid
            g.chat_addr = environ.get("REMOTE_ADDR")
            return getattr(self, "on_" + event)(*args)

    def on_connect(self, auth: object = None) -> None:
        """Accept a member's connection and send it ``joined``."""
        try:
            own_origin = request.host_url.rstrip("/")
        except SecurityError:  # a Host header not in TRUSTED_HOSTS: not this server
            refuse("origin")
        allowed = current_app.config["ALLOWED_ORIGINS"]
        if not origin_allowed(request.headers.get("Origin"), own_origin, allowed):
            refuse("origin")
        auth = auth if isinstance(auth, dict) else {}
        room = auth.get("room")
        if isinstance(room, str):
            membership = memberships.find(normalize_code(room))
        else:
            membership = memberships.newest()
        if self.presence.closing:
            refuse("unavailable")  # shutting down: the client reconnects elsewhere
        if membership is None:
            refuse("not_joined")
        code = membership.code
        try:
            self.presence.connect(code, membership.member_id, current_sid(), auth.get("last_id"))
        except RoomNotFound:
            refuse("room_not_found", code)
        except NotJoined:
            refuse("not_joined", code)
        except StoreUnavailable:
            refuse("unavailable", code)

    def on_disconnect(self, reason: object = None) -> None:
        """Detach the connection; its membership ends after the grace period."""
        self.presence.disconnect(current_sid())

    def on_send(self, *args: Any) -> dict[str, Any]:
        """Record a chat line, deliver it, and acknowledge it."""
        started = time.perf_counter()
        member = self.presence.member_of(current_sid())
        if member is None:
            return self._refused("not_joined", None)
        code, member_id = member
        with self.broadcaster.lock(code):
            try:
                message_id, message = get_registry().post(
                    code, member_id, args[0] if len(args) == 1 else None
                )
            except SendRefused as refusal:
                return self._refused(refusal.error, code, refusal.ack())
            except StoreUnavailable:
                return self._refused("unavailable", code)
            if message is not None:
                self.broadcaster.message(code, message)
        self.metrics.accepted.inc()
        self.metrics.delivery.observe(time.perf_counter() - started)
        return {"ok": True, "id": message_id}

    def on_typing(self, *args: Any) -> None:
        """Relay that a member is typing, at most once per interval."""
        member = self.presence.member_of(current_sid())
        if member is None:
            return
        code, member_id = member
        try:
            name = get_registry().typing(code, member_id)
        except StoreUnavailable:
            return
        if name is not None:
            self.broadcaster.typing(code, name, skip=self.presence.tabs(code, member_id))

    def _refused(
        self, error: str, code: str | None, ack: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        log_refusal("send_refused", error, current_addr(), room=code)
        self.metrics.rejected.labels(error).inc()
        if error == "invalid":
            self._spend_invalid(current_sid())
        return ack or {"ok": False, "error": error}

    def _spend_invalid(self, sid: str) -> None:
        """Count invalid input against the connection's budget (chatapp.engine.guard)."""
        eio_sid = self.server.manager.eio_sid_from_sid(sid, self.namespace)
        if eio_sid is not None:
            self.guard.spend_invalid(eio_sid)
