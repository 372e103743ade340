"""Delivery across processes: the RoomSequencer's order, and RedisStore's publications.

The sequencer is tested with a fake store (pure rules); the publications on a
real redis-server, with two RedisStores standing for two processes.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from chatapp.delivery.sequencer import DeliveryListener
from chatapp.delivery.sequencer import GAP_WAIT_SECONDS
from chatapp.delivery.sequencer import RoomSequencer
from chatapp.domain import Message
from chatapp.domain import Present
from chatapp.stores import Limits
from chatapp.stores.base import AppendOutcome
from chatapp.stores.base import NewMember
from chatapp.stores.base import StoreUnavailable
from chatapp.stores.redis import _delivery
from chatapp.stores.redis import _run_together
from chatapp.stores.redis import RedisStore


def line(message_id: int, text: str = "") -> Message:
    return Message(message_id, "chat", "ada", text or f"line {message_id}", "ts")


class FakeStore:
    """What the sequencer asks of a store: retained messages, newest ids, present names."""

    def __init__(self) -> None:
        self.lines: dict[str, list[Message]] = {}
        self.names: dict[str, tuple[str, ...]] = {}

    def record(self, code: str, count: int) -> list[Message]:
        start = len(self.lines.setdefault(code, [])) + 1
        new = [line(i) for i in range(start, start + count)]
        self.lines[code].extend(new)
        return new

    def notice(self, code: str, kind: str, name: str) -> Message:
        lines = self.lines.setdefault(code, [])
        lines.append(Message(len(lines) + 1, kind, name, "", "ts"))
        present = self.names.get(code, ())
        self.names[code] = (
            (*present, name) if kind == "join" else (tuple(n for n in present if n != name))
        )
        return lines[-1]

    def present(self, code: str, now: float) -> Present:
        return Present(self.names.get(code, ()), len(self.lines.get(code, [])))

    def messages(self, code: str, after_id: int, upto_id: int) -> list[Message]:
        return [m for m in self.lines.get(code, []) if after_id < m.id <= upto_id]

    def latest_ids(self, codes: list[str]) -> list[int]:
        return [len(self.lines.get(code, [])) for code in codes]


class Local:
    """A sequencer over a FakeStore, recording what it hands to this process's sockets."""

    def __init__(self) -> None:
        self.store = FakeStore()
        self.sequencer = RoomSequencer(self.store)
        self.seen: list[tuple[str, int, list[str]]] = []  # (room, id, sids skipped)
        self.sent: list[tuple[str, Any]] = []  # (sid, id or member list) sent to one socket
        self.sequencer.deliver = lambda code, message, skip: self.seen.append(
            (code, message.id, skip)
        )
        self.sequencer.emit_to = lambda sid, event, data: self.sent.append(
            (sid, data["id"] if event == "message" else data["members"])
        )
        # (names, last id delivered then, sockets skipped)
        self.announced: list[tuple[tuple[str, ...], int, list[str]]] = []
        self.sequencer.announce = lambda code, names, skip: self.announced.append(
            (names, self.seen[-1][1], skip)
        )


@pytest.fixture
def local():
    return Local()


def test_messages_go_out_in_id_order_whatever_order_they_come_in(local):
    local.sequencer.admit("ABCD", "s1", 0, lambda: None)
    for message_id in (2, 3, 1, 5, 4):
        local.sequencer.offer("ABCD", line(message_id))
    assert [i for _, i, _ in local.seen] == [1, 2, 3, 4, 5]


def test_repeats_and_rooms_without_local_sockets_deliver_nothing(local):
    local.sequencer.admit("ABCD", "s1", 3, lambda: None)
    local.sequencer.offer("ABCD", line(2))  # in the history the socket got
    local.sequencer.offer("ABCD", line(4))
    local.sequencer.offer("ABCD", line(4))
    local.sequencer.offer("WXYZ", line(1))  # no socket here
    assert local.seen == [("ABCD", 4, [])]


def test_a_socket_is_not_sent_again_what_its_history_held(local):
    local.sequencer.admit("ABCD", "old", 2, lambda: None)
    local.sequencer.admit("ABCD", "new", 4, lambda: None)  # its history reached id 4
    for message_id in (3, 4, 5):
        local.sequencer.offer("ABCD", line(message_id))
    assert local.seen == [("ABCD", 3, ["new"]), ("ABCD", 4, ["new"]), ("ABCD", 5, [])]


