"""Open files: raised as far as allowed at start, and never run out of.

Each client connection holds a file descriptor. When a process runs out of
them, ``accept`` fails: gevent's server stops accepting for a while and logs
a traceback each time, and every new request (``/healthz`` too) hangs in the
listen queue. So the servers raise the soft limit to the hard one at start
(systemd's default soft limit is 1,024), and this module counts the client
connections of the process: once they reach the limit minus a reserve, new
requests get a ``503`` at once and the connection is closed, and only
``/healthz`` is still served, from the reserve.

One count per process, as there is one gevent hub: the WSGI handler
(chatapp.engine.websocket) counts each accepted connection until it ends, or until
it hands the connection to chatapp.engine.transport, which counts it until it is
released.
"""

from __future__ import annotations

import resource

# Descriptors kept for what is not a client connection (the listening
# socket, the event loop, Redis, logs) and for /healthz when short.
MIN_RESERVE = 32
RESERVE_FRACTION = 16  # a sixteenth of the limit, at least MIN_RESERVE
# /proc/sys/fs/nr_open's usual value: the most a hard limit of "unlimited" gives.
NR_OPEN_DEFAULT = 1_048_576


class Descriptors:
    """The client connections this process holds, against its open-file limit."""

    __slots__ = ("open", "limit", "reserve")

    def __init__(self, limit: int) -> None:
        self.open = 0
        self.limit = limit
        self.reserve = max(MIN_RESERVE, limit // RESERVE_FRACTION)

    def set_limit(self, limit: int) -> None:
        """Take a new open-file limit (after raising it)."""
        self.limit = limit
        self.reserve = max(MIN_RESERVE, limit // RESERVE_FRACTION)

    @property
    def short(self) -> bool:
        """Tell whether only the reserve is left: refuse new requests."""
        return self.open >= self.limit - self.reserve


def open_file_limit() -> int:
    """Return the process's soft limit on open files."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def raise_open_file_limit() -> int:
    """Raise the soft limit on open files as far as the hard limit allows; return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = NR_OPEN_DEFAULT if hard == resource.RLIM_INFINITY else hard
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass  # a container may forbid it: keep what we have
    DESCRIPTORS.set_limit(soft)
    return soft


DESCRIPTORS = Descriptors(open_file_limit())
