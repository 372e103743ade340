"""When the cyclic garbage collector runs: full collections on a schedule.

A full collection walks every tracked object, and every open connection
holds about a hundred of them (greenlets, Engine.IO and Socket.IO state,
the environ): at 2,000 connections one took 110-150 ms, during which no
message moves. CPython starts one whenever objects that survived younger
collections exceed a quarter of the old ones, which under a steady load of
new rooms and history happens every few tens of seconds, so those pauses
set the tail latency (benchmarks/README.md).

Here the objects alive once the app is built are frozen (never collected
again: modules, the app, templates), the young generations are collected as
usual (short: they hold only new objects), and full collections run every
``GC_FULL_INTERVAL`` seconds instead. Cyclic garbage that reached the old
generation (mostly closed connections) waits up to that long to be freed.
``GC_FULL_INTERVAL = 0`` leaves Python's own schedule.
"""

from __future__ import annotations

import gc

import gevent

# Full collections come only from the timer: gen2's count never gets this far.
NEVER = 2**31 - 1


def schedule_full_collections(interval: float) -> gevent.Greenlet | None:
    """Freeze what exists now and run full collections every ``interval`` seconds."""
    if interval <= 0:
        return None
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, NEVER)
    return gevent.spawn(_collect_every, interval)


def _collect_every(interval: float) -> None:
    while True:
        gevent.sleep(interval)
        gc.collect()