def test_a_socket_whose_history_is_older_gets_what_was_delivered_since(local):
    local.store.record("ABCD", 5)
    local.sequencer.admit("ABCD", "first", 3, lambda: None)
    local.sequencer.offer("ABCD", line(4))
    local.sequencer.offer("ABCD", line(5))
    local.sequencer.admit("ABCD", "late", 3, lambda: None)  # its snapshot was taken before 4
    assert local.sent == [("late", 4), ("late", 5)]


def test_a_socket_the_store_fails_to_catch_up_enters_nothing(local, monkeypatch):
    local.sequencer.admit("ABCD", "old", 0, lambda: None)
    for message in local.store.record("ABCD", 2):
        local.sequencer.offer("ABCD", message)

    def unavailable(*args):
        raise StoreUnavailable("timed out")

    monkeypatch.setattr(local.store, "messages", unavailable)
    entered = []
    with pytest.raises(StoreUnavailable):
        local.sequencer.admit("ABCD", "new", 0, lambda: entered.append("new"))
    assert entered == [] and local.sent == []
    local.sequencer.release("ABCD", "old")
    local.sequencer.offer("ABCD", line(3))
    assert [i for _, i, _ in local.seen] == [1, 2]  # "new" was never counted in


def test_a_gap_is_filled_from_the_store_after_the_wait(local):
    local.sequencer.admit("ABCD", "s1", 0, lambda: None)
    local.store.record("ABCD", 3)
    local.sequencer.offer("ABCD", line(3))  # 1 and 2 were lost on the way
    local.sequencer.fill_gaps()
    assert local.seen == []  # the gap may still close by itself
    time.sleep(GAP_WAIT_SECONDS + 0.05)
    local.sequencer.fill_gaps()
    assert [i for _, i, _ in local.seen] == [1, 2, 3]


def test_a_member_list_goes_out_right_after_the_notice_that_changed_it(local):
    local.sequencer.admit("ABCD", "s1", 0, lambda: None)
    join = Message(2, "join", "bob", "", "ts")
    local.sequencer.offer("ABCD", join, ("ada", "bob"))  # before line 1: held
    assert local.announced == []
    local.sequencer.offer("ABCD", line(1))
    assert local.announced == [(("ada", "bob"), 2, [])]


def test_notices_filled_from_the_store_are_followed_by_the_list_it_holds(local):
    # Their publications were lost: nothing carried the member list.
    local.sequencer.admit("ABCD", "s1", 0, lambda: None)
    for kind, name in (("join", "ada"), ("join", "bob"), ("leave", "ada")):
        local.store.notice("ABCD", kind, name)
    local.store.record("ABCD", 1)
    local.sequencer.offer("ABCD", line(4))
    time.sleep(GAP_WAIT_SECONDS + 0.05)
    local.sequencer.fill_gaps()
    local.sequencer.fill_gaps()
    assert [i for _, i, _ in local.seen] == [1, 2, 3, 4]
    assert local.announced == [(("bob",), 4, [])]  # once, read after the notices went out


def test_a_list_read_from_the_store_never_replaces_a_newer_one(local):
    local.sequencer.admit("ABCD", "s1", 0, lambda: None)
    local.store.notice("ABCD", "join", "bob")
    read = local.store.present

    def slow_read(code, now):
        # The store answered before cy joined; cy's notice, with its list,
        # goes out before this answer is handled.
        answer = read(code, now)
        cy = local.store.notice("ABCD", "join", "cy")
        local.sequencer.offer("ABCD", cy, ("bob", "cy"))
        return answer

    local.store.present = slow_read
    local.sequencer.offer("ABCD", local.store.lines["ABCD"][0])  # bob's notice, without its list
    assert local.announced == [(("bob", "cy"), 2, [])]  # the older answer was dropped


def test_a_list_the_store_failed_to_give_is_read_at_the_next_tick(local):
    local.sequencer.admit("ABCD", "s1", 0, lambda: None)
    bob = local.store.notice("ABCD", "join", "bob")
    read = local.store.present

    def unavailable(code, now):
        raise StoreUnavailable("timed out")

    local.store.present = unavailable
    local.sequencer.offer("ABCD", bob)
    local.sequencer.fill_gaps(poll=False)
    assert local.announced == []
    local.store.present = read
    local.sequencer.fill_gaps(poll=False)
    assert local.announced == [(("bob",), 1, [])]


