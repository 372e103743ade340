"""Start and stop a real nginx in front of app processes (no fixtures here)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.liveserver import free_port
from tests.support.liveserver import REPO_ROOT

CONFIG = REPO_ROOT / "deploy" / "nginx-scaled.conf"


class NginxProcess:
    """nginx on a free loopback port, proxying to the given app ports."""

    def __init__(self, directory: Path, upstream_ports: list[int]) -> None:
        binary = shutil.which("nginx") or (
            "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
        )
        if binary is None:
            pytest.skip("nginx is not installed (./dev test installs Debian's)")
        self.binary = binary
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        upstreams = "\n        ".join(f"server 127.0.0.1:{p};" for p in upstream_ports)
        config = (
            CONFIG.read_text()
            .replace("@@PREFIX@@", str(directory))
            .replace("@@LISTEN@@", f"127.0.0.1:{self.port}")
            .replace("@@UPSTREAMS@@", upstreams)
        )
        self.config_path = directory / "nginx.conf"
        self.config_path.write_text(config)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start nginx and wait until it accepts connections."""
        with open(self.directory / "stderr.log", "wb") as stderr:
            self.process = subprocess.Popen(
                [self.binary, "-c", str(self.config_path), "-p", str(self.directory)],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError((self.directory / "stderr.log").read_text())
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("nginx did not start")

    def stop(self) -> None:
        """Stop nginx."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
