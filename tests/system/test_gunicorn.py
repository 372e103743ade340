"""The production server: gunicorn with chatapp's worker, as the image runs it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.liveserver import free_port
from tests.support.liveserver import LivePerson
from tests.support.liveserver import REPO_ROOT
from tests.support.liveserver import TEST_SECRET_KEY
from tests.support.liveserver import wait_for

pytestmark = pytest.mark.server


@pytest.fixture
def gunicorn(tmp_path: Path):
    port = free_port()
    env = {
        **os.environ,
        "CHATAPP_PORT": str(port),
        "CHATAPP_INSTANCE_PATH": str(tmp_path),
        "CHATAPP_SECRET_KEY": TEST_SECRET_KEY,
        "CHATAPP_MAX_FRAME_BYTES": "2048",
    }
    log = open(tmp_path / "gunicorn.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
        cwd=REPO_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    url = f"http://127.0.0.1:{port}"
    person = LivePerson(url)

    def healthy() -> bool:
        try:
            return person.http.get(url + "/healthz", timeout=1).status_code == 200
        except OSError:
            return False

    wait_for(healthy, timeout=20)
    yield process, url
    if process.poll() is None:
        process.kill()
        process.wait()
    person.close()


def test_gunicorn_worker_serves_chat_and_stops_politely(gunicorn):
    process, url = gunicorn
    ada, bob = LivePerson(url), LivePerson(url)
    code = ada.create_room("ada")
    bob.join(code, "bob")
    a = ada.socket({"room": code})
    b = bob.socket({"room": code})
    ack = a.send_line("hello from gunicorn")
    assert ack["ok"]
    assert b.wait_for_line(lambda m: m["text"] == "hello from gunicorn")
    # The bounded handler runs here too: a 4,500-byte frame closes the socket.
    b.emit("send", {"text": "€" * 1500}, namespace="/chat")
    assert b.wait_for(lambda c: c.disconnects, timeout=5)
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert a.wait_for(lambda c: c.disconnects, timeout=5)
    assert time.monotonic() - started < 3  # told at once, not after graceful_timeout
    assert process.wait(timeout=15) == 0
    ada.close()
    bob.close()
