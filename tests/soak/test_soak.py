"""A 2-minute run of the soak script (``soak.py``) in the default test command.

Full load: 1,000 WebSocket members in 50 rooms of 20 on one gevent process,
each sending every 10 s, for 120 s (the RSS baseline is taken after 30 s).
It finishes in about 2.5 minutes, so no smaller load is needed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SOAK = Path(__file__).with_name("soak.py")


@pytest.mark.soak
@pytest.mark.server
@pytest.mark.timeout(330)
def test_soak_two_minutes(tmp_path):
    report_path = tmp_path / "soak.json"
    run = subprocess.run(
        [sys.executable, str(SOAK), "--duration", "120", "--json", str(report_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert report_path.exists(), run.stderr[-4000:]
    report = json.loads(report_path.read_text())
    summary = json.dumps(report, indent=1)
    assert report["connected"] == report["members"] == 1000, summary
    assert report["connect_errors"] == 0, summary
    assert report["unexpected_disconnects"] == 0, summary
    assert report["failed_sends"] == 0, summary
    assert report["lost"] == 0 and report["doubled"] == 0, summary
    assert report["server_errors"] == 0, summary
    assert report["deliveries"] > 0.9 * report["sent"] * 20, summary
    assert report["p99_ms"] < 250, summary
    assert report["rss_growth"] < 0.10, summary
    assert run.returncode == 0, summary
