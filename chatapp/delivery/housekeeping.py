"""Per-process upkeep for a store shared by several processes (Redis).

Two background tasks per process. One listens for the messages other
processes record in this process's rooms (chatapp.delivery.sequencer). The other fills
delivery gaps from the store, renews the leases of this process's
connections (and so its place in their rooms), and detaches connections
whose process died (their leases ran out), so that a ``kill -9`` leaves no
ghost member for longer than the lease plus the leave grace.

A store outage longer than a lease lets every lease run out, the live ones
too: once the store is back, each process renews all of its leases at once
and sweeps nothing for one renewal period, in which the others do the same.
A process that was away alone may find its connections swept as dead by
the others: it tells those sockets to connect again.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from flask import Flask

from chatapp.delivery.sequencer import DeliveryListener
from chatapp.delivery.sequencer import RoomSequencer
from chatapp.extensions import socketio
from chatapp.rooms import RoomRegistry
from chatapp.stores.base import SharedStore
from chatapp.stores.base import StoreUnavailable

TICK_SECONDS = 0.25
# Publications are lost only while a process is not listening (an outage, a
# restart), and the listener asks for a look at once when it listens again:
# this regular look at every room's newest id is the safety net. (Every
# second, its 500 reads at 2,000 sockets doubled the p99 of the rooms bench.)
POLL_EVERY_SECONDS = 5.0
SWEEP_EVERY_SECONDS = 2.0
RENEWALS_PER_LEASE = 3  # a lease survives two failed renewals in a row
# The renewals and the polls each go round in this many slices, one a tick.
SLICES = 20


class Rotation:
    """Spread a periodic job over its period: a slice of its items at a time.

    Done all at once every 5 s, renewing 2,000 leases and reading 500 rooms'
    newest ids held up every chat line behind them for tens of ms: that set
    the rooms bench's p99 on Redis (benchmarks/README.md). Items fall into
    slices by the hash of a key; each slice comes due once a period, at its
    own place in it. Slices that came due while the loop ran late go
    together, so none is ever skipped, then go back to their places.
    """

    def __init__(self, period: float, slices: int, start: float) -> None:
        self.period = period
        self.slices = slices
        self._due_at = [start + period * n / slices for n in range(slices)]

    def due(self, now: float) -> Callable[[str], bool]:
        """Return whether a key is in a slice due at ``now``; book their next turn."""
        due = set()
        for n, at in enumerate(self._due_at):
            if now >= at:
                due.add(n)
                # Its next turn keeps its place in the period, however late now is.
                self._due_at[n] = at + self.period * ((now - at) // self.period + 1)
        slices = self.slices
        return lambda key: hash(key) % slices in due


class Housekeeper:
    """Run the upkeep loop of one process."""

    def __init__(
        self,
        app: Flask,
        registry: RoomRegistry,
        sequencer: RoomSequencer,
        local_connections: Callable[[], list[tuple[str, str, str]]],
        detach: Callable[[str, str, str], None],
        reconnect: Callable[[str], None],
    ) -> None:
        self.app = app
        self.registry = registry
        self.sequencer = sequencer
        self.local_connections = local_connections
        self.detach = detach
        self.reconnect = reconnect
        store: SharedStore = registry.store  # type: ignore[assignment]  # only shared stores
        self.listener = DeliveryListener(store, sequencer)
        self.started = False
        start = time.monotonic()
        self._polls = Rotation(POLL_EVERY_SECONDS, SLICES, start)
        self._renew_every = registry.settings.connection_lease / RENEWALS_PER_LEASE
        self._renewals = Rotation(self._renew_every, SLICES, start)
        # A process that just started does not know whether the store was
        # away: the others get a renewal period to renew before its first sweep.
        self._next_sweep = start + self._renew_every
        self._failed = False  # a call failed since the last sweep that worked
        self._store_ok_at = start  # when the last sweep (or renewal of all) worked

    def start(self) -> None:
        """Start both loops once in this process."""
        if not self.started:
            self.started = True
            socketio.start_background_task(self.listener.run, socketio.sleep)
            socketio.start_background_task(self._run)

    def _run(self) -> None:
        while True:
            socketio.sleep(TICK_SECONDS)
            try:
                self.tick(time.monotonic())
            except StoreUnavailable:
                self.store_failed()
                self.app.logger.warning("store unavailable; upkeep retries")
            except Exception:  # the loop must outlive any one failure
                self.app.logger.exception("upkeep failed; retrying")

    def store_failed(self) -> None:
        """Note that a call to the store failed."""
        self._failed = True

    def tick(self, now: float) -> None:
        """Do the upkeep due at ``now``: a slice of the polls and of the renewals, the sweep."""
        if self._failed and now - self._store_ok_at >= self._renew_every:
            # Failing for a renewal period or more: leases may run out (they
            # last three), everyone's. Renew all of ours as soon as the store
            # answers, and let the other processes renew theirs before
            # sweeping any. A call failing now and then changes nothing.
            self._renew(self.local_connections())
            self._next_sweep = max(self._next_sweep, now + self._renew_every)
            self._failed, self._store_ok_at = False, now
        self.sequencer.fill_gaps(self._polls.due(now))
        renewing = self._renewals.due(now)
        self._renew([conn for conn in self.local_connections() if renewing(conn[2])])
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_EVERY_SECONDS
            self._sweep()
            self._failed, self._store_ok_at = False, now

    def _renew(self, connections: list[tuple[str, str, str]]) -> None:
        for _, _, sid in self.registry.renew_leases(connections):
            # Swept as dead by another process while this one could not
            # renew: the socket connects again and is in the room again.
            self.reconnect(sid)

    def _sweep(self) -> None:
        dead = self.registry.dead_connections()
        live = set(self.local_connections())
        # A lease of this process that ran out (the store was away): renewed, never swept.
        self._renew([conn for conn in dead if conn in live])
        for code, member_id, conn_id in dead:
            if (code, member_id, conn_id) not in live:
                self.detach(code, member_id, conn_id)
