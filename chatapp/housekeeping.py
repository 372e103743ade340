"""Per-process upkeep for a store shared by several processes (Redis).

One background task per process: it fills delivery gaps from the store,
renews the leases of this process's connections, and detaches connections
whose process died (their leases ran out), so that a ``kill -9`` leaves no
ghost member for longer than the lease plus the leave grace.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from flask import Flask

from chatapp.delivery import RoomSequencer
from chatapp.extensions import socketio
from chatapp.rooms import RoomRegistry
from chatapp.stores.base import StoreUnavailable

TICK_SECONDS = 0.25
SWEEP_EVERY_SECONDS = 2.0
RENEWALS_PER_LEASE = 3  # a lease survives two failed renewals in a row


class Housekeeper:
    """Run the upkeep loop of one process."""

    def __init__(
        self,
        app: Flask,
        registry: RoomRegistry,
        sequencer: RoomSequencer,
        local_connections: Callable[[], list[tuple[str, str, str]]],
        detach: Callable[[str, str, str], None],
    ) -> None:
        self.app = app
        self.registry = registry
        self.sequencer = sequencer
        self.local_connections = local_connections
        self.detach = detach
        self.started = False

    def start(self) -> None:
        """Start the loop once in this process."""
        if not self.started:
            self.started = True
            socketio.start_background_task(self._run)

    def _run(self) -> None:
        next_renew = next_sweep = 0.0
        renew_every = self.registry.settings.connection_lease / RENEWALS_PER_LEASE
        while True:
            socketio.sleep(TICK_SECONDS)
            try:
                self.sequencer.fill_gaps()
                now = time.monotonic()
                if now >= next_renew:
                    next_renew = now + renew_every
                    self.registry.renew_leases(self.local_connections())
                if now >= next_sweep:
                    next_sweep = now + SWEEP_EVERY_SECONDS
                    for code, member_id, conn_id in self.registry.dead_connections():
                        self.detach(code, member_id, conn_id)
            except StoreUnavailable:
                self.app.logger.warning("store unavailable; upkeep retries")
            except Exception:  # the loop must outlive any one failure
                self.app.logger.exception("upkeep failed; retrying")