def test_lists_skip_sockets_whose_history_was_newer_and_catch_up_brings_one(local):
    local.sequencer.admit("ABCD", "old", 0, lambda: None)
    local.sequencer.admit("ABCD", "ahead", 2, lambda: None)  # its joined listed bob and cy
    bob = Message(1, "join", "bob", "", "ts")
    cy = Message(2, "join", "cy", "", "ts")
    local.sequencer.offer("ABCD", bob, ("bob",))
    local.sequencer.offer("ABCD", cy, ("bob", "cy"))
    assert local.announced == [(("bob",), 1, ["ahead"]), (("bob", "cy"), 2, ["ahead"])]
    # A socket whose history stopped before both notices gets them, then the list.
    local.store.lines["ABCD"] = [bob, cy]
    local.sequencer.admit("ABCD", "behind", 0, lambda: None)
    assert local.sent == [("behind", 1), ("behind", 2), ("behind", ["bob", "cy"])]


def test_losses_nothing_later_reveals_are_found_by_the_newest_id(local):
    local.sequencer.admit("ABCD", "s1", 0, lambda: None)
    local.store.record("ABCD", 2)  # recorded elsewhere, never published here
    local.sequencer.fill_gaps(poll=True)
    time.sleep(GAP_WAIT_SECONDS + 0.05)
    local.sequencer.fill_gaps(poll=False)  # after the wait, not at the next poll
    assert [i for _, i, _ in local.seen] == [1, 2]


def rooms_with_two_lines(local: Local, *codes: str) -> list[list[str]]:
    """Admit a socket to each room, record two lines there; return the rooms polled."""
    for code in codes:
        local.sequencer.admit(code, "s-" + code, 0, lambda: None)
        local.store.record(code, 2)
    asked: list[list[str]] = []
    latest_ids = local.store.latest_ids
    local.store.latest_ids = lambda codes: asked.append(list(codes)) or latest_ids(codes)
    return asked


def test_between_polls_only_rooms_with_a_gap_are_looked_at(local):
    asked = rooms_with_two_lines(local, "ABCD", "EFGH")
    local.sequencer.offer("ABCD", line(2))  # a gap: 1 is missing
    for message_id in (1, 2):
        local.sequencer.offer("EFGH", line(message_id))  # no gap
    local.sequencer.fill_gaps(poll=False)
    assert asked == [["ABCD"]]
    local.sequencer.poll_soon()  # the listener was away: look at every room once
    local.sequencer.fill_gaps(poll=False)
    local.sequencer.fill_gaps(poll=False)
    assert asked[1:] == [["ABCD", "EFGH"], ["ABCD"]]


def test_a_poll_of_a_slice_reads_only_its_rooms_and_those_with_a_gap(local):
    asked = rooms_with_two_lines(local, "ABCD", "EFGH", "IJKL")
    local.sequencer.offer("ABCD", line(2))  # a gap: 1 is missing
    local.sequencer.fill_gaps(poll=lambda code: code == "IJKL")
    assert asked == [["ABCD", "IJKL"]]
    time.sleep(GAP_WAIT_SECONDS + 0.05)
    local.sequencer.fill_gaps(poll=lambda code: code == "IJKL")
    assert [(code, i) for code, i, _ in local.seen] == [
        ("ABCD", 1),
        ("ABCD", 2),
        ("IJKL", 1),
        ("IJKL", 2),
    ]


def test_ids_the_store_no_longer_retains_are_skipped(local):
    local.sequencer.admit("ABCD", "s1", 0, lambda: None)
    local.sequencer.offer("ABCD", line(7))  # 1-6 are gone from the history
    time.sleep(GAP_WAIT_SECONDS + 0.05)
    local.sequencer.fill_gaps()
    local.sequencer.fill_gaps()
    assert [i for _, i, _ in local.seen] == [7]


def test_the_room_is_forgotten_with_its_last_socket(local):
    local.sequencer.admit("ABCD", "s1", 0, lambda: None)
    local.sequencer.admit("ABCD", "s2", 0, lambda: None)
    local.sequencer.release("ABCD", "s1")
    local.sequencer.offer("ABCD", line(1))
    local.sequencer.release("ABCD", "s2")
    local.sequencer.offer("ABCD", line(2))
    assert [i for _, i, _ in local.seen] == [1]


