"""chatapp.engine.serving on the real server: accepted sockets with TCP_NODELAY; SIGTERM
closes the sockets, then the process exits."""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import socket
import time

import pytest

from tests.support.liveserver import LivePerson
from tests.support.liveserver import LiveServer
from tests.support.liveserver import wait_for

pytestmark = pytest.mark.server


SYS_PIDFD_GETFD = 438  # the same number on every Linux architecture


def _server_side_socket(pid: int, peer: tuple[str, int]) -> socket.socket:
    """Duplicate, with pidfd_getfd(2), the server's socket whose peer is ``peer``.

    Skip the test when the kernel or its policy does not allow it.
    """
    if not hasattr(os, "pidfd_open") or not os.path.isdir(f"/proc/{pid}/fd"):
        pytest.skip("no pidfd_open or /proc: cannot inspect the server's sockets")
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    try:
        for entry in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{entry}")
            except OSError:
                continue
            if not target.startswith("socket:"):
                continue
            fd = libc.syscall(SYS_PIDFD_GETFD, pidfd, int(entry), 0)
            if fd < 0:
                err = ctypes.get_errno()
                if err in (errno.EPERM, errno.ENOSYS, errno.EACCES):
                    pytest.skip(f"pidfd_getfd refused: {os.strerror(err)}")
                continue
            dup = socket.socket(fileno=fd)
            try:
                if dup.family == socket.AF_INET and dup.getpeername() == peer:
                    return dup
            except OSError:
                pass
            dup.close()
    finally:
        os.close(pidfd)
    raise AssertionError(f"no server socket connected to {peer}")


def test_accepted_connections_have_tcp_nodelay(start_server) -> None:
    """Read the option on the server's own end of a raw TCP connection.

    There is no way to see the peer's TCP_NODELAY from the client's end of
    the wire; the test process is the server's parent, so it may duplicate
    the server's accepted socket (pidfd_getfd) and ask the kernel directly.
    """
    live_server = start_server()
    assert live_server.pid is not None
    with socket.create_connection(("127.0.0.1", live_server.port), timeout=5) as raw:
        raw.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # left unfinished
        local = raw.getsockname()
        dup = wait_for(lambda: _try_server_side(live_server.pid or 0, local), timeout=5)
        with dup:
            assert dup.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        raw.sendall(b"\r\n")
        assert raw.recv(64).startswith(b"HTTP/1.1 200")


def _try_server_side(pid: int, peer: tuple[str, int]) -> socket.socket | None:
    try:
        return _server_side_socket(pid, peer)
    except AssertionError:
        return None  # not accepted yet


def test_sigterm_closes_sockets_then_exits(tmp_path):
    server = LiveServer({}, tmp_path).start()
    try:
        ada = LivePerson(server.url)
        ada.create_room("ada")
        client = ada.socket()
        assert client.send_line("acknowledged before the stop")["ok"]
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        wait_for(lambda: client.disconnects, timeout=5)
        assert time.monotonic() - started < 3
        assert server.process.wait(timeout=10) == 0
        ada.close()
    finally:
        server.close()


def raw_status(server: LiveServer, request: bytes) -> int:
    """Send ``request`` as is; return the status of the answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(request)
        head = b""
        while b"\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
    return int(head.split(b" ", 2)[1])


@pytest.mark.server
@pytest.mark.parametrize(
    ("headers", "status"),
    [
        (b"Host: x\r\nX-A: 1\r\nx-a: 2\r\nCookie: a=1\r\nCookie: b=2\r\n", 200),
        (b"Host: x\r\nX-Folded: a\r\n b\r\n", 400),  # obs-fold (RFC 7230 3.2.4)
        (b"Host: x\r\nNo colon here\r\n", 400),
        (b"Host: x\r\n: no name\r\n", 400),
        (b"Host: x\r\nX-Space : 1\r\n", 400),  # white space before the colon
        (b"Host: x\r\nX-Long: " + b"a" * 70000 + b"\r\n", 400),
        (b"Host: x\r\n" + b"".join(b"X-%d: 1\r\n" % n for n in range(101)), 400),
    ],
    ids=["repeated", "folded", "no colon", "no name", "space", "long", "too many"],
)
def test_request_headers_are_read_within_http_clients_limits(start_server, headers, status):
    # chatapp.engine.websocket reads headers itself, without the email parser.
    server = start_server()
    request = b"GET /healthz HTTP/1.1\r\n" + headers + b"Connection: close\r\n\r\n"
    assert raw_status(server, request) == status
    assert server.health() == 200
