"""The Docker image: build it, run it, and chat through it.

Builds the project's Dockerfile on ``localbase:bookworm`` (made from Debian
packages by ``../shared/tools/make-base-image.sh``, as Docker Hub may be out
of reach), runs it with host networking on a free port and drives it like the
live-server tests: the lobby over HTTP with CSRF, then Socket.IO on ``/chat``
over WebSocket. Skips, saying why, when no Docker daemon can be had. Prints
the build time, image size and the time from ``docker run`` to healthy.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.liveserver import free_port
from tests.support.liveserver import LivePerson
from tests.support.liveserver import wait_for

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1200)]

REPO_ROOT = Path(__file__).resolve().parents[2]
BASE_IMAGE_SCRIPT = REPO_ROOT.parent / "shared" / "tools" / "make-base-image.sh"
BASE_IMAGE = "localbase:bookworm"
IMAGE = "chatapp-test"
INSTANCE_PATH = "/home/chatapp/instance"
DAEMON_START_TIMEOUT = 30.0
BUILD_TIMEOUT = 900.0
HEALTHY_TIMEOUT = 90.0


def docker(
    *args: str, timeout: float = 60.0, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``docker ARGS``; return the completed process (output captured)."""
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"docker {' '.join(args)} exited with {result.returncode}:\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result


def daemon_answers() -> bool:
    try:
        return docker("info", timeout=20, check=False).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def dockerd_running() -> bool:
    """Whether a ``dockerd`` process exists (answering or not)."""
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == "dockerd":
                return True
        except OSError:
            continue
    return False


