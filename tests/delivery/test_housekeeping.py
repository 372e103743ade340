"""The upkeep: each periodic job done a slice per tick, none skipped."""

from __future__ import annotations

import time
from types import SimpleNamespace

from flask import Flask

from chatapp.delivery.housekeeping import Housekeeper
from chatapp.delivery.housekeeping import Rotation
from chatapp.delivery.housekeeping import TICK_SECONDS
from chatapp.delivery.sequencer import RoomSequencer

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
        self.dead: list[tuple[str, str, str]] = []  # what the store's sweep finds
        self.gone: set[tuple[str, str, str]] = set()  # what the store no longer holds
        self.swept = 0
        self.detached: list[tuple[str, str, str]] = []
        self.reconnected: list[str] = []
        store = SimpleNamespace(latest_ids=self._latest_ids)
        sequencer = RoomSequencer(store)
        for code in rooms:
            sequencer.admit(code, "s-" + code, 0, lambda: None)
        registry = SimpleNamespace(
            settings=SimpleNamespace(connection_lease=15.0),  # renewed every 5 s
            store=store,
            renew_leases=self._renew_leases,
            dead_connections=self._dead_connections,
        )
        self.start = time.monotonic()
        self.keeper = Housekeeper(
            Flask(__name__),
            registry,
            sequencer,
            lambda: connections,
            lambda *conn: self.detached.append(conn),
            self.reconnected.append,
        )

    def _latest_ids(self, codes: list[str]) -> list[int]:
        self.polled += codes
        return [0] * len(codes)

    def _renew_leases(self, connections: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
        self.renewed += connections
        return [conn for conn in connections if conn in self.gone]

    def _dead_connections(self) -> list[tuple[str, str, str]]:
        self.swept += 1
        return self.dead

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


CONNECTIONS = [("ABCD", f"m{n}", f"sid-{n}") for n in range(40)]


def test_a_process_sweeps_first_one_renewal_period_after_it_started():
    upkept = Upkept(["ABCD"], CONNECTIONS)
    upkept.ticks(19)  # up to 4.625 s
    assert upkept.swept == 0
    upkept.ticks(1, first=5.125)
    assert upkept.swept == 1


def test_after_a_long_store_failure_every_lease_is_renewed_at_once_and_nothing_swept_for_a_while():
    # The store was away for longer than a renewal period: leases may have
    # run out, everyone's. Each process renews all of its own before any
    # sweeps the others' as dead.
    upkept = Upkept(["ABCD"], CONNECTIONS)
    upkept.ticks(1, first=5.125)
    assert upkept.swept == 1
    upkept.renewed.clear()
    upkept.keeper.store_failed()  # and every call until 10.25
    upkept.ticks(8, first=10.25)  # 10.25 to 12.0: sweeps were due every 2 s
    assert sorted(upkept.renewed[: len(CONNECTIONS)]) == sorted(CONNECTIONS)  # the first tick
    assert upkept.swept == 1  # held for one renewal period (5 s)
    upkept.ticks(1, first=15.25)
    assert upkept.swept == 2


def test_a_call_failing_now_and_then_changes_nothing():
    upkept = Upkept(["ABCD"], CONNECTIONS)
    upkept.ticks(1, first=5.125)
    upkept.renewed.clear()
    upkept.keeper.store_failed()
    upkept.ticks(1, first=7.125)  # the sweep of 7.125 worked
    assert upkept.swept == 2
    assert len(upkept.renewed) < len(CONNECTIONS)  # a slice, as usual


def test_the_sweep_renews_this_process_s_own_leases_that_ran_out_and_detaches_the_others():
    upkept = Upkept(["ABCD"], CONNECTIONS)
    foreign = ("ABCD", "m99", "sid-elsewhere")
    upkept.dead = [CONNECTIONS[3], foreign]
    upkept.ticks(1, first=5.125)
    assert upkept.detached == [foreign]
    assert CONNECTIONS[3] in upkept.renewed


def test_a_socket_whose_connection_was_swept_elsewhere_is_told_to_connect_again():
    upkept = Upkept(["ABCD"], CONNECTIONS)
    upkept.gone = {CONNECTIONS[5]}
    upkept.ticks(20)  # one renewal period
    assert upkept.reconnected == [CONNECTIONS[5][2]]
