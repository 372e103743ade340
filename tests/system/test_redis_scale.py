"""Several real app processes sharing one real Redis: order, presence, faults
(kill -9 in a loop, Redis restarts, reconnect storms)."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from tests.support.liveserver import LivePerson
from tests.support.liveserver import LiveServer
from tests.support.liveserver import wait_for
from tests.support.nginxproc import NginxProcess
from tests.support.rawsocket import RawSocket

pytestmark = [pytest.mark.redis, pytest.mark.server]

FAST = {
    "LEAVE_GRACE_SECONDS": 0.5,
    "SEND_RATE": 1000,
    "SEND_BURST": 1000,
    "INPUT_RATE": 1000,
    "INPUT_BURST": 1000,
}


@pytest.fixture
def servers(redis_proc, tmp_path):
    """Two app processes on different ports sharing one Redis."""
    started = []
    for i in range(2):
        settings = {**FAST, "STORE": redis_proc.url}
        server = LiveServer(settings, tmp_path / f"app{i}").start()
        started.append(server)
    yield started
    for server in started:
        server.close()


def ada_and_bob(servers, live_people):
    """ada on the first process created a room, bob on the second joined; both connected."""
    ada, bob = live_people(servers[0]), live_people(servers[1])
    code = ada.create_room("ada")
    bob.join(code, "bob")
    return code, ada, bob, ada.socket({"room": code}), bob.socket({"room": code})


def chat_ids(client):
    return [line["id"] for line in client.lines()]


def assert_contiguous(ids):
    assert ids == list(range(ids[0], ids[0] + len(ids))), ids


def test_members_on_two_processes_chat_in_order(servers, live_people):
    code, ada, bob, a, b = ada_and_bob(servers, live_people)
    assert b.received("joined")[0]["members"] == ["ada", "bob"]
    a.wait_for_line(lambda m: m["kind"] == "join" and m["name"] == "bob")
    # The member list bob's join changed reaches ada's process too, in join order.
    a.wait_for(lambda c: c.received("members")[-1:] == [{"members": ["ada", "bob"]}])
    acks = []

    def send_many(client, who):
        for i in range(30):
            acks.append(client.send_line(f"{who} {i}"))

    threads = [threading.Thread(target=send_many, args=(c, w)) for c, w in ((a, "a"), (b, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(ack["ok"] for ack in acks)
    last = max(ack["id"] for ack in acks)
    for client in (a, b):
        client.wait_for(lambda c: c.last_id() >= last, timeout=10)
        ids = chat_ids(client)
        assert_contiguous(ids)
        assert len(ids) == len(set(ids))
        texts = [m["text"] for m in client.lines() if m["kind"] == "chat"]
        for who in "ab":  # each sender's lines keep their order
            mine = [t for t in texts if t.startswith(who + " ")]
            assert mine == [f"{who} {i}" for i in range(30)]


def test_tabs_on_two_processes_are_one_member(servers, live_people, redis_proc):
    ada = live_people(servers[0])
    code = ada.create_room("ada")
    ada_elsewhere = LivePerson(servers[1].url)
    ada_elsewhere.http.cookies = ada.http.cookies  # the same browser, another process
    watcher_person = live_people(servers[0])
    watcher_person.join(code, "watcher")
    watcher = watcher_person.socket({"room": code})
    first = ada.socket({"room": code})
    second = ada_elsewhere.socket({"room": code})
    assert second.received("joined")[0]["members"] == ["watcher", "ada"]
    joins = [m for m in watcher.lines() if m["kind"] == "join" and m["name"] == "ada"]
    assert len(joins) == 1
    first.close()
    time.sleep(1.0)  # past the grace: the tab on the other process keeps ada here
    assert not [m for m in watcher.lines() if m["kind"] == "leave"]
    ada_elsewhere.close()


def test_kill_9_and_restart_loses_nothing(servers, live_people):
    code, ada, bob, a, b = ada_and_bob(servers, live_people)
    for i in range(5):
        assert a.send_line(f"before {i}")["ok"]
    b.wait_for_line(lambda m: m["text"] == "before 4")
    seen = b.last_id()
    servers[1].kill()  # bob's process dies without a word
    wait_for(lambda: b.disconnects, timeout=5)
    sent = [a.send_line(f"while down {i}")["id"] for i in range(5)]
    servers[1].start()
    back = bob.socket({"room": code, "last_id": seen})
    history = back.received("joined")[0]["history"]
    assert [m["id"] for m in history if m["kind"] == "chat"] == sent
    assert [m["id"] for m in history][0] == seen + 1
    assert_contiguous([m["id"] for m in history])


def test_dead_process_leaves_no_ghost_member(redis_proc, tmp_path, live_people):
    # Short leases so the test sees the sweep; the README states the default bound.
    settings = {**FAST, "STORE": redis_proc.url, "CONNECTION_LEASE_SECONDS": 2}
    first = LiveServer(settings, tmp_path / "a").start()
    second = LiveServer(settings, tmp_path / "b").start()
    try:
        ada, bob = live_people(first), live_people(second)
        code = ada.create_room("ada")
        bob.join(code, "bob")
        a = ada.socket({"room": code})
        bob.socket({"room": code})
        a.wait_for_line(lambda m: m["kind"] == "join" and m["name"] == "bob")
        second.kill()
        leave = a.wait_for_line(lambda m: m["kind"] == "leave" and m["name"] == "bob", timeout=15)
        assert leave is not None
        assert a.wait_for(lambda c: c.received("members")[-1]["members"] == ["ada"]), a.received()
    finally:
        first.close()
        second.close()


def test_redis_outage_and_recovery(servers, live_people, redis_proc):
    code, ada, bob, a, b = ada_and_bob(servers, live_people)
    assert a.send_line("before the outage")["ok"]
    redis_proc.stop()
    started = time.monotonic()
    ack = a.send_line("during the outage", timeout=5)
    assert ack == {"ok": False, "error": "unavailable"}
    assert time.monotonic() - started < 2.5
    assert wait_for(lambda: servers[0].health() == 503, timeout=5)
    assert bob.refused({"room": code}) == {"message": "unavailable"}
    redis_proc.start()  # with every acknowledged write in its append-only file
    assert wait_for(lambda: servers[0].health() == 200, timeout=10)
    ack = a.send_line("after the outage")
    assert ack["ok"], (ack, servers[0].log_tail())
    assert b.wait_for_line(lambda m: m["text"] == "after the outage", timeout=10)
    texts = [m["text"] for m in b.lines() if m["kind"] == "chat"]
    assert texts == ["before the outage", "after the outage"]
    assert_contiguous(chat_ids(b))


def test_two_processes_behind_nginx(servers, live_people, tmp_path):
    proxy = NginxProcess(tmp_path / "nginx", [s.port for s in servers])
    proxy.start()
    try:
        ada, bob = live_people(proxy), live_people(proxy)
        code = ada.create_room("ada")
        bob.join(code, "bob")
        a = ada.socket({"room": code})
        b = bob.socket({"room": code})
        ack = a.send_line("through nginx")
        assert ack["ok"]
        assert b.wait_for_line(lambda m: m["text"] == "through nginx")
    finally:
        proxy.stop()


def test_sigterm_sends_clients_elsewhere_with_nothing_lost(servers, live_people):
    code, ada, bob, a, b = ada_and_bob(servers, live_people)
    acked = []
    stop = threading.Event()

    def keep_sending():
        i = 0
        while not stop.is_set() and i < 200:
            ack = a.send_line(f"line {i}")
            if ack["ok"]:
                acked.append(ack["id"])
            i += 1
            time.sleep(0.01)

    sender = threading.Thread(target=keep_sending)
    sender.start()
    time.sleep(0.3)
    servers[1].process.send_signal(signal.SIGTERM)  # bob's process shuts down
    wait_for(lambda: b.disconnects, timeout=5)
    seen = b.last_id()
    elsewhere = LivePerson(servers[0].url)
    elsewhere.http.cookies = bob.http.cookies  # the same browser, reconnecting
    back = elsewhere.socket({"room": code, "last_id": seen})
    time.sleep(0.3)
    stop.set()
    sender.join()
    back.wait_for(lambda c: c.last_id() >= acked[-1], timeout=10)
    ids = chat_ids(b) + chat_ids(back)
    assert_contiguous(ids)
    assert set(acked) <= set(ids)
    leaves = [m for m in b.lines() + back.lines() if m["kind"] == "leave"]
    assert leaves == []  # back within the grace: no leave notice
    elsewhere.close()


def test_member_of_a_stopped_process_who_never_returns_leaves(servers, live_people):
    code, ada, bob, a, _ = ada_and_bob(servers, live_people)
    a.wait_for_line(lambda m: m["kind"] == "join" and m["name"] == "bob")
    servers[1].stop()  # bob's process shuts down before bob's grace is over
    # Another process ends the membership: grace (0.5 s) + at most one sweep (2 s).
    leave = a.wait_for_line(lambda m: m["kind"] == "leave" and m["name"] == "bob", timeout=8)
    assert leave is not None


def leased_servers(redis_proc, tmp_path, lease: float) -> list[LiveServer]:
    """Two app processes on one Redis whose connection leases last ``lease`` s."""
    settings = {**FAST, "STORE": redis_proc.url, "CONNECTION_LEASE_SECONDS": lease}
    return [LiveServer(settings, tmp_path / f"app{i}").start() for i in range(2)]


@pytest.fixture
def short_leases(redis_proc, tmp_path):
    """Two app processes on one Redis whose connection leases last 2 s."""
    started = leased_servers(redis_proc, tmp_path, 2)
    yield started
    for server in started:
        server.close()


@pytest.fixture
def slow_renewals(redis_proc, tmp_path):
    """Two app processes renewing every 3 s: slower than the 2 s sweep, as by default."""
    started = leased_servers(redis_proc, tmp_path, 9)
    yield started
    for server in started:
        server.close()


def test_a_redis_outage_longer_than_a_lease_ends_no_membership(
    slow_renewals, live_people, redis_proc
):
    # Every lease runs out while Redis is away, the live ones too: once it
    # is back, nobody is swept as dead, and nobody sees anyone leave.
    code, ada, bob, a, b = ada_and_bob(slow_renewals, live_people)
    a.wait_for_line(lambda m: m["kind"] == "join" and m["name"] == "bob")
    redis_proc.stop()
    time.sleep(10)  # longer than a lease
    redis_proc.start()
    for server in slow_renewals:
        assert wait_for(lambda server=server: server.health() == 200, timeout=10)
    time.sleep(5)  # sweeps of each process, past the hold and the grace
    ack = a.send_line("after the outage")
    assert ack["ok"], ack
    assert b.wait_for_line(lambda m: m["text"] == "after the outage")
    assert [m for m in a.lines() + b.lines() if m["kind"] == "leave"] == []
    assert a.received("members")[-1] == {"members": ["ada", "bob"]}


def test_a_process_away_longer_than_a_lease_sends_its_sockets_to_connect_again(
    short_leases, live_people
):
    # ada's process stalls (a paused VM, swapping): the other process sweeps
    # her connection as dead and ends her membership. Once it runs again, it
    # finds the connection gone and disconnects the socket; the client
    # connects again (chat.js does on a server disconnect) and is back in.
    code, ada, bob, a, b = ada_and_bob(short_leases, live_people)
    a.wait_for_line(lambda m: m["kind"] == "join" and m["name"] == "bob")
    short_leases[0].process.send_signal(signal.SIGSTOP)
    try:
        assert b.wait_for_line(lambda m: m["kind"] == "leave" and m["name"] == "ada", timeout=10)
    finally:
        short_leases[0].process.send_signal(signal.SIGCONT)
    assert a.wait_for(lambda c: c.disconnects, timeout=5)  # within a renewal period
    back = ada.socket({"room": code, "last_id": a.last_id()})
    assert back.received("joined")[0]["members"] == ["bob", "ada"]
    ack = back.send_line("back again")
    assert ack["ok"], ack
    assert b.wait_for_line(lambda m: m["text"] == "back again")


# -- faults under load, seen through raw sockets: kill -9 in a loop, Redis restarts,
# -- reconnect storms -------------------------------------------------------------------

# Every limit lifted, and a grace long enough for a process killed and started again.
LIMITS_LIFTED = {
    "LEAVE_GRACE_SECONDS": 2,
    "SEND_RATE": 1000,
    "SEND_BURST": 1000,
    "INPUT_RATE": 1000,
    "INPUT_BURST": 1000,
    "CREATES_PER_MINUTE": 1000,
    "JOIN_FAILURES_PER_MINUTE": 1000,
    "JOINS_PER_MINUTE": 1000,
    "ROOMS_PER_ADDRESS": 1000,
}


def raw_connect(server, person, code, last_id=None, closing=None):
    auth = {"room": code} if last_id is None else {"room": code, "last_id": last_id}
    sock = RawSocket(server.url, cookie=person.cookie_header())
    if closing is not None:
        closing(sock)
    assert sock.connect(auth)[0] == "connect"
    sock.read_until(lambda: sock.received("joined"))
    return sock


def ids_seen(sock):
    (joined,) = sock.received("joined")
    return [m["id"] for m in joined["history"]] + [m["id"] for m in sock.received("message")]


def test_kill_9_in_a_loop_while_members_send(redis_proc, start_server, live_people, closing):
    steady = start_server(**LIMITS_LIFTED, STORE=redis_proc.url)
    victim = start_server(**LIMITS_LIFTED, STORE=redis_proc.url)
    ada, bob = live_people(steady), live_people(victim)
    code = ada.create_room("ada")
    bob.join(code, "bob")
    a = raw_connect(steady, ada, code, closing=closing)
    acked, stop = [], threading.Event()

    def sender():
        i = 0
        while not stop.is_set():
            ack = a.call("send", {"text": f"line {i}", "cid": f"c{i}"}, timeout=10)
            assert ack["ok"], ack
            acked.append(ack["id"])
            i += 1
            time.sleep(0.01)

    thread = threading.Thread(target=sender)
    thread.start()
    try:
        last_seen = 0
        for _round in range(3):
            b = raw_connect(victim, bob, code, last_id=last_seen or None, closing=closing)
            b.read_for(0.3)
            seen = ids_seen(b)
            assert seen == sorted(set(seen)) and seen == list(range(seen[0], seen[-1] + 1)), seen
            last_seen = seen[-1]
            victim.kill()  # kill -9, mid-stream
            time.sleep(0.2)
            victim.start()
    finally:
        stop.set()
        thread.join(15)
    assert len(acked) > 20
    final = raw_connect(victim, bob, code, last_id=0, closing=closing)
    history = [m["id"] for m in final.received("joined")[0]["history"]]
    assert history == list(range(1, history[-1] + 1))  # contiguous, no repeats
    assert set(acked) <= set(history)  # every acknowledged line survived
    for server in (steady, victim):
        log = server.log_text()
        assert "Traceback" not in log, server.log_tail()


def test_reconnect_storm_after_a_restart_converges(redis_proc, start_server, live_people, closing):
    server = start_server(**LIMITS_LIFTED, STORE=redis_proc.url)
    people, sockets = [], []
    code = None
    for i in range(30):
        person = live_people(server)
        if code is None:
            code = person.create_room(f"p{i}")
        else:
            person.join(code, f"p{i}")
        people.append(person)
    for person in people:
        sockets.append(raw_connect(server, person, code, closing=closing))
    for i in range(10):
        assert sockets[i].call("send", {"text": f"before {i}"})["ok"]
    for sock in sockets:
        sock.read_for(0.05)
    last_ids = [ids_seen(s)[-1] for s in sockets]
    server.kill()
    server.start()
    results = [None] * len(people)

    def reconnect(i):
        sock = raw_connect(server, people[i], code, last_id=last_ids[i], closing=closing)
        ack = sock.call("send", {"text": f"after {i}", "cid": f"after{i}"})
        results[i] = (sock, ack)

    threads = [threading.Thread(target=reconnect, args=(i,)) for i in range(len(people))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert all(r is not None and r[1]["ok"] for r in results), results
    newest = max(r[1]["id"] for r in results)
    for i, (sock, _ack) in enumerate(results):
        sock.read_until(lambda s=sock: newest in ids_seen(s), timeout=10)
        seen = ids_seen(sock)
        # Caught up from its last_id: the first line it sees is the one after it
        # (every socket sent a line after the restart, so there is one).
        assert seen[0] == last_ids[i] + 1, (last_ids[i], seen)
        assert seen == list(range(seen[0], seen[-1] + 1)), seen  # no gap, no repeat
    # What the first page shows: its history (others may have sent before it
    # joined) and the live lines after it.
    first = results[0][0]
    (joined,) = first.received("joined")
    shown = joined["history"] + first.received("message")
    texts = [m["text"] for m in shown if m["kind"] == "chat"]
    assert sorted(t for t in texts if t.startswith("after")) == sorted(
        f"after {i}" for i in range(30)
    )


def test_redis_restart_with_members_sending(redis_proc, start_server, live_people, closing):
    server = start_server(**LIMITS_LIFTED, STORE=redis_proc.url)
    ada, bob = live_people(server), live_people(server)
    code = ada.create_room("ada")
    bob.join(code, "bob")
    a = raw_connect(server, ada, code, closing=closing)
    b = raw_connect(server, bob, code, closing=closing)
    acked = [a.call("send", {"text": "before"})["id"]]
    redis_proc.stop()
    during = a.call("send", {"text": "during", "cid": "during"}, timeout=10)
    assert during == {"ok": False, "error": "unavailable"}
    redis_proc.start()
    deadline = time.monotonic() + 15
    while server.health() != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    ack = a.call("send", {"text": "during", "cid": "during"}, timeout=10)  # the resend
    assert ack["ok"], ack
    acked.append(ack["id"])
    b.read_until(lambda: any(m["id"] == acked[-1] for m in b.received("message")), 10)
    texts = [m["text"] for m in b.received("message") if m["kind"] == "chat"]
    assert texts == ["before", "during"]
    seen = ids_seen(b)
    assert seen == list(range(seen[0], seen[-1] + 1))
