"""The ``/chat`` Socket.IO namespace: thin handlers over the RoomRegistry."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import Any
from typing import NoReturn

from flask import current_app
from flask import Flask
from flask import g
from flask import request
from flask_socketio import ConnectionRefusedError
from flask_socketio import Namespace
from werkzeug.exceptions import SecurityError

from chatapp import memberships
from chatapp import packets
from chatapp.addresses import origin_allowed
from chatapp.broadcast import Broadcaster
from chatapp.extensions import get_registry
from chatapp.extensions import socketio
from chatapp.guard import EngineGuard
from chatapp.housekeeping import Housekeeper
from chatapp.logs import log_event
from chatapp.logs import log_refusal
from chatapp.metrics import Metrics
from chatapp.names import normalize_code
from chatapp.rooms import NotJoined
from chatapp.rooms import RoomNotFound
from chatapp.rooms import SendRefused
from chatapp.rooms import StoreUnavailable
from chatapp.stores.base import ANY_EPOCH
from chatapp.stores.base import GONE

CHAT_NAMESPACE = packets.CHAT_NAMESPACE
CLIENT_EVENTS = frozenset({"send", "typing"})
RESERVED_EVENTS = frozenset({"connect", "disconnect"})
GRACE_RETRIES = 30  # a membership ends once the store is back, within ~8 minutes
# Memberships ended at once: a mass departure (a process that died with 2,000
# connections, a network cut) wakes a grace timer for each, and with all of
# them running together every live line waited behind their store calls and
# notices (300 ms stalls each sweep, benchmarks/README.md).
ENDINGS_AT_ONCE = 4


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
    """Connect members to their rooms and relay their lines."""

    def __init__(
        self, namespace: str, broadcaster: Broadcaster, metrics: Metrics, guard: EngineGuard
    ) -> None:
        super().__init__(namespace)
        self.broadcaster = broadcaster
        self.metrics = metrics
        self.guard = guard  # counts invalid input against the connection's budget
        self._connections: dict[str, tuple[str, str]] = {}  # sid -> (code, member id)
        self._sids: defaultdict[tuple[str, str], set[str]] = defaultdict(set)
        self._housekeeper: Housekeeper | None = None
        self.closing = False
        self._endings = threading.BoundedSemaphore(ENDINGS_AT_ONCE)
        metrics.track_presence(
            connections=lambda: len(self._connections),
            rooms=lambda: len({code for code, _ in self._sids}),
            members=lambda: len(self._sids),
        )

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
        if self.closing:
            refuse("unavailable")  # shutting down: the client reconnects elsewhere
        if membership is None:
            refuse("not_joined")
        code, member_id, sid = membership.code, membership.member_id, current_sid()
        if self.broadcaster.sequencer is not None and self._housekeeper is None:
            self._start_housekeeping()  # before this process gets its first room's messages
        with self.broadcaster.lock(code):
            try:
                welcome = get_registry().connect(code, member_id, sid, auth.get("last_id"))
            except RoomNotFound:
                refuse("room_not_found", code)
            except NotJoined:
                refuse("not_joined", code)
            except StoreUnavailable:
                refuse("unavailable", code)
            self._connections[sid] = (code, member_id)
            self._sids[code, member_id].add(sid)
            try:
                if welcome.notice is not None:
                    log_event("join", room=code, members=len(welcome.members))
                    self.broadcaster.notice(code, welcome.notice, welcome.members)
                self.broadcaster.admit(code, sid, welcome.joined_payload(), welcome.latest_id)
            except BaseException as error:
                # A refused socket gets no disconnect event: undo the connect
                # here, or the member would stay present with no socket.
                self._forget(sid)
                if isinstance(error, StoreUnavailable):
                    refuse("unavailable", code)
                raise

    def on_disconnect(self, reason: object = None) -> None:
        """Detach the connection; end the membership after the grace period."""
        self._forget(current_sid())

    def _forget(self, sid: str) -> None:
        """Drop a connection of this process; end its membership after the grace."""
        code, member_id = self._connections.pop(sid, (None, None))
        if code is None or member_id is None:
            return
        sids = self._sids[code, member_id]
        sids.discard(sid)
        if not sids:
            del self._sids[code, member_id]
        self.broadcaster.release(code, sid)
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        self._detach(app, code, member_id, sid)

    def on_send(self, *args: Any) -> dict[str, Any]:
        """Record a chat line, deliver it, and acknowledge it."""
        started = time.perf_counter()
        connection = self._connections.get(current_sid())
        if connection is None:
            return self._refused("not_joined", None)
        code, member_id = connection
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

    def _refused(
        self, error: str, code: str | None, ack: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        log_refusal("send_refused", error, current_addr(), room=code)
        self.metrics.rejected.labels(error).inc()
        if error == "invalid":
            self._spend_invalid(current_sid())
        return ack or {"ok": False, "error": error}

    def _spend_invalid(self, sid: str) -> None:
        """Count invalid input against the connection's budget (chatapp.guard)."""
        eio_sid = self.server.manager.eio_sid_from_sid(sid, self.namespace)
        if eio_sid is not None:
            self.guard.spend_invalid(eio_sid)

    def on_typing(self, *args: Any) -> None:
        """Relay that a member is typing, at most once per interval."""
        connection = self._connections.get(current_sid())
        if connection is None:
            return
        code, member_id = connection
        try:
            name = get_registry().typing(code, member_id)
        except StoreUnavailable:
            return
        if name is not None:
            self.broadcaster.typing(code, name, skip=self._sids.get((code, member_id), ()))

    def close_all(self) -> None:
        """Refuse new connections and tell every local one to go.

        Clients see a server disconnect, reconnect (to another process
        behind the load balancer, or to this one once restarted) and catch
        up by ``last_id``; every acknowledged line is already in the store.
        """
        self.closing = True
        for sid in list(self._connections):
            socketio.server.disconnect(sid, namespace=self.namespace)

    def local_connections(self) -> list[tuple[str, str, str]]:
        """Return this process's connections as ``(code, member id, sid)``."""
        return [(code, member, sid) for sid, (code, member) in list(self._connections.items())]

    def _detach(self, app: Flask, code: str, member_id: str, sid: str) -> None:
        """Detach a gone connection; end the membership after the grace."""
        if sid == GONE:  # the sweep: a member gone for a grace that nobody ended
            socketio.start_background_task(
                self._end_after_grace, app, code, member_id, ANY_EPOCH, 0.0
            )
            return
        with app.app_context():
            try:
                token = get_registry().disconnect(code, member_id, sid)
            except StoreUnavailable:
                # Its lease will run out, and the sweep of a live process will end it.
                return
        if token is not None:
            socketio.start_background_task(self._end_after_grace, app, code, member_id, token)

    def _end_after_grace(
        self, app: Flask, code: str, member_id: str, token: int, grace: float | None = None
    ) -> None:
        socketio.sleep(app.config["LEAVE_GRACE_SECONDS"] if grace is None else grace)
        for attempt in range(GRACE_RETRIES):
            with self._endings, app.app_context(), self.broadcaster.lock(code):
                try:
                    ended = get_registry().end_if_gone(code, member_id, token)
                except StoreUnavailable:
                    ended = None
                else:
                    if ended is not None:
                        log_event("leave", room=code, members=len(ended.members))
                        self.broadcaster.departure(code, ended)
                    return
            app.logger.warning(
                "store unavailable: ending a membership in %s, retry %d", code, attempt
            )
            socketio.sleep(1 + attempt)

    def _start_housekeeping(self) -> None:
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        sequencer = self.broadcaster.sequencer
        assert sequencer is not None
        self._housekeeper = Housekeeper(
            app,
            get_registry(),
            sequencer,
            self.local_connections,
            lambda code, member_id, sid: self._detach(app, code, member_id, sid),
            # The client connects again on a server disconnect (chat.js).
            lambda sid: socketio.server.disconnect(sid, namespace=self.namespace),
        )
        self._housekeeper.start()
