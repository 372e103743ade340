"""The runtime policy of a serving process, set once when it starts serving.

``prepare_process`` is what ``python -m chatapp`` (chatapp.engine.serving)
and the gunicorn worker (chatapp.engine.worker) both do: when the garbage
collector runs, what log records and greenlets record about themselves, and
how many files the process may open.

When the cyclic garbage collector runs: full collections on a schedule.

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
import logging

import gevent

from chatapp.engine.descriptors import raise_open_file_limit

# Full collections come only from the timer: gen2's count never gets this far.
NEVER = 2**31 - 1


def prepare_process(gc_full_interval: float) -> int:
    """Set this serving process's runtime policy; return its open-file limit."""
    # Each connection spawns greenlets; by default gevent records the stack
    # that spawned each one (~20 frame objects, 4 KiB a connection), which
    # only debugging tools read.
    gevent.config.track_greenlet_tree = False
    skip_record_details()
    limit = raise_open_file_limit()
    schedule_full_collections(gc_full_interval)
    return limit


def skip_record_details() -> None:
    """Stop every log record from looking up its thread and its caller.

    No log format here shows them (gunicorn's shows the process id, which
    stays), and under gevent the thread lookup makes a dummy thread for each
    greenlet that logs (about 12 us for the first record of each join). The
    logging HOWTO's "Optimization" section names these switches; they are
    process-wide, so only the servers' entry points call this.
    """
    logging.logThreads = False
    logging.logMultiprocessing = False
    logging._srcfile = None


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
