"""Soak: many WebSocket members chatting on one gevent server for a long time.

Not part of the default test run (``tests/soak/test_soak.py`` runs a
2-minute version of it). Run it by hand from the repository root::

    .venv/bin/python tests/soak/soak.py                     # 30 minutes, 1,000 members
    .venv/bin/python tests/soak/soak.py --duration 120      # 2 minutes
    .venv/bin/python tests/soak/soak.py --rooms 10 --per-room 20 --duration 300 --json out.json

What it does: starts ``python -m chatapp`` (memory store, production
config, the per-address create and failed-join limits raised because every
member comes from 127.0.0.1) with ``tests/liveserver.py``'s ``LiveServer``;
puts ``--rooms`` rooms of ``--per-room`` members through the lobby over HTTP
(CSRF token, form post, session cookie); opens one WebSocket per member and
speaks Engine.IO/Socket.IO frames to ``/chat`` by hand (``tests/rawsocket.py``),
one greenlet per member, all in this one gevent process; once everyone is
connected each member sends a line every ``--interval`` seconds (random
phase) for ``--duration`` seconds; then the senders stop, deliveries drain
and everything is checked.

It reports (text on stderr, one JSON object on stdout, ``--json`` to a file):
- ``connect_errors``: lobby or socket connections that failed or were refused;
- ``unexpected_disconnects``: sockets the server closed during the run;
- ``failed_sends``: acknowledgements that were not ``ok`` or never came;
- ``lost`` and ``doubled``: per member, ids missing from or repeated in what
  it received (``joined.history`` then ``message``), and acknowledged lines
  of its room that it never received;
- ``p50_ms``, ``p99_ms``, ``max_ms``: delivery latency, from the moment a
  member sent a line to each member of the room receiving it (sender included);
- ``rss_growth``: growth of the server's RSS from the end of the warm-up
  (``--warmup`` seconds after sending starts; default a quarter of the run,
  at most 5 minutes, by which time every room's retained history is full in
  a 30-minute run) to the end, as a fraction;
- ``server_errors``: tracebacks or ERROR lines in the server's log.

The goals (exit status 0 when all hold): zero errors, zero lost or doubled
lines, p99 under 250 ms, RSS growth under 10 %.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402
import websocket  # noqa: E402
from gevent.pool import Pool  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))  # run as a script: make the tests package importable

from tests.support.liveserver import LivePerson  # noqa: E402
from tests.support.liveserver import LiveServer  # noqa: E402
from tests.support.rawsocket import CHAT  # noqa: E402
from tests.support.rawsocket import Closed  # noqa: E402
from tests.support.rawsocket import RawSocket  # noqa: E402

GOAL_P99_MS = 250.0
GOAL_RSS_GROWTH = 0.10
BUCKET_MS = 1  # latency histogram resolution
MAX_BUCKET = 20_000


def rss_bytes(pid: int) -> int:
    """Return the resident set size of process ``pid`` in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


class Stats:
    """Counters shared by every member's greenlets (gevent: no locks needed)."""

    def __init__(self) -> None:
        self.connect_errors: list[str] = []
        self.unexpected_disconnects = 0
        self.failed_sends: list[Any] = []
        self.sent = 0
        self.acked = 0
        self.deliveries = 0
        self.histogram = [0] * (MAX_BUCKET + 1)
        self.max_ms = 0.0

    def latency(self, ms: float) -> None:
        self.deliveries += 1
        self.max_ms = max(self.max_ms, ms)
        self.histogram[min(int(ms / BUCKET_MS), MAX_BUCKET)] += 1

    def percentile(self, fraction: float) -> float:
        if not self.deliveries:
            return 0.0
        rank = fraction * self.deliveries
        seen = 0
        for bucket, count in enumerate(self.histogram):
            seen += count
            if seen >= rank:
                return (bucket + 1) * BUCKET_MS
        return self.max_ms


