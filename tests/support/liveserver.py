"""Helpers for tests against the real server: a subprocess and its clients.

No fixtures here: ``LiveServer`` runs ``python -m chatapp`` (gevent, the
production config) on a free port; ``LivePerson`` is one browser (a cookie jar)
that goes through the lobby form and opens Socket.IO connections on ``/chat``
over WebSocket, recording what they receive.
"""

from __future__ import annotations

import os
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import requests
import socketio

REPO_ROOT = Path(__file__).resolve().parents[2]
CHAT_NAMESPACE = "/chat"
TEST_SECRET_KEY = "live-server-test-secret-key"
RECORDED_EVENTS = ("joined", "message", "members", "typing")
ROOM_PATH = re.compile(r"^/room/([A-Z]+)$")
CSRF_INPUT = re.compile(r"<input\b[^>]*\bname=\"csrf_token\"[^>]*>")
VALUE_ATTR = re.compile(r"\bvalue=\"([^\"]*)\"")


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns something truthy; return that.

    Raise AssertionError after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout} s: {predicate!r}")
        time.sleep(interval)


class LiveServer:
    """``python -m chatapp`` in a subprocess, on 127.0.0.1 and a free port."""

    STARTUP_TIMEOUT = 20.0
    POLL_INTERVAL = 0.05
    STOP_TIMEOUT = 5.0

    def __init__(
        self,
        settings: Mapping[str, object] | None = None,
        tmp_dir: str | os.PathLike[str] | None = None,
        *,
        gunicorn: bool = False,
        open_files: tuple[int, int] | None = None,
    ) -> None:
        """``settings``: ``{"LEAVE_GRACE_SECONDS": 0.5}`` or ``CHATAPP_``-prefixed names.

        ``gunicorn``: serve with gunicorn and chatapp's worker (gunicorn.conf.py),
        as the Docker image does, instead of ``python -m chatapp``.
        ``open_files``: the server's (soft, hard) limits on open files.
        """
        self.gunicorn = gunicorn
        self.open_files = open_files
        self._own_tmp = None
        if tmp_dir is None:
            self._own_tmp = tempfile.TemporaryDirectory(prefix="chatapp-live-")
            tmp_dir = self._own_tmp.name
        self.tmp_dir = Path(tmp_dir)
        self.instance_path = self.tmp_dir / "instance"
        self.instance_path.mkdir(parents=True, exist_ok=True)
        self.log_path = self.tmp_dir / "server.log"
        self.env = dict(os.environ)
        for name, value in (settings or {}).items():
            key = name if name.startswith("CHATAPP_") else f"CHATAPP_{name}"
            self.env[key] = str(value)
        self.env["CHATAPP_INSTANCE_PATH"] = str(self.instance_path)
        self.env["CHATAPP_SECRET_KEY"] = TEST_SECRET_KEY
        self.env["PYTHONUNBUFFERED"] = "1"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    # -- life cycle -----------------------------------------------------------

    def start(self) -> LiveServer:
        """Start the server (again, on the same port) and wait until it is healthy."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError("the server is already running")
        with open(self.log_path, "ab") as log:
            log.write(f"--- starting on port {self.port} ---\n".encode())
            log.flush()
            if self.gunicorn:
                command = ["-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
                self.env.update(CHATAPP_HOST="127.0.0.1", CHATAPP_PORT=str(self.port))
            else:
                command = ["-m", "chatapp", "--host", "127.0.0.1", "--port", str(self.port)]
            self.process = subprocess.Popen(
                [sys.executable, *command],
                cwd=REPO_ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=self._limit_open_files if self.open_files else None,
            )
        try:
            self._wait_healthy()
        except BaseException:
            self.kill()
            raise
        return self

    def _limit_open_files(self) -> None:
        assert self.open_files is not None
        resource.setrlimit(resource.RLIMIT_NOFILE, self.open_files)

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.STARTUP_TIMEOUT
        while True:
            assert self.process is not None
            code = self.process.poll()
            if code is not None:
                raise RuntimeError(
                    f"the server exited with {code} while starting:\n{self.log_tail()}"
                )
            if self.health() == 200:
                return
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"no 200 from /healthz within {self.STARTUP_TIMEOUT} s:\n{self.log_tail()}"
                )
            time.sleep(self.POLL_INTERVAL)

    def health(self) -> int | None:
        """Return the status of ``GET /healthz``, or None when nothing answers."""
        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=1) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            error.close()
            return int(error.code)
        except (OSError, ValueError):
            return None

    def stop(self) -> int | None:
        """SIGTERM, wait up to 5 s, then SIGKILL; return the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(self.STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def kill(self) -> int | None:
        """SIGKILL the server at once; return the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        return self.process.returncode

    def close(self) -> None:
        """Stop the server and delete its temporary directory (if we made it)."""
        try:
            self.stop()
        finally:
            if self._own_tmp is not None:
                self._own_tmp.cleanup()
                self._own_tmp = None

    @property
    def pid(self) -> int | None:
        """The process that serves: the server's, or under gunicorn its worker's."""
        if self.process is None:
            return None
        if not self.gunicorn:
            return self.process.pid
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        workers = children.read_text().split()
        return int(workers[0]) if workers else None

    # -- logs -------------------------------------------------------------------

    def log_text(self) -> str:
        """Everything the server wrote to stdout and stderr, all runs."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the log."""
        return "\n".join(self.log_text().splitlines()[-lines:])


class ChatClient(socketio.Client):  # type: ignore[misc]  # python-socketio is untyped
    """A Socket.IO client on ``/chat`` that records what it receives.

    ``events`` holds ``(event, payload)`` in arrival order for ``joined``,
    ``message``, ``members`` and ``typing``; ``connect_errors`` and
    ``disconnects`` hold those events' data.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("reconnection", False)
        super().__init__(**kwargs)
        self._lock = threading.Lock()
        self.events: list[tuple[str, Any]] = []
        self.connect_errors: list[Any] = []
        self.disconnects: list[Any] = []
        for event in RECORDED_EVENTS:
            self.on(event, self._recorder(event), namespace=CHAT_NAMESPACE)
        self.on("connect_error", self._on_connect_error, namespace=CHAT_NAMESPACE)
        self.on("disconnect", self._on_disconnect, namespace=CHAT_NAMESPACE)

    def _recorder(self, event: str) -> Callable[..., None]:
        def record(*args: Any) -> None:
            with self._lock:
                self.events.append((event, args[0] if len(args) == 1 else args))

        return record

    def _on_connect_error(self, *args: Any) -> None:
        with self._lock:
            self.connect_errors.append(args[0] if len(args) == 1 else args)

    def _on_disconnect(self, *args: Any) -> None:
        with self._lock:
            self.disconnects.append(args[0] if args else None)

    # -- reading what arrived ------------------------------------------------

    def received(self, event: str | None = None) -> list[Any]:
        """Payloads of ``event`` so far (all ``(event, payload)`` when None)."""
        with self._lock:
            if event is None:
                return list(self.events)
            return [payload for name, payload in self.events if name == event]

    def lines(self) -> list[dict[str, Any]]:
        """Every Message seen, in arrival order: ``joined.history`` then ``message``."""
        out: list[dict[str, Any]] = []
        with self._lock:
            for name, payload in self.events:
                if name == "joined":
                    out.extend(payload["history"])
                elif name == "message":
                    out.append(payload)
        return out

    def last_id(self) -> int:
        """The id of the newest Message seen (0 when none)."""
        lines = self.lines()
        return lines[-1]["id"] if lines else 0

    def wait_for(self, predicate: Callable[[ChatClient], Any], timeout: float = 5.0) -> Any:
        """Poll ``predicate(self)`` until truthy; return its value."""
        return wait_for(lambda: predicate(self), timeout)

    def wait_for_line(
        self, predicate: Callable[[dict[str, Any]], Any], timeout: float = 5.0
    ) -> Any:
        """Wait for a Message matching ``predicate``; return it."""

        def find() -> Any:
            for line in self.lines():
                if predicate(line):
                    return line
            return None

        return wait_for(find, timeout)

    def send_line(self, text: str, timeout: float = 5.0, **extra: Any) -> Any:
        """``call("send", {"text": text, ...})``; return the acknowledgement."""
        return self.call("send", {"text": text, **extra}, namespace=CHAT_NAMESPACE, timeout=timeout)

    def close(self) -> None:
        """Disconnect if connected (for teardown; never raises on a dead link)."""
        try:
            if self.connected:
                self.disconnect()
        finally:
            self.shutdown()
            # python-engineio's client leaves its websocket-client socket open
            # when the *server* closes the connection (its read loop exits
            # without closing ``eio.ws``): close it, or it leaks a
            # ResourceWarning at garbage collection.
            ws = getattr(self.eio, "ws", None)
            if ws is not None:
                ws.shutdown()


class LivePerson:
    """One browser of a live server: a cookie jar that uses the lobby and opens sockets.

    (``tests.support.inprocess.InProcessPerson`` is its twin for an app in this process.)
    """

    def __init__(self, server_url: str) -> None:
        self.url = server_url.rstrip("/")
        self.http = requests.Session()
        self.code = ""
        self.sockets: list[ChatClient] = []

    def _csrf_token(self) -> str:
        response = self.http.get(self.url + "/", timeout=5)
        assert response.status_code == 200, response.status_code
        tag = CSRF_INPUT.search(response.text)
        assert tag is not None, "no csrf_token input in the lobby page"
        value = VALUE_ATTR.search(tag.group(0))
        assert value is not None, tag.group(0)
        return value.group(1)

    def post_lobby(self, button: str, name: str, code: str = "") -> requests.Response:
        """GET / then POST / with ``name``, ``code``, ``csrf_token`` and ``button``."""
        token = self._csrf_token()
        return self.http.post(
            self.url + "/",
            data={"name": name, "code": code, "csrf_token": token, button: ""},
            allow_redirects=False,
            timeout=5,
        )

    def _expect_room(self, response: requests.Response) -> str:
        assert response.status_code == 303, (response.status_code, response.text[:2000])
        location = response.headers["Location"]
        match = ROOM_PATH.match(urllib.parse.urlsplit(location).path)
        assert match is not None, location
        self.code = match.group(1)
        return self.code

    def create_room(self, name: str) -> str:
        """Create a room as ``name``; return its code."""
        return self._expect_room(self.post_lobby("create", name))

    def join(self, code: str, name: str) -> requests.Response:
        """Join room ``code`` as ``name`` (must succeed); return the 303 response."""
        response = self.post_lobby("join", name, code)
        self._expect_room(response)
        return response

    def cookie_header(self) -> str:
        """The ``Cookie`` header this browser would send."""
        return "; ".join(f"{c.name}={c.value}" for c in self.http.cookies)

    def client(self, origin: str | None = None) -> ChatClient:
        """A ChatClient, not yet connected; ``origin`` sets the handshake's Origin."""
        options: dict[str, Any] = {}
        if origin is not None:
            options["websocket_extra_options"] = {"origin": origin}
        client = ChatClient(**options)
        self.sockets.append(client)
        return client

    def connect(self, client: ChatClient, auth: Mapping[str, Any] | None = None) -> ChatClient:
        """Connect ``client`` to ``/chat`` over WebSocket with this session."""
        client.connect(
            self.url,
            headers={"Cookie": self.cookie_header()},
            auth=dict(auth) if auth is not None else None,
            transports=["websocket"],
            namespaces=[CHAT_NAMESPACE],
            wait_timeout=5,
        )
        return client

    def socket(
        self, auth: Mapping[str, Any] | None = None, origin: str | None = None
    ) -> ChatClient:
        """A connected ChatClient that has received its ``joined``."""
        client = self.connect(self.client(origin), auth)
        client.wait_for(lambda c: c.received("joined"))
        return client

    def refused(self, auth: Mapping[str, Any] | None = None, origin: str | None = None) -> Any:
        """Connect, expecting a refusal; return the ``connect_error`` data."""
        client = self.client(origin)
        try:
            self.connect(client, auth)
        except socketio.exceptions.ConnectionError:
            pass
        else:
            raise AssertionError(f"connected; expected a refusal; got {client.received()}")
        return client.wait_for(lambda c: c.connect_errors)[0]

    def close(self) -> None:
        """Disconnect every socket and close the cookie jar's connections."""
        try:
            for client in self.sockets:
                try:
                    client.close()
                except Exception:  # noqa: BLE001 - teardown must go on
                    pass
        finally:
            self.http.close()
