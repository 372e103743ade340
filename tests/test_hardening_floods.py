"""Floods, slow clients and races: limits nobody evades; everyone else keeps chatting."""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.liveserver import LiveServer
from tests.support.liveserver import Person
from tests.support.rawsocket import chat_room
from tests.support.wire import Wire


def join(client, code="ZZZZ", name="x", **kwargs):
    return client.post("/", data={"name": name, "code": code, "join": ""}, **kwargs)


# -- per-address limits (Flask test client) ------------------------------------------


@pytest.mark.settings(JOIN_FAILURES_PER_MINUTE=3)
def test_failed_join_limit_survives_new_cookies_and_forged_forwarded_for(app):
    statuses = [
        join(app.test_client(), headers={"X-Forwarded-For": f"10.0.0.{i}"}).status_code
        for i in range(5)
    ]
    assert statuses == [400, 400, 400, 429, 429]


@pytest.mark.settings(JOIN_FAILURES_PER_MINUTE=2)
def test_failed_join_limit_counts_an_ipv6_64_as_one(app):
    addresses = ["2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2:abcd::9"]
    statuses = [
        join(app.test_client(), environ_overrides={"REMOTE_ADDR": a}).status_code for a in addresses
    ]
    assert statuses == [400, 400, 429]
    other = join(app.test_client(), environ_overrides={"REMOTE_ADDR": "2001:db8:1:3::1"})
    assert other.status_code == 400  # the next /64 has its own budget


@pytest.mark.settings(CREATES_PER_MINUTE=2)
def test_create_limit_survives_new_cookies_forged_headers_and_the_same_64(app):
    def create(addr, forwarded):
        return app.test_client().post(
            "/",
            data={"name": "ada", "create": ""},
            headers={"X-Forwarded-For": forwarded, "X-Real-IP": forwarded},
            environ_overrides={"REMOTE_ADDR": addr},
        )

    statuses = [create(f"2001:db8::{i}", f"198.51.100.{i}").status_code for i in range(1, 5)]
    assert statuses == [303, 303, 429, 429]


@pytest.mark.settings(JOIN_FAILURES_PER_MINUTE=2, TRUSTED_PROXIES=1)
def test_behind_one_proxy_a_client_cannot_prepend_addresses(app):
    # The proxy appends the real peer; whatever the client put before it is not trusted.
    statuses = [
        join(
            app.test_client(),
            headers={"X-Forwarded-For": f"10.9.9.{i}, 203.0.113.7"},
            environ_overrides={"REMOTE_ADDR": "127.0.0.1"},
        ).status_code
        for i in range(3)
    ]
    assert statuses == [400, 400, 429]


@pytest.mark.settings(JOIN_FAILURES_PER_MINUTE=1)
def test_rate_limited_join_records_nothing(app, people):
    ada = people()
    code = ada.create_room("ada")
    attacker = app.test_client()
    assert join(attacker).status_code == 400
    assert join(attacker, code=code, name="bob").status_code == 429  # even a valid join now
    assert attacker.get(f"/room/{code}").status_code == 303


# -- races (Flask test client, threads) -------------------------------------------------


@pytest.mark.settings(JOIN_FAILURES_PER_MINUTE=1000)
def test_many_concurrent_joins_for_one_name_seat_one(app, people):
    code = people().create_room("ada")
    clients = [app.test_client() for _ in range(30)]
    barrier = threading.Barrier(len(clients))

    def attempt(client):
        barrier.wait()
        return join(client, code=code, name="sam").status_code

    with ThreadPoolExecutor(len(clients)) as pool:
        statuses = list(pool.map(attempt, clients))
    assert sorted(statuses) == [303] + [400] * 29


@pytest.mark.settings(JOIN_FAILURES_PER_MINUTE=1000, ROOM_MAX_MEMBERS=3)
def test_concurrent_joins_for_the_last_seat(app, people):
    ada = people()
    code = ada.create_room("ada")
    people().join(code, "bob")
    clients = [app.test_client() for _ in range(20)]
    barrier = threading.Barrier(len(clients))

    def attempt(pair):
        i, client = pair
        barrier.wait()
        return join(client, code=code, name=f"guest{i}").status_code

    with ThreadPoolExecutor(len(clients)) as pool:
        statuses = list(pool.map(attempt, enumerate(clients)))
    assert sorted(statuses) == [303] + [400] * 19


# -- a real server ---------------------------------------------------------------------


@pytest.fixture
def live(tmp_path):
    servers = []

    def start(**settings):
        server = LiveServer(
            {
                "LEAVE_GRACE_SECONDS": 0.5,
                "SEND_RATE": 1000,
                "SEND_BURST": 1000,
                "INPUT_RATE": 1000,
                "INPUT_BURST": 1000,
                "INPUT_BYTES_PER_SECOND": 10**9,
                "CREATES_PER_MINUTE": 1000,
                "JOIN_FAILURES_PER_MINUTE": 1000,
                "JOINS_PER_MINUTE": 1000,
                "ROOMS_PER_ADDRESS": 1000,
                **settings,
            },
            tmp_path / f"s{len(servers)}",
        )
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