class Member:
    """One member: its lobby session, one WebSocket, a reader and a sender."""

    def __init__(self, index: int, room: int, stats: Stats) -> None:
        self.index = index
        self.room = room
        self.stats = stats
        self.person: LivePerson | None = None
        self.sock: RawSocket | None = None
        self.ids: list[int] = []
        self.acked_ids: list[int] = []
        self.pending: dict[int, float] = {}
        self.stopping = False
        self.connected = False

    @property
    def name(self) -> str:
        return f"m{self.index}"

    def enter(self, url: str, code: str | None) -> str:
        """Create (``code`` None) or join the room through the lobby; return its code."""
        self.person = LivePerson(url)
        if code is None:
            return self.person.create_room(self.name)
        self.person.join(code, self.name)
        return code

    def connect(self, url: str, code: str) -> None:
        """Open the WebSocket and connect to the room; record ``joined.history``."""
        assert self.person is not None
        self.sock = RawSocket(url, cookie=self.person.cookie_header(), timeout=30)
        kind, data = self.sock.connect({"room": code})
        if kind != "connect":
            raise RuntimeError(f"refused: {data}")
        joined = self.sock.read_until(lambda: self.sock.received("joined"), timeout=30)[0]
        self.ids.extend(m["id"] for m in joined["history"])
        self.sock.events.clear()
        self.sock.frames.clear()
        self.connected = True

    def read(self) -> None:
        """Read frames until the run stops; answer pings, record ids, acks and latency."""
        assert self.sock is not None
        ws = self.sock.ws
        ws.settimeout(None)
        message_prefix = f'42{CHAT},["message",'
        ack_prefix = f"43{CHAT},"
        try:
            while True:
                opcode, data = ws.recv_data()
                now = time.time()
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    raise Closed()
                frame = data.decode("utf-8")
                if frame == "2":
                    ws.send("3")
                elif frame.startswith(message_prefix):
                    message = json.loads(frame[len(message_prefix) : -1])
                    self.ids.append(message["id"])
                    text = message["text"]
                    if message["kind"] == "chat" and text.startswith("soak "):
                        self.stats.latency((now - float(text.rsplit(" ", 1)[1])) * 1000)
                elif frame.startswith(ack_prefix):
                    rest = frame[len(ack_prefix) :]
                    bracket = rest.index("[")
                    ack = json.loads(rest[bracket:])[0]
                    self.pending.pop(int(rest[:bracket]), None)
                    if isinstance(ack, dict) and ack.get("ok"):
                        self.stats.acked += 1
                        self.acked_ids.append(ack["id"])
                    else:
                        self.stats.failed_sends.append(ack)
                elif frame.startswith("1") or frame.startswith(f"41{CHAT}"):
                    raise Closed()
        except (Closed, OSError, websocket.WebSocketException):
            if not self.stopping:
                self.stats.unexpected_disconnects += 1
            self.connected = False

    def send_loop(self, interval: float, until: float) -> None:
        """Send a line every ``interval`` seconds, at a random phase, until ``until``."""
        assert self.sock is not None
        gevent.sleep(random.uniform(0, interval))
        for seq in itertools.count():
            if time.time() >= until or not self.connected:
                return
            ack_id = seq
            text = f"soak {self.index} {seq} {time.time():.6f}"
            payload = json.dumps(["send", {"text": text, "cid": f"c{self.index}-{seq}"}])
            self.pending[ack_id] = time.monotonic()
            try:
                self.sock.ws.send(f"42{CHAT},{ack_id}{payload}")
            except (OSError, websocket.WebSocketException):
                return
            self.stats.sent += 1
            gevent.sleep(interval)


def check_lines(members: list[Member]) -> tuple[int, int]:
    """Return (lost, doubled) over every member: gaps, repeats, missing acked lines."""
    lost = doubled = 0
    rooms: dict[int, set[int]] = {}
    for member in members:
        rooms.setdefault(member.room, set()).update(member.acked_ids)
    for member in members:
        ids = member.ids
        if not ids:
            continue
        doubled += len(ids) - len(set(ids))
        span = set(range(min(ids), max(ids) + 1))
        lost += len(span - set(ids))
        lost += len(rooms[member.room] - set(ids))
    return lost, doubled