def test_concurrent_offers_keep_the_order(local):
    local.sequencer.admit("ABCD", "s1", 0, lambda: None)
    ids = list(range(1, 401))
    threads = [
        threading.Thread(
            target=lambda part=ids[k::4]: [local.sequencer.offer("ABCD", line(i)) for i in part]
        )
        for k in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [i for _, i, _ in local.seen] == ids


@pytest.mark.parametrize(
    "raw",
    [None, 17, "", "not json", "[]", '{"r":"ABCD"}', '{"r":"ABCD","m":{"id":"x"}}', b"{}"],
)
def test_unreadable_publications_are_ignored(raw):
    assert _delivery(raw) is None


# -- RedisStore's publications (real Redis) ---------------------------------------

LIMITS = Limits(max_members=10, history_limit=50, idle_ttl=600)


def collect(store: RedisStore, into: list, on_listening=lambda: None) -> None:
    """Read ``store.deliveries()`` into ``into`` (in a thread) until its client closes."""
    try:
        for delivery in store.deliveries(on_listening):
            into.append(delivery)
    except Exception:  # noqa: BLE001 - the store was closed at teardown
        return


def ada_and_bob(redis_url: str) -> tuple[RedisStore, RedisStore, float]:
    """Two RedisStores (two processes); ada and bob seated in room ABCD, not connected."""
    here, there = RedisStore(redis_url, LIMITS), RedisStore(redis_url, LIMITS)
    now = time.time()
    here.create_room("ABCD", NewMember("ada", "ada", ("ada",), now + 60), "10.0.0.1", now)
    here.add_member("ABCD", NewMember("bob", "bob", ("bob",), now + 60), now)
    return here, there, now


@pytest.fixture
def two_hosts(redis_url):
    """Two RedisStores (two processes) with ada in room ABCD; each listening."""
    here, there, _ = ada_and_bob(redis_url)
    heard = {"here": [], "there": []}
    threads = []
    for name, store in (("here", here), ("there", there)):
        threads.append(threading.Thread(target=collect, args=(store, heard[name]), daemon=True))
        threads[-1].start()
        wait_for(lambda store=store: here.client.pubsub_numsub(store.channel)[0][1] == 1)
    yield here, there, heard
    for store, thread in zip((here, there), threads, strict=True):
        store.client.close()
        thread.join(10)
        assert not thread.is_alive()


def wait_for(predicate, timeout=3.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "not within the timeout"
        time.sleep(0.01)


@pytest.mark.redis
def test_what_is_recorded_once_listening_is_heard(redis_url):
    # The listener looks at every room's newest id when on_listening runs:
    # a line recorded from then on must arrive, or it would be found only by
    # the next poll, seconds later.
    here, there, now = ada_and_bob(redis_url)
    here.connect("ABCD", "ada", "c1", None, 50, "ts", now, now + 30)
    there.connect("ABCD", "bob", "c2", None, 50, "ts", now, now + 30)
    heard = []
    listening = threading.Event()

    def record_at_once():
        here.append("ABCD", "ada", "the moment it listens", None, "ts", 5, 10, now)
        listening.set()

    thread = threading.Thread(target=collect, args=(there, heard, record_at_once), daemon=True)
    thread.start()
    assert listening.wait(3)
    wait_for(lambda: [d.message.text for d in heard] == ["the moment it listens"])
    for store in (here, there):
        store.client.close()
    thread.join(10)


@pytest.mark.redis
def test_a_listener_finds_what_was_recorded_before_it_listened(redis_url):
    # Published while nobody listened: once listening, the next tick (not
    # the next poll, seconds later) looks at the room's newest id.
    here, there, now = ada_and_bob(redis_url)
    here.connect("ABCD", "ada", "c1", None, 50, "ts", now, now + 30)
    welcome = there.connect("ABCD", "bob", "c2", None, 50, "ts", now, now + 30)
    sequencer = RoomSequencer(there)
    seen = []
    sequencer.deliver = lambda code, message, skip: seen.append(message.text)
    sequencer.admit("ABCD", "s2", welcome.latest_id, lambda: None)
    here.append("ABCD", "ada", "before anyone listened", None, "ts", 5, 10, now)
    listener = DeliveryListener(there, sequencer)
    threading.Thread(target=listener.run, args=(time.sleep,), daemon=True).start()
    wait_for(lambda: here.client.pubsub_numsub(there.channel)[0][1] == 1)
    time.sleep(0.1)  # the confirmation reaches the listener
    sequencer.fill_gaps(poll=False)  # a tick: the gap is seen
    time.sleep(GAP_WAIT_SECONDS + 0.05)
    sequencer.fill_gaps(poll=False)  # the next tick after the wait: filled
    assert seen == ["before anyone listened"]
    for store in (here, there):
        store.client.close()


@pytest.mark.redis
def test_a_join_filled_from_redis_brings_the_member_list_of_redis(redis_url):
    # bob's join was published while "there" did not listen.
    here, there, now = ada_and_bob(redis_url)
    welcome = there.connect("ABCD", "ada", "c1", None, 50, "ts", now, now + 30)
    sequencer = RoomSequencer(there)
    heard = []
    sequencer.deliver = lambda code, message, skip: heard.append(message.kind)
    sequencer.announce = lambda code, names, skip: heard.append(names)
    sequencer.admit("ABCD", "s1", welcome.latest_id, lambda: None)
    here.connect("ABCD", "bob", "c2", None, 50, "ts", now, now + 30)
    sequencer.fill_gaps()
    time.sleep(GAP_WAIT_SECONDS + 0.05)
    sequencer.fill_gaps()
    assert heard == ["join", ("ada", "bob")]
    for store in (here, there):
        store.client.close()


@pytest.mark.redis
def test_a_line_goes_to_the_other_hosts_of_the_room_only(two_hosts):
    here, there, heard = two_hosts
    now = time.time()
    # ada connects through "here", bob through "there": both hosts are in the room.
    here.connect("ABCD", "ada", "c1", None, 50, "ts", now, now + 30)
    there.connect("ABCD", "bob", "c2", None, 50, "ts", now, now + 30)
    wait_for(lambda: [d.message.kind for d in heard["here"]] == ["join"])
    assert heard["here"][0].members == ("ada", "bob")  # bob's notice, with the member list
    result = here.append("ABCD", "ada", "hello", None, "ts", 5, 10, now)
    wait_for(lambda: heard["there"] and heard["there"][-1].message.text == "hello")
    assert heard["there"][-1].message == result.message
    assert heard["there"][-1].members is None
    time.sleep(0.2)
    assert [d.message.kind for d in heard["here"]] == ["join"]  # never its own


@pytest.mark.redis
def test_a_host_without_sockets_there_hears_nothing(two_hosts):
    here, there, heard = two_hosts
    now = time.time()
    here.connect("ABCD", "ada", "c1", None, 50, "ts", now, now + 30)
    here.append("ABCD", "ada", "alone", None, "ts", 5, 10, now)
    time.sleep(0.3)
    assert heard == {"here": [], "there": []}


@pytest.mark.redis
def test_a_host_whose_lease_ran_out_is_dropped_and_renewal_keeps_it(two_hosts):
    here, there, heard = two_hosts
    now = time.time()
    here.connect("ABCD", "ada", "c1", None, 50, "ts", now, now + 30)
    there.connect("ABCD", "bob", "c2", None, 50, "ts", now, now + 2)  # a short lease
    there.renew_leases([("ABCD", "bob", "c2")], now + 30)
    here.append("ABCD", "ada", "renewed", None, "ts", 5, 10, now + 5)
    wait_for(lambda: [d.message.text for d in heard["there"]][-1:] == ["renewed"])
    # "there" dies: it stops renewing, and its place in the room lapses.
    here.append("ABCD", "ada", "too late", None, "ts", 5, 10, now + 31)
    time.sleep(0.3)
    assert "too late" not in [d.message.text for d in heard["there"]]
    assert not here.client.hexists("chat:{ABCD}:s", there.host_id)
    # Not dead after all, only away from Redis: its next renewal brings it back.
    assert there.renew_leases([("ABCD", "bob", "c2")], now + 60) == []
    here.append("ABCD", "ada", "back", None, "ts", 5, 10, now + 32)
    wait_for(lambda: [d.message.text for d in heard["there"]][-1:] == ["back"])


@pytest.mark.redis
def test_lines_sent_together_survive_redis_losing_its_scripts(redis_url):
    # After SCRIPT FLUSH (a Redis restart without persistence does the same)
    # a batch of lines into two rooms reloads the script and records every
    # line once.
    store = RedisStore(redis_url, LIMITS)
    now = time.time()
    for code, name in (("ABCD", "ada"), ("EFGH", "bob")):
        store.create_room(code, NewMember(name, name, (name,), now + 60), "10.0.0.1", now)
        store.connect(code, name, "c1", None, 50, "ts", now, now + 30)
    store.client.script_flush()
    ids = {"ABCD": [], "EFGH": []}
    barrier = threading.Barrier(8)

    def send(i):
        code, name = ("ABCD", "ada") if i % 2 else ("EFGH", "bob")
        barrier.wait()
        result = store.append(code, name, f"line {i}", None, "ts", 100, 100, now)
        ids[code].append(result.message_id)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    for code in ids:
        assert sorted(ids[code]) == [2, 3, 4, 5]
        assert [m.id for m in store.messages(code, 0, 100)] == list(range(1, 6))
    store.client.close()


def together(store: RedisStore, code: str, now: float, *line):
    """One append call as RedisStore.append queues it for a group commit."""
    text, member_id, cid, rate, burst = line
    limits, host = store._limits_json, store.host_id
    args = ["append", repr(now), limits, host, "ts", member_id, text, cid, rate, burst]
    return (store._room(code), args)


class PastDeadlines:
    """A clock whose deadlines have all passed on Redis's clock."""

    def deadline(self) -> str:
        return "1"


def evalsha_calls(store: RedisStore) -> int:
    return store.client.info("commandstats")["cmdstat_evalsha"]["calls"]


@pytest.mark.redis
def test_a_rooms_lines_sent_together_are_one_call_each_line_with_its_own_outcome(redis_url):
    store = RedisStore(redis_url, LIMITS)
    now = time.time()
    store.create_room("ABCD", NewMember("ada", "ada", ("ada",), now + 60), "10.0.0.1", now)
    store.add_member("ABCD", NewMember("bob", "bob", ("bob",), now + 60), now)  # never connects
    store.connect("ABCD", "ada", "c1", None, 50, "ts", now, now + 30)
    store.create_room("EFGH", NewMember("cy", "cy", ("cy",), now + 60), "10.0.0.1", now)
    store.connect("EFGH", "cy", "c1", None, 50, "ts", now, now + 30)
    calls = [  # ada may send 2 at once, then 1 a second
        together(store, "ABCD", now, "one", "ada", "k1", 1, 2),
        together(store, "EFGH", now, "elsewhere", "cy", "", 1, 2),
        together(store, "ABCD", now, "one again", "ada", "k1", 1, 2),
        together(store, "ABCD", now, "not here", "bob", "", 1, 2),
        together(store, "ABCD", now, "two", "ada", "", 1, 2),
        together(store, "ABCD", now, "too soon", "ada", "", 1, 2),
        together(store, "ABCD", now + 1.5, "later", "ada", "", 1, 2),
    ]
    before = evalsha_calls(store)
    results = _run_together(store.client, store._script, store._leases, store._clock, calls)
    assert evalsha_calls(store) - before == 2  # one call per room
    assert results[0] == ["recorded", 2, "ada"]
    assert results[1] == ["recorded", 2, "cy"]
    assert results[2] == ["duplicate", "2"]  # the cid of a line earlier in the same call
    assert results[3] == ["not_member"]
    assert results[4] == ["recorded", 3, "ada"]
    assert results[5][0] == "rate_limited"
    assert results[6] == ["recorded", 4, "ada"]  # at its own time: a token came back
    assert [m.text for m in store.messages("ABCD", 1, 100)] == ["one", "two", "later"]
    assert [m.text for m in store.messages("EFGH", 1, 100)] == ["elsewhere"]
    # The call kept what its lines spent: half a token is left.
    after = store.append("ABCD", "ada", "right after", None, "ts", 1, 2, now + 1.5)
    assert after.outcome is AppendOutcome.RATE_LIMITED
    # A call Redis runs after its deadline records none of its lines.
    late = [together(store, "ABCD", now + 9, f"late {i}", "ada", "", 1, 2) for i in range(3)]
    replies = _run_together(store.client, store._script, store._leases, PastDeadlines(), late)
    assert replies == ["~late"] * 3
    assert store.latest_ids(["ABCD"]) == [4]
    store.client.close()
