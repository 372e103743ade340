"""The upkeep: each periodic job done a slice per tick, none skipped."""

from __future__ import annotations

import time
from types import SimpleNamespace

from flask import Flask

from chatapp.delivery import RoomSequencer
from chatapp.housekeeping import Housekeeper
from chatapp.housekeeping import Rotation
from chatapp.housekeeping import TICK_SECONDS

KEYS = [f"conn-{n}" for n in range(400)]


def picked(rotation: Rotation, now: float) -> list[str]:
    due = rotation.due(now)
    return [key for key in KEYS if due(key)]


def one_period(rotation: Rotation, start: float) -> list[list[str]]:
    return [picked(rotation, start + tick * 0.25) for tick in range(20)]


def test_every_key_comes_due_once_a_period_a_slice_at_a_time():
    rotation = Rotation(period=5.0, slices=20, start=0.0)
    first = one_period(rotation, 0.0)
    assert max(len(batch) for batch in first) < len(KEYS) / 5  # a slice, not the whole job
    assert sorted(key for batch in first for key in batch) == sorted(KEYS)
    assert one_period(rotation, 5.0) == first  # the same slices, in the same order


def test_slices_that_came_due_while_the_loop_was_late_go_together():
    rotation = Rotation(period=5.0, slices=20, start=0.0)
    first = picked(rotation, 0.0)
    late = picked(rotation, 3.0)  # 2.75 s without a tick: 12 slices came due
    assert len(late) > len(KEYS) / 2
    assert picked(rotation, 3.1) == []
    assert sorted(first + late + picked(rotation, 4.9)) == sorted(KEYS)


def test_after_a_loop_late_by_periods_each_slice_goes_back_to_its_place():
    rotation = Rotation(period=5.0, slices=20, start=0.0)
    on_time = one_period(Rotation(period=5.0, slices=20, start=0.0), 0.0)
    assert sorted(picked(rotation, 12.1)) == sorted(KEYS)  # all at once, each once
    # Slices 0-8 had their turns at 10.0-12.0 booked for 15.0-17.0 (only 9
    # slices: 12.1 is past 12.0 but not yet 12.25), the others at 12.25-14.75.
    assert one_period(rotation, 12.25) == on_time[9:] + on_time[:9]


class Upkept:
    """A Housekeeper over a real sequencer, with a store and registry that record."""

    def __init__(self, rooms: list[str], connections: list[tuple[str, str, str]]) -> None:
        self.polled: list[str] = []
        self.renewed: list[tuple[str, str, str]] = []
        store = SimpleNamespace(latest_ids=self._latest_ids)
        sequencer = RoomSequencer(store)
        for code in rooms:
            sequencer.admit(code, "s-" + code, 0, lambda: None)
        registry = SimpleNamespace(
            settings=SimpleNamespace(connection_lease=15.0),  # renewed every 5 s
            store=store,
            renew_leases=self.renewed.extend,
            dead_connections=list,
        )
        self.start = time.monotonic()
        self.keeper = Housekeeper(Flask(__name__), registry, sequencer, lambda: connections, print)

    def _latest_ids(self, codes: list[str]) -> list[int]:
        self.polled += codes
        return [0] * len(codes)

    def ticks(self, count: int, first: float = 0.125) -> None:
        for n in range(count):
            self.keeper.tick(self.start + first + n * TICK_SECONDS)


def test_the_upkeep_polls_every_room_and_renews_every_lease_once_in_five_seconds():
    rooms = [f"R{n:03d}" for n in range(100)]
    connections = [(code, f"m{n}", f"sid-{code}-{n}") for code in rooms for n in range(4)]
    upkept = Upkept(rooms, connections)
    upkept.ticks(1)
    assert 0 < len(upkept.polled) < len(rooms) / 5  # a slice at a time
    assert 0 < len(upkept.renewed) < len(connections) / 5
    upkept.ticks(19, first=0.125 + TICK_SECONDS)  # the rest of the 5 s
    assert sorted(upkept.polled) == rooms
    assert sorted(upkept.renewed) == sorted(connections)
