"""Faults with the Redis store: kill -9 in a loop, Redis restarts, reconnect storms."""

from __future__ import annotations

import threading
import time

import pytest

from tests.support.liveserver import LiveServer
from tests.support.liveserver import Person
from tests.support.rawsocket import RawSocket

pytestmark = [pytest.mark.redis, pytest.mark.server]

FAST = {
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


def connect(server, person, code, last_id=None, closing=None):
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


def test_kill_9_in_a_loop_while_members_send(redis_proc, tmp_path, closing):
    steady = LiveServer({**FAST, "STORE": redis_proc.url}, tmp_path / "steady").start()
    victim = LiveServer({**FAST, "STORE": redis_proc.url}, tmp_path / "victim").start()
    closing(steady)
    closing(victim)
    ada, bob = Person(steady.url), Person(victim.url)
    closing(ada)
    closing(bob)
    code = ada.create_room("ada")
    bob.join(code, "bob")
    a = connect(steady, ada, code, closing=closing)
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
            b = connect(victim, bob, code, last_id=last_seen or None, closing=closing)
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
    final = connect(victim, bob, code, last_id=0, closing=closing)
    history = [m["id"] for m in final.received("joined")[0]["history"]]
    assert history == list(range(1, history[-1] + 1))  # contiguous, no repeats
    assert set(acked) <= set(history)  # every acknowledged line survived
    for server in (steady, victim):
        log = server.log_text()
        assert "Traceback" not in log, server.log_tail()


def test_reconnect_storm_after_a_restart_converges(redis_proc, tmp_path, closing):
    server = LiveServer({**FAST, "STORE": redis_proc.url}, tmp_path / "app").start()
    closing(server)
    people, sockets = [], []
    code = None
    for i in range(30):
        person = Person(server.url)
        closing(person)
        if code is None:
            code = person.create_room(f"p{i}")
        else:
            person.join(code, f"p{i}")
        people.append(person)
    for person in people:
        sockets.append(connect(server, person, code, closing=closing))
    for i in range(10):
        assert sockets[i].call("send", {"text": f"before {i}"})["ok"]
    for sock in sockets:
        sock.read_for(0.05)
    last_ids = [ids_seen(s)[-1] for s in sockets]
    server.kill()
    server.start()
    results = [None] * len(people)

    def reconnect(i):
        sock = connect(server, people[i], code, last_id=last_ids[i], closing=closing)
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
        assert seen[0] == last_ids[i] + 1 or not sock.received("joined")[0]["history"]
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


def test_redis_restart_with_members_sending(redis_proc, tmp_path, closing):
    server = LiveServer({**FAST, "STORE": redis_proc.url}, tmp_path / "app").start()
    closing(server)
    ada, bob = Person(server.url), Person(server.url)
    closing(ada)
    closing(bob)
    code = ada.create_room("ada")
    bob.join(code, "bob")
    a = connect(server, ada, code, closing=closing)
    b = connect(server, bob, code, closing=closing)
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
