"""A stalled or slowed Redis: what was answered ``unavailable`` is never recorded.

redis-server is stopped with SIGSTOP (it keeps every connection and the
commands sent to it, and runs them when SIGCONT arrives), the way a
swapping, overloaded or paused host stalls it. A call the store gave up on
must then do nothing when Redis finally runs it: otherwise a line answered
``unavailable`` would appear after all, and a client without a cid would
send it twice.
"""

from __future__ import annotations

import signal
import threading
import time

import pytest

from chatapp.stores import Limits
from chatapp.stores import StoreUnavailable
from chatapp.stores.base import NewMember
from chatapp.stores.redis import RedisClock
from chatapp.stores.redis import RedisStore
from tests.support.liveserver import LiveServer
from tests.support.rawsocket import chat_room
from tests.support.rawsocket import RawSocket

pytestmark = pytest.mark.redis

LIMITS = Limits(max_members=10, history_limit=50, idle_ttl=600)


def stall(redis_proc, seconds: float) -> threading.Thread:
    """Stop redis-server now and let it go on after ``seconds`` (in a thread)."""
    redis_proc.process.send_signal(signal.SIGSTOP)

    def resume() -> None:
        time.sleep(seconds)
        redis_proc.process.send_signal(signal.SIGCONT)

    thread = threading.Thread(target=resume)
    thread.start()
    return thread


@pytest.fixture
def own_redis_store(redis_proc):
    """A RedisStore on a Redis of this test's own, with ada connected in ABCD."""
    store = RedisStore(redis_proc.url, LIMITS)
    now = time.time()
    store.create_room("ABCD", NewMember("ada", "ada", ("ada",), now + 60), "10.0.0.1", now)
    store.connect("ABCD", "ada", "c1", None, 50, "ts", now, now + 30)
    yield store
    store.client.close()


def test_a_line_sent_into_a_stall_is_not_recorded_when_redis_wakes(redis_proc, own_redis_store):
    resumed = stall(redis_proc, 1.5)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        own_redis_store.append("ABCD", "ada", "into the stall", None, "ts", 5, 10, time.time())
    assert time.monotonic() - started < 1.5  # answered before Redis came back
    resumed.join()
    time.sleep(0.2)  # Redis runs what it had queued
    assert own_redis_store.latest_ids(["ABCD"]) == [1]  # the join notice only
    resend = own_redis_store.append("ABCD", "ada", "into the stall", None, "ts", 5, 10, time.time())
    assert resend.message_id == 2
    assert [m.text for m in own_redis_store.messages("ABCD", 0, 10)] == ["", "into the stall"]


def test_a_line_queued_behind_one_in_the_stall_is_not_recorded_either(redis_proc, own_redis_store):
    # The second line waits for the first one's round trip, then goes itself.
    resumed = stall(redis_proc, 2.6)
    answers: dict[str, tuple[type, float]] = {}

    def send(text: str) -> None:
        started = time.monotonic()
        try:
            own_redis_store.append("ABCD", "ada", text, None, "ts", 5, 10, time.time())
            answers[text] = (type(None), time.monotonic() - started)
        except StoreUnavailable:
            answers[text] = (StoreUnavailable, time.monotonic() - started)

    first = threading.Thread(target=send, args=("first",))
    first.start()
    time.sleep(0.2)
    queued = threading.Thread(target=send, args=("queued",))
    queued.start()
    first.join(5)
    queued.join(5)
    for text in ("first", "queued"):
        outcome, seconds = answers[text]
        assert outcome is StoreUnavailable and seconds < 2.0, (text, answers)
    resumed.join()
    time.sleep(0.2)  # Redis runs what it had queued
    assert own_redis_store.latest_ids(["ABCD"]) == [1]  # the join notice only


