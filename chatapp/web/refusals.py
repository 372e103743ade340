"""Refusals in the log at a bounded rate: one line per reason and address every 10 s.

A client can make the server refuse as fast as it can send (a rate-limited
``send``, a join with a wrong code, a handshake past its address's cap). One
JSON line per refusal let one client grow the log by 1.5 MB a second.
PROTOCOL.md ("Logs") allows one line every WINDOW_SECONDS per reason and
client address, with the count of the refusals it stands for:

- the first refusal of a (event, reason, address) is written at once, with
  ``"count": 1``, and opens a window;
- refusals within the window are only counted;
- when the window ends with refusals counted, one line carries their count
  (written by a background task, or by the next refusal if it comes first)
  and opens the next window; a window that ends with none is forgotten.
  The task runs while any window is open, then ends.

Memory is bounded too: past MAX_KEYS windows open at once, new addresses are
counted together under the address ``"*"``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

WINDOW_SECONDS = 10.0
MAX_KEYS = 10_000
ANY_ADDRESS = "*"

Key = tuple[str, str, str]


class _Window:
    __slots__ = ("ends", "pending", "fields")

    def __init__(self, ends: float, fields: dict[str, Any]) -> None:
        self.ends = ends
        self.pending = 0  # refusals counted since the last line
        self.fields = fields  # those of the newest refusal


class RefusalLog:
    """Write refusal events through ``write`` at most once per window and key."""

    def __init__(
        self,
        write: Callable[[dict[str, Any]], None],
        start_task: Callable[[Callable[[], None]], Any],
        sleep: Callable[[float], Any],
        clock: Callable[[], float] = time.monotonic,
        window: float = WINDOW_SECONDS,
        max_keys: int = MAX_KEYS,
    ) -> None:
        self._write = write
        self._start_task = start_task
        self._sleep = sleep
        self._clock = clock
        self.window = window
        self.max_keys = max_keys
        self._windows: dict[Key, _Window] = {}
        self._lock = threading.Lock()  # never held across a write or a yield
        self._flushing = False

    def refuse(self, event: str, reason: str, addr: str | None, **fields: Any) -> None:
        """Count a refusal; write it now if its key has no open window."""
        now = self._clock()
        key = (event, reason, addr or "")
        with self._lock:
            window = self._windows.get(key)
            if window is None and len(self._windows) >= self.max_keys:
                key = (event, reason, ANY_ADDRESS)
                window = self._windows.get(key)
            if window is not None and now < window.ends:
                window.pending += 1
                window.fields = fields
                count = 0
            else:
                count = (window.pending if window is not None else 0) + 1
                self._windows[key] = _Window(now + self.window, fields)
            start = not self._flushing
            self._flushing = True
        if count:
            self._emit(key, count, fields)
        if start:
            self._start_task(self._flush_until_quiet)

    def flush(self) -> None:
        """Write the counts of windows that ended; forget windows that ended quiet."""
        now = self._clock()
        lines = []
        with self._lock:
            for key, window in list(self._windows.items()):
                if now < window.ends:
                    continue
                if window.pending:
                    lines.append((key, window.pending, window.fields))
                    self._windows[key] = _Window(now + self.window, window.fields)
                else:
                    del self._windows[key]
        for key, count, fields in lines:
            self._emit(key, count, fields)

    def open_windows(self) -> int:
        """Return how many keys have a window open (what this log holds in memory)."""
        return len(self._windows)

    def _flush_until_quiet(self) -> None:
        while True:
            self._sleep(self.window)
            self.flush()
            with self._lock:
                if not self._windows:
                    self._flushing = False
                    return

    def _emit(self, key: Key, count: int, fields: dict[str, Any]) -> None:
        event, reason, addr = key
        self._write({"event": event, "reason": reason, "addr": addr, "count": count, **fields})