def server_errors(log: str) -> list[str]:
    """Return the log lines that tell of an error."""
    return [line for line in log.splitlines() if "Traceback" in line or " ERROR " in line]


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the soak; return the report."""
    stats = Stats()
    # A thousand people, all on loopback: one client address.
    settings = {
        "CONNECTIONS_PER_ADDRESS": 1_000_000,
        "HANDSHAKES_PER_MINUTE": 1_000_000,
        "CREATES_PER_MINUTE": 1_000_000,
        "JOIN_FAILURES_PER_MINUTE": 1_000_000,
        "JOINS_PER_MINUTE": 1_000_000,
        "ROOMS_PER_ADDRESS": 1_000_000,
        "MAX_ROOMS": 1_000_000,
    }
    tmp = tempfile.TemporaryDirectory(prefix="chatapp-soak-")
    server = LiveServer(settings, tmp.name)
    report: dict[str, Any] = {}
    members = [
        Member(room * args.per_room + seat, room, stats)
        for room in range(args.rooms)
        for seat in range(args.per_room)
    ]
    try:
        server.start()
        assert server.pid is not None
        started = time.monotonic()
        pool = Pool(args.concurrency)

        def lobby(member: Member, code: str | None) -> str | None:
            try:
                return member.enter(server.url, code)
            except Exception as error:  # noqa: BLE001 - counted and reported
                stats.connect_errors.append(f"lobby {member.name}: {error!r}")
                return None

        creators = [members[r * args.per_room] for r in range(args.rooms)]
        codes = pool.map(lambda m: lobby(m, None), creators)
        joiners = [m for m in members if m.index % args.per_room]
        pool.map(lambda m: lobby(m, codes[m.room]) if codes[m.room] else None, joiners)

        def connect(member: Member) -> None:
            code = codes[member.room]
            if code is None or member.person is None:
                return
            try:
                member.connect(server.url, code)
            except Exception as error:  # noqa: BLE001 - counted and reported
                stats.connect_errors.append(f"socket {member.name}: {error!r}")

        pool.map(connect, members)
        setup_seconds = time.monotonic() - started
        log(f"{sum(m.connected for m in members)} members connected in {setup_seconds:.1f} s")

        for member in members:
            if member.connected:
                gevent.spawn(member.read)
        rss_start = rss_bytes(server.pid)
        until = time.time() + args.duration
        senders = [gevent.spawn(m.send_loop, args.interval, until) for m in members if m.connected]
        samples: list[tuple[float, int]] = []
        warmup_rss = None
        t0 = time.time()
        while time.time() < until:
            gevent.sleep(min(5.0, max(0.0, until - time.time())))
            elapsed = time.time() - t0
            samples.append((elapsed, rss_bytes(server.pid)))
            if warmup_rss is None and elapsed >= args.warmup:
                warmup_rss = samples[-1][1]
            if args.verbose:
                log(
                    f"t={elapsed:5.0f}s sent={stats.sent} acked={stats.acked} "
                    f"deliveries={stats.deliveries} p99={stats.percentile(0.99):.0f}ms "
                    f"rss={samples[-1][1] / 2**20:.1f}MiB "
                    f"disconnects={stats.unexpected_disconnects}"
                )
        gevent.joinall(senders, timeout=args.interval + 5)
        # Let the last lines and acknowledgements arrive.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(m.pending for m in members if m.connected):
            gevent.sleep(0.2)
        gevent.sleep(1.0)
        unanswered = sum(len(m.pending) for m in members)
        rss_end = rss_bytes(server.pid)
        final = [rss for _, rss in samples[-3:]] + [rss_end]
        rss_final = sorted(final)[len(final) // 2]
        for member in members:
            member.stopping = True
        lost, doubled = check_lines(members)
        baseline = warmup_rss or rss_start
        report = {
            "members": len(members),
            "rooms": args.rooms,
            "connected": sum(1 for m in members if m.sock is not None),
            "duration_s": args.duration,
            "interval_s": args.interval,
            "warmup_s": args.warmup,
            "setup_s": round(setup_seconds, 1),
            "connect_errors": len(stats.connect_errors),
            "connect_error_samples": stats.connect_errors[:5],
            "unexpected_disconnects": stats.unexpected_disconnects,
            "sent": stats.sent,
            "acked": stats.acked,
            "failed_sends": len(stats.failed_sends) + unanswered,
            "failed_send_samples": stats.failed_sends[:5],
            "deliveries": stats.deliveries,
            "lost": lost,
            "doubled": doubled,
            "p50_ms": stats.percentile(0.50),
            "p99_ms": stats.percentile(0.99),
            "max_ms": round(stats.max_ms, 1),
            "rss_connected_mib": round(rss_start / 2**20, 1),
            "rss_after_warmup_mib": round(baseline / 2**20, 1),
            "rss_end_mib": round(rss_final / 2**20, 1),
            "rss_growth": round(rss_final / baseline - 1, 4),
        }
    finally:
        for member in members:
            member.stopping = True
            if member.sock is not None:
                member.sock.close()
            if member.person is not None:
                member.person.http.close()
        server.stop()
        errors = server_errors(server.log_text())
        report["server_errors"] = len(errors)
        report["server_error_samples"] = errors[:5]
        tmp.cleanup()
    report["goals_met"] = goals_met(report)
    return report


def goals_met(report: dict[str, Any]) -> bool:
    """Tell whether a report meets the soak's goals."""
    return (
        report.get("connected") == report.get("members")
        and report.get("connect_errors") == 0
        and report.get("unexpected_disconnects") == 0
        and report.get("failed_sends") == 0
        and report.get("lost") == 0
        and report.get("doubled") == 0
        and report.get("server_errors") == 0
        and report.get("deliveries", 0) > 0
        and report.get("p99_ms", 1e9) < GOAL_P99_MS
        and report.get("rss_growth", 1.0) < GOAL_RSS_GROWTH
    )


def log(text: str) -> None:
    print(f"soak: {text}", file=sys.stderr, flush=True)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=1800, help="seconds of sending")
    parser.add_argument("--rooms", type=int, default=50)
    parser.add_argument("--per-room", type=int, default=20)
    parser.add_argument(
        "--interval", type=float, default=10.0, help="seconds between a member's lines"
    )
    parser.add_argument(
        "--warmup", type=float, default=None, help="seconds before RSS is baselined"
    )
    parser.add_argument(
        "--concurrency", type=int, default=50, help="lobby and connect greenlets at once"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    parser.add_argument("--verbose", action="store_true", help="progress every 5 s")
    args = parser.parse_args(argv)
    if args.warmup is None:
        args.warmup = min(300.0, args.duration / 4)
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the soak, print the report; exit 0 when the goals are met."""
    args = parse(argv)
    report = run(args)
    for key, value in report.items():
        log(f"{key}: {value}")
    text = json.dumps(report)
    if args.json is not None:
        args.json.write_text(text + "\n")
    print(text, flush=True)
    return 0 if report["goals_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