def poll_daemon(timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if daemon_answers():
            return True
        time.sleep(0.5)
    return False


def ensure_daemon() -> str | None:
    """Make sure a Docker daemon answers; return why not, or None.

    Starts ``dockerd`` (as root, when none runs) the way NOTES.md says; never a
    second one, which would delete the ``docker0`` bridge.
    """
    if shutil.which("docker") is None:
        return "the docker command is not installed (./dev setup --test installs docker.io)"
    if daemon_answers():
        return None
    if dockerd_running():
        if poll_daemon(DAEMON_START_TIMEOUT):
            return None
        return "a dockerd process runs but does not answer `docker info`"
    if os.geteuid() != 0 or shutil.which("dockerd") is None:
        return "no Docker daemon answers, and one cannot be started (needs root and dockerd)"
    subprocess.run("(dockerd >/tmp/dockerd.log 2>&1 &)", shell=True, check=False)
    if poll_daemon(DAEMON_START_TIMEOUT):
        return None
    return f"dockerd did not answer within {DAEMON_START_TIMEOUT:.0f} s (see /tmp/dockerd.log)"


@dataclass
class Measurements:
    base_seconds: float = 0.0
    build_seconds: float = 0.0
    image_bytes: int = 0
    answering_seconds: float = 0.0
    healthy_seconds: float = 0.0

    def summary(self) -> str:
        return (
            f"docker: base image {self.base_seconds:.1f} s, build {self.build_seconds:.1f} s, "
            f"image {self.image_bytes / 1e6:.1f} MB, run to /healthz 200 "
            f"{self.answering_seconds:.1f} s, to healthy {self.healthy_seconds:.1f} s"
        )


@pytest.fixture(scope="module")
def measurements() -> Measurements:
    return Measurements()


@pytest.fixture(scope="module")
def image(measurements: Measurements) -> str:
    """The project's image, built on the local Debian base; its tag."""
    reason = ensure_daemon()
    if reason is not None:
        pytest.skip(reason)
    if not BASE_IMAGE_SCRIPT.is_file():
        pytest.skip(f"{BASE_IMAGE_SCRIPT} is absent: cannot build the {BASE_IMAGE} base image")

    started = time.monotonic()
    base = subprocess.run(
        ["bash", str(BASE_IMAGE_SCRIPT)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    assert base.returncode == 0, f"make-base-image.sh failed:\n{base.stdout}\n{base.stderr}"
    measurements.base_seconds = time.monotonic() - started

    started = time.monotonic()
    docker(
        "build",
        "--network",
        "host",
        "--build-arg",
        f"BASE_IMAGE={BASE_IMAGE}",
        "-t",
        IMAGE,
        str(REPO_ROOT),
        timeout=BUILD_TIMEOUT,
    )
    measurements.build_seconds = time.monotonic() - started
    size = docker("image", "inspect", "--format", "{{.Size}}", IMAGE).stdout
    measurements.image_bytes = int(size.strip())
    return IMAGE


def healthz_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=2) as response:
            return bool(response.status == 200)
    except urllib.error.HTTPError as error:
        error.close()
        return False
    except OSError:
        return False


@dataclass
class Container:
    name: str
    volume: str
    url: str

    def logs(self) -> str:
        result = docker("logs", "--tail", "60", self.name, check=False)
        return result.stdout + result.stderr

    def health(self) -> str:
        state = json.loads(docker("inspect", "--format", "{{json .State}}", self.name).stdout)
        if not state.get("Running"):
            raise AssertionError(f"the container stopped: {state}\n{self.logs()}")
        return str(state.get("Health", {}).get("Status", "none"))


@pytest.fixture(scope="module")
def container(image: str, measurements: Measurements) -> Iterator[Container]:
    """The image running on 127.0.0.1 and a free port, healthy; removed at teardown."""
    suffix = uuid.uuid4().hex[:8]
    port = free_port()
    box = Container(
        name=f"chatapp-test-{suffix}",
        volume=f"chatapp-test-instance-{suffix}",
        url=f"http://127.0.0.1:{port}",
    )
    started = time.monotonic()
    try:
        docker(
            "run",
            "--detach",
            "--name",
            box.name,
            "--network",
            "host",
            "--health-interval=2s",
            "-e",
            f"CHATAPP_PORT={port}",
            "-e",
            "CHATAPP_HOST=127.0.0.1",
            "-v",
            f"{box.volume}:{INSTANCE_PATH}",
            image,
        )
        deadline = time.monotonic() + HEALTHY_TIMEOUT
        while not healthz_ok(box.url):
            assert box.health() != "unhealthy" and time.monotonic() < deadline, box.logs()
            time.sleep(0.05)
        measurements.answering_seconds = time.monotonic() - started
        while (status := box.health()) != "healthy":
            assert time.monotonic() < deadline, (
                f"not healthy within {HEALTHY_TIMEOUT:.0f} s ({status}):\n{box.logs()}"
            )
            time.sleep(0.2)
        measurements.healthy_seconds = time.monotonic() - started
        yield box
    finally:
        docker("rm", "--force", "--volumes", box.name, check=False)
        docker("volume", "rm", "--force", box.volume, check=False)


def test_runs_as_non_root_and_keeps_its_key_in_the_volume(container: Container) -> None:
    uid = docker("exec", container.name, "id", "-u").stdout.strip()
    assert uid.isdigit() and int(uid) != 0, uid
    listing = docker("exec", container.name, "ls", "-ln", INSTANCE_PATH).stdout
    key_line = next(line for line in listing.splitlines() if line.endswith(" secret_key"))
    mode, _, owner, *_ = key_line.split()
    assert mode == "-rw-------", key_line
    assert owner == uid, key_line


def test_healthz_says_ok(container: Container) -> None:
    with urllib.request.urlopen(container.url + "/healthz", timeout=5) as response:
        assert response.status == 200
        assert json.load(response) == {"status": "ok"}


def test_serves_the_pinned_socketio_client(container: Container) -> None:
    url = container.url + "/static/vendor/socket.io.min.js"
    with urllib.request.urlopen(url, timeout=5) as response:
        script = response.read()
    assert script.startswith(b"/*!\n * Socket.IO v4.8.4\n"), script[:60]


def test_two_people_chat_through_the_container(
    container: Container,
    live_people: Callable[[Container], LivePerson],
    measurements: Measurements,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ada, bob = live_people(container), live_people(container)
    code = ada.create_room("ada")
    bob.join(code, "bob")
    ada_tab = ada.socket()
    bob_tab = bob.socket()
    ada_tab.wait_for_line(lambda m: m["kind"] == "join" and m["name"] == "bob")

    first = ada_tab.send_line("hello from ada")
    assert first == {"ok": True, "id": first["id"]}, first
    second = bob_tab.send_line("hello from bob")
    assert second == {"ok": True, "id": first["id"] + 1}, second

    for tab in (ada_tab, bob_tab):
        tab.wait_for(lambda c: c.last_id() >= second["id"])
        lines = tab.lines()
        assert [m["id"] for m in lines] == list(range(1, second["id"] + 1)), lines
        chat = [(m["name"], m["text"]) for m in lines if m["kind"] == "chat"]
        assert chat == [("ada", "hello from ada"), ("bob", "hello from bob")]

    with capsys.disabled():
        print(f"\n{measurements.summary()}")
    wait_for(lambda: container.health() == "healthy", timeout=5)