def test_a_connect_into_a_stall_records_no_join(redis_proc, own_redis_store):
    now = time.time()
    own_redis_store.add_member("ABCD", NewMember("bob", "bob", ("bob",), now + 60), now)
    resumed = stall(redis_proc, 1.5)
    with pytest.raises(StoreUnavailable):
        own_redis_store.connect("ABCD", "bob", "c2", None, 50, "ts", time.time(), time.time() + 30)
    resumed.join()
    time.sleep(0.2)
    assert [m.kind for m in own_redis_store.messages("ABCD", 0, 10)] == ["join"]  # ada's only
    assert own_redis_store.expired_connections(time.time() + 31) == [("ABCD", "ada", "c1")]


def test_a_slow_redis_below_the_deadline_records_as_usual(redis_proc, own_redis_store):
    resumed = stall(redis_proc, 0.2)
    appended = own_redis_store.append(
        "ABCD", "ada", "a little late", None, "ts", 5, 10, time.time()
    )
    resumed.join()
    assert appended.message_id == 2


@pytest.mark.parametrize("skew", [-120.0, 120.0])
def test_the_deadline_is_on_redis_clock_whatever_ours_says(
    monkeypatch, redis_proc, own_redis_store, skew
):
    # This host's clock is two minutes off from Redis's: lines still go through.
    real = time.time
    monkeypatch.setattr("chatapp.stores.redis.time.time", lambda: real() + skew)
    fresh = RedisStore(redis_proc.url, LIMITS)
    try:
        appended = fresh.append("ABCD", "ada", "skewed", None, "ts", 5, 10, real())
        assert appended.message_id == 2
    finally:
        fresh.client.close()


def test_calls_made_while_the_clock_is_checked_keep_the_offset_they_have(
    redis_proc, own_redis_store
):
    # Under load, every caller of a busy second used to ask Redis for the time.
    clock = RedisClock(own_redis_store.client)
    clock.deadline()
    before = own_redis_store.client.info("commandstats")["cmdstat_time"]["calls"]
    clock._next_check = 0.0  # the offset is due for a check
    resumed = stall(redis_proc, 0.3)  # and the check takes a while
    deadlines: list[str] = []
    threads = [
        threading.Thread(target=lambda: deadlines.append(clock.deadline())) for _ in range(20)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    resumed.join()
    assert len(deadlines) == 20
    assert own_redis_store.client.info("commandstats")["cmdstat_time"]["calls"] - before == 1


@pytest.mark.server
def test_a_stalled_redis_answers_unavailable_and_records_nothing(redis_proc, tmp_path, closing):
    settings = {
        "STORE": redis_proc.url,
        "SEND_RATE": 100,
        "SEND_BURST": 100,
        "INPUT_RATE": 100,
        "INPUT_BURST": 100,
    }
    server = LiveServer(settings, tmp_path / "app").start()
    closing(server)
    code, (_, bob), (a, b) = chat_room(server, closing, timeout=10)

    assert a.call("send", {"text": "before"})["ok"]
    resumed = stall(redis_proc, 2.5)
    assert a.call("send", {"text": "stalled", "cid": "k1"}) == {"ok": False, "error": "unavailable"}
    resumed.join()
    time.sleep(1.5)  # Redis ran what it had queued; the sequencers looked
    c = RawSocket(server.url, cookie=bob.cookie_header(), timeout=10)  # a new tab
    closing(c)
    assert c.connect({"room": code})[0] == "connect"
    (joined,) = c.read_until(lambda: c.received("joined"))
    assert [m["text"] for m in joined["history"] if m["kind"] == "chat"] == ["before"]
    resend = a.call("send", {"text": "stalled", "cid": "k1"})
    assert resend["ok"] and resend["id"] == joined["latest_id"] + 1, (resend, joined)
    b.read_until(lambda: any(m["id"] == resend["id"] for m in b.received("message")))
    b.read_for(0.5)
    texts = [m["text"] for m in b.received("message") if m["kind"] == "chat"]
    assert texts == ["before", "stalled"]
    assert "Traceback" not in server.log_text()