@pytest.mark.server
def test_concurrent_sends_keep_ids_contiguous(live, closing):
    server = live()
    code, _, sockets = chat_room(server, closing, names=[f"p{i}" for i in range(6)])
    acks = []

    def send_many(sock, who):
        for i in range(25):
            acks.append(sock.call("send", {"text": f"{who} {i}"}))

    threads = [threading.Thread(target=send_many, args=(s, i)) for i, s in enumerate(sockets)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(acks) == 150 and all(a["ok"] for a in acks)
    ids = sorted(a["id"] for a in acks)
    assert ids == list(range(ids[0], ids[0] + 150))
    watcher = sockets[0]
    watcher.read_until(lambda: any(m["id"] == ids[-1] for m in watcher.received("message")), 10)
    seen = [m["id"] for m in watcher.received("message")]
    assert seen == list(range(seen[0], ids[-1] + 1))


@pytest.mark.server
def test_handshake_flood_that_never_joins(live, closing):
    # As many idle sessions as three addresses may hold (CONNECTIONS_PER_ADDRESS).
    server = live()
    code, _, (ada, bob) = chat_room(server, closing)
    for source in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):
        for _ in range(100):
            closing(Wire(server.port, source=source))
    started = time.monotonic()
    assert ada.call("send", {"text": "through the flood"})["ok"]
    assert time.monotonic() - started < 1.0
    bob.read_until(lambda: bob.received("message"))
    assert server.health() == 200
    newcomer = Person(server.url)
    closing(newcomer)
    newcomer.join(code, "cy")


@pytest.mark.server
def test_slowloris_does_not_starve_the_production_server(live, closing):
    server = live()
    slow = []
    for _ in range(300):
        conn = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        closing(conn)
        conn.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\nX-a: ")
        slow.append(conn)
    started = time.monotonic()
    code, _, (ada, bob) = chat_room(server, closing)
    assert ada.call("send", {"text": "still here"})["ok"]
    for conn in slow[:50]:
        conn.sendall(b"b")  # trickle
    assert server.health() == 200
    assert time.monotonic() - started < 5


@pytest.mark.server
def test_silent_member_leaves_within_ping_timeout_plus_grace(live, closing):
    server = live(SOCKETIO_PING_INTERVAL=1, SOCKETIO_PING_TIMEOUT=1, LEAVE_GRACE_SECONDS=0.5)
    code, _, (ada, bob) = chat_room(server, closing)
    ada.read_for(0.2)
    bob.ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    started = time.monotonic()  # bob goes silent: never reads, never answers a ping
    leave = ada.read_until(
        lambda: [m for m in ada.received("message") if m["kind"] == "leave" and m["name"] == "bob"],
        timeout=8,
    )
    elapsed = time.monotonic() - started
    assert leave and elapsed <= 1 + 1 + 0.5 + 1.5, elapsed
    assert ada.call("send", {"text": "after bob"})["ok"]


@pytest.mark.server
def test_a_slow_consumer_does_not_stall_the_room(live, closing):
    server = live(MESSAGE_MAX_LENGTH=2000)
    code, _, (ada, bob, slow) = chat_room(server, closing, names=("ada", "bob", "slow"))
    slow.ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    text = "z" * 1990
    started = time.monotonic()
    worst = 0.0
    for i in range(400):  # ~800 KB that "slow" never reads
        t0 = time.monotonic()
        assert ada.call("send", {"text": f"{i} {text}"}, timeout=5)["ok"]
        worst = max(worst, time.monotonic() - t0)
        if i % 20 == 0:
            bob.read_for(0.001)
            ada.read_for(0.001)
    assert worst < 2.0, worst
    assert time.monotonic() - started < 30
    bob.read_until(lambda: any(m["text"].startswith("399 ") for m in bob.received("message")), 10)
    assert server.health() == 200


def rss_kib(pid):
    """The resident memory of process ``pid`` in KiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.server
def test_a_member_that_never_reads_costs_bounded_memory_then_is_cut_off(live, closing):
    # 47 MB of lines go to a room where "slow" reads nothing. The server holds
    # at most MAX_PENDING_BYTES (8 MiB) for it beyond what the kernel buffers,
    # then closes its connection; everyone else gets every line. (A short
    # history, so that the room's own memory stays out of the figure.)
    server = live(MESSAGE_MAX_LENGTH=60000, MAX_FRAME_BYTES=65536, ROOM_HISTORY_LIMIT=10)
    code, _, (ada, bob, slow) = chat_room(server, closing, names=("ada", "bob", "slow"))
    slow.ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    text = "m" * 59000
    count = 800  # 800 x 59 KB = 47 MB
    for sock in (ada, bob):
        sock.read_for(0.2)
    done = threading.Event()

    def bob_reads():  # bob keeps up, in a thread of his own
        while not done.is_set():
            bob.read_for(0.1)
            if any(m["text"].startswith(f"{count - 1} ") for m in bob.received("message")):
                done.set()

    reader = threading.Thread(target=bob_reads)
    reader.start()
    before = peak = rss_kib(server.pid)
    try:
        for i in range(count):
            assert ada.call("send", {"text": f"{i} {text}"}, timeout=10)["ok"]
            if i % 10 == 0:
                peak = max(peak, rss_kib(server.pid))
        assert done.wait(20)
    finally:
        done.set()
        reader.join(10)
    lines = [m["text"].split(" ", 1)[0] for m in bob.received("message") if m["kind"] == "chat"]
    assert lines == [str(i) for i in range(count)]  # bob lost nothing, in order
    grown_mib = (peak - before) / 1024
    assert grown_mib < 16, f"the server grew by {grown_mib:.1f} MiB"
    leave = bob.read_until(
        lambda: [m for m in bob.received("message") if m["kind"] == "leave"], timeout=10
    )
    assert leave[0]["name"] == "slow"  # cut off, then its membership ended
    assert server.health() == 200
