"""Presence: which members are connected to this process, and when a membership ends.

A member may hold several connections (tabs), here or on other processes.
This process keeps its own (sid -> room and member). When a member's last
connection here goes, the store is told; if none comes back anywhere
within LEAVE_GRACE_SECONDS, the membership ends with a ``leave`` notice. A
reload or a dropped network makes no notice.

A membership ends in one way, whatever ended it (the Leave button, the
grace running out, the sweep of a process that died): the store records
the end, the event is logged, the notice and the new member list go to the
room, and the member's connections still open here are closed. That is
``_end``; ``leave`` and the grace timers both use it.
"""

from __future__ import annotations

import threading
from collections import defaultdict

from flask import Flask
from flask_socketio import SocketIO

from chatapp.delivery.broadcast import Broadcaster
from chatapp.delivery.housekeeping import Housekeeper
from chatapp.domain import Ended
from chatapp.rooms import RoomRegistry
from chatapp.rooms import Welcome
from chatapp.stores.base import ANY_EPOCH
from chatapp.stores.base import GONE
from chatapp.stores.base import StoreUnavailable
from chatapp.web.logs import log_event

# A membership whose end the store could not record is tried again, the
# n-th time after n seconds: for about 8 minutes, then left to the sweep.
GRACE_RETRIES = 30
# Memberships ended at once: a mass departure (a process that died with
# thousands of connections, a network cut) wakes a grace timer for each,
# and all of them running together made every live line wait behind their
# store calls and notices.
ENDINGS_AT_ONCE = 4


class Presence:
    """This process's connections, and the end of memberships whose connections are gone."""

    def __init__(
        self,
        app: Flask,
        registry: RoomRegistry,
        broadcaster: Broadcaster,
        socketio: SocketIO,
        namespace: str,
    ) -> None:
        self.app = app
        self.registry = registry
        self.broadcaster = broadcaster
        self.socketio = socketio
        self.namespace = namespace
        self.closing = False  # shutting down: no new connections
        self._rooms: dict[str, tuple[str, str]] = {}  # sid -> (code, member id)
        self._tabs: defaultdict[tuple[str, str], set[str]] = defaultdict(set)
        self._endings = threading.BoundedSemaphore(ENDINGS_AT_ONCE)
        self._housekeeper: Housekeeper | None = None

    # -- connections -------------------------------------------------------------

    def connect(self, code: str, member_id: str, sid: str, last_id: object) -> Welcome:
        """Attach connection ``sid`` to its membership; send it ``joined``.

        Raise the registry's refusal (RoomNotFound, NotJoined,
        StoreUnavailable) with nothing recorded here.
        """
        if self.broadcaster.sequencer is not None and self._housekeeper is None:
            self._start_housekeeping()  # before this process gets its first room's messages
        with self.broadcaster.lock(code):
            welcome = self.registry.connect(code, member_id, sid, last_id)
            self._rooms[sid] = (code, member_id)
            self._tabs[code, member_id].add(sid)
            try:
                if welcome.notice is not None:
                    log_event("join", room=code, members=len(welcome.members))
                    self.broadcaster.notice(code, welcome.notice, welcome.members)
                self.broadcaster.admit(code, sid, welcome.joined_payload(), welcome.latest_id)
            except BaseException:
                # A refused socket gets no disconnect event: undo the connect
                # here, or the member would stay present with no socket.
                self.disconnect(sid)
                raise
        return welcome

    def disconnect(self, sid: str) -> None:
        """Forget connection ``sid``; end its membership after the grace if it was the last."""
        code, member_id = self._rooms.pop(sid, (None, None))
        if code is None or member_id is None:
            return
        tabs = self._tabs[code, member_id]
        tabs.discard(sid)
        if not tabs:
            del self._tabs[code, member_id]
        self.broadcaster.release(code, sid)
        self._detach(code, member_id, sid)

    def member_of(self, sid: str) -> tuple[str, str] | None:
        """Return ``(code, member id)`` of connection ``sid``, or None."""
        return self._rooms.get(sid)

    def tabs(self, code: str, member_id: str) -> set[str]:
        """Return the member's connections to this process."""
        return self._tabs.get((code, member_id), set())

    def local_connections(self) -> list[tuple[str, str, str]]:
        """Return this process's connections as ``(code, member id, sid)``."""
        return [(code, member, sid) for sid, (code, member) in list(self._rooms.items())]

    def counts(self) -> tuple[int, int, int]:
        """Return how many connections, rooms and members this process holds."""
        return len(self._rooms), len({code for code, _ in self._tabs}), len(self._tabs)

    def close_all(self) -> None:
        """Refuse new connections and tell every local one to go.

        Clients see a server disconnect, reconnect (to another process
        behind the load balancer, or to this one once restarted) and catch
        up by ``last_id``; every acknowledged line is already in the store.
        """
        self.closing = True
        for sid in list(self._rooms):
            self._disconnect_socket(sid)

    # -- ending memberships ----------------------------------------------------------

    def leave(self, code: str, member_id: str) -> None:
        """End a membership for good now (the Leave button)."""
        with self.broadcaster.lock(code):
            self._end(code, self.registry.leave(code, member_id), by="button")

    def _end(self, code: str, ended: Ended | None, by: str | None = None) -> None:
        """The one leave sequence, once the store recorded the end: log, announce, close."""
        if ended is None:
            return
        fields = {"by": by} if by else {}
        log_event("leave", room=code, members=len(ended.members), **fields)
        self.broadcaster.departure(code, ended)

    def _detach(self, code: str, member_id: str, sid: str) -> None:
        """Tell the store a connection went; end the membership after the grace."""
        if sid == GONE:  # the sweep: a member gone for a grace that nobody ended
            self.socketio.start_background_task(
                self._end_after_grace, code, member_id, ANY_EPOCH, 0.0
            )
            return
        try:
            token = self.registry.disconnect(code, member_id, sid)
        except StoreUnavailable:
            return  # its lease runs out, and the sweep of a live process ends it
        if token is not None:
            self.socketio.start_background_task(self._end_after_grace, code, member_id, token)

    def _end_after_grace(
        self, code: str, member_id: str, token: int, grace: float | None = None
    ) -> None:
        app = self.app
        self.socketio.sleep(app.config["LEAVE_GRACE_SECONDS"] if grace is None else grace)
        for attempt in range(GRACE_RETRIES):
            with self._endings, app.app_context(), self.broadcaster.lock(code):
                try:
                    ended = self.registry.end_if_gone(code, member_id, token)
                except StoreUnavailable:
                    pass
                else:
                    self._end(code, ended)
                    return
            app.logger.warning(
                "store unavailable: ending a membership in %s, retry %d", code, attempt
            )
            self.socketio.sleep(1 + attempt)

    def _start_housekeeping(self) -> None:
        sequencer = self.broadcaster.sequencer
        assert sequencer is not None
        self._housekeeper = Housekeeper(
            self.app,
            self.registry,
            sequencer,
            self.local_connections,
            self._detach,
            self._disconnect_socket,
        )
        self._housekeeper.start()

    def _disconnect_socket(self, sid: str) -> None:
        # The client connects again on a server disconnect (chat.js).
        self.socketio.server.disconnect(sid, namespace=self.namespace)
