"""Group commit: calls made at the same time share one round trip.

Every chat line is one script call to Redis, and a round trip costs far
more than the script (two context switches, four system calls, the client's
parsing). When several connections send at once, their calls go out
together: the first caller yields once, so that callers ready at the same
moment join it, then sends them all as one pipeline; callers that arrive
while it is in flight queue, and when it ends, the oldest of them sends
everything queued. Each call still runs atomically on its own, in the
order the calls were queued; a caller waits for one round trip at most
behind the one in flight.

Works with threads (the test client) and with gevent's patched threading.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any
from typing import Generic
from typing import TypeVar

Call = TypeVar("Call")


class _Waiting(Generic[Call]):
    __slots__ = ("call", "done", "leads", "result", "error")

    def __init__(self, call: Call) -> None:
        self.call = call
        self.done = threading.Event()
        self.leads = False  # woken to send the next batch rather than with a result
        self.result: Any = None
        self.error: BaseException | None = None


class GroupCommit(Generic[Call]):
    """Run calls through ``execute``, batching those that overlap in time.

    ``execute(calls)`` returns one result per call, in order; a result that
    is an exception is raised to that call's caller. If ``execute`` itself
    raises, every call of the batch raises it.
    """

    def __init__(self, execute: Callable[[Sequence[Call]], Sequence[Any]]) -> None:
        self._execute = execute
        self._lock = threading.Lock()
        self._queue: list[_Waiting[Call]] = []
        self._busy = False  # a batch is in flight

    def __call__(self, call: Call) -> Any:
        """Run ``call`` (alone or with others) and return its result."""
        waiting = _Waiting(call)
        with self._lock:
            self._queue.append(waiting)
            leads = not self._busy
            self._busy = True
        while not leads:
            waiting.done.wait()
            if not waiting.leads:
                break
            waiting.leads = False
            waiting.done.clear()
            leads = True
        if leads:
            # Let callers that are ready now join this batch. time.sleep, not
            # socketio.sleep: the store knows no Flask, and under gevent's
            # monkey-patching it is gevent.sleep (as the lock and events are).
            time.sleep(0)
            self._send_batch()
            waiting.done.wait()  # set by the batch that held it (normally this one)
        if waiting.error is not None:
            raise waiting.error
        return waiting.result

    def _send_batch(self) -> None:
        with self._lock:
            batch, self._queue = self._queue, []
        try:
            results: Sequence[Any] = self._execute([waiting.call for waiting in batch])
        except BaseException as error:  # noqa: BLE001 - handed to every caller
            results = [error] * len(batch)
        for waiting, result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):
                waiting.error = result
            else:
                waiting.result = result
            waiting.done.set()
        with self._lock:
            if self._queue:  # arrived during this round trip: the oldest sends them
                self._queue[0].leads = True
                self._queue[0].done.set()
            else:
                self._busy = False
