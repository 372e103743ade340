"""What only the Redis store does: key expiry, and Redis refusing calls.

Redis answers some calls with an error instead of running them: out of
memory (``maxmemory`` reached under ``noeviction``), a read-only replica,
a script busy too long. The call did nothing; the user is told the chat is
unavailable, as when Redis is gone, and the operator's log says why.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import pytest
import redis

from chatapp.stores import Limits
from chatapp.stores import StoreUnavailable
from chatapp.stores.base import CreateOutcome
from chatapp.stores.base import NewMember
from chatapp.stores.redis import _run_together
from chatapp.stores.redis import RedisStore
from tests.support.liveserver import LiveServer
from tests.support.liveserver import wait_for

pytestmark = pytest.mark.redis

LIMITS = Limits(max_members=10, history_limit=50, idle_ttl=600)


@pytest.fixture
def store(redis_url):
    store = RedisStore(redis_url, LIMITS)
    yield store
    store.client.config_set("maxmemory", 0)
    store.client.close()


def seat(store: RedisStore, code: str, name: str, now: float, connect: bool = True) -> None:
    store.create_room(code, NewMember(name, name, (name,), now + 60), "10.0.0.1", now)
    if connect:
        store.connect(code, name, "c1", None, 50, "ts", now, now + 30)


def test_every_key_of_an_idle_room_expires_after_a_stale_member_is_dropped(store):
    # bob never connected in time; the next call drops him and remembers him
    # as a former member (new keys), then answers early: ada is already in.
    now = time.time()
    seat(store, "ABCD", "ada", now, connect=False)
    store.add_member("ABCD", NewMember("bob", "bob", ("bob",), now + 1), now)
    store.add_member("ABCD", NewMember("ada", "ada", ("ada",), now + 60), now + 2)
    keys = list(store.client.scan_iter("chat:{ABCD}*"))
    assert "chat:{ABCD}:f" in keys
    assert {key: store.client.pttl(key) > 0 for key in keys} == {key: True for key in keys}


def test_rooms_redis_expired_by_itself_free_their_slots(redis_url):
    # Redis deletes an idle room's keys a minute after it expired (PEXPIREAT),
    # creator and all: the room indexes forget it by its deadline alone.
    limits = Limits(max_members=10, history_limit=50, idle_ttl=600, max_rooms=1)
    store = RedisStore(redis_url, dataclasses.replace(limits, rooms_per_address=1))
    now = time.time()
    seat(store, "ABCD", "ada", now - 700, connect=False)  # expired 100 s ago
    assert list(store.client.scan_iter("chat:{ABCD}*")) == []  # Redis deleted it at once
    assert store.client.zcard("chat:rooms") == 1  # nothing read the index since
    ada = NewMember("ada", "ada", ("ada",), now + 60)
    assert store.create_room("EFGH", ada, "10.0.0.1", now).outcome is CreateOutcome.CREATED
    assert store.client.zrange("chat:rooms", 0, -1) == ["EFGH"]
    store.client.close()


def test_an_address_index_lives_as_long_as_its_rooms(store):
    now = time.time()
    seat(store, "ABCD", "ada", now, connect=False)
    index = "chat:addr:10.0.0.1"
    assert store.client.zscore(index, "ABCD") == store.client.zscore("chat:rooms", "ABCD")
    assert 600 < store.client.ttl(index) <= 660  # the room's deadline, plus Redis's minute
    store.connect("ABCD", "ada", "c1", None, 50, "ts", now, now + 30)
    assert store.client.ttl(index) == -1 and store.client.zscore(index, "ABCD") == float("inf")
    token = store.disconnect("ABCD", "ada", "c1", now + 1)
    store.end_if_gone("ABCD", "ada", token, "ts", now + 1)
    assert 600 < store.client.ttl(index) <= 661


def test_a_room_recorded_before_byte_counts_is_counted_once(redis_url):
    store = RedisStore(redis_url, Limits(max_members=10, history_limit=50, idle_ttl=600))
    now = time.time()
    seat(store, "ABCD", "ada", now)
    for text in ("hello", "🦊"):
        store.append("ABCD", "ada", text, None, "ts", 5, 10, now)
    store.client.hdel("chat:{ABCD}", "bytes")  # as an older chatapp left it
    store.append("ABCD", "ada", "é", None, "ts", 5, 10, now)
    assert store.client.hget("chat:{ABCD}", "bytes") == str(5 + 4 + 2)
    store.client.close()


def test_a_redis_out_of_memory_refuses_calls_as_unavailable_and_records_nothing(store, caplog):
    now = time.time()
    seat(store, "ABCD", "ada", now)
    store.client.config_set("maxmemory", 1)
    with caplog.at_level(logging.ERROR, logger="chatapp.stores.redis"):
        for _ in range(3):
            with pytest.raises(StoreUnavailable):
                store.append("ABCD", "ada", "no room for me", None, "ts", 5, 10, time.time())
    # Told once, not once a call: a full Redis refuses every line.
    assert [r.getMessage()[:24] for r in caplog.records] == ["Redis refuses calls: com"]
    store.client.config_set("maxmemory", 0)
    assert store.latest_ids(["ABCD"]) == [1]  # ada's join only
    again = store.append("ABCD", "ada", "room again", None, "ts", 5, 10, time.time())
    assert again.message_id == 2


def test_a_room_whose_call_fails_on_the_script_reload_fails_alone(store):
    # After SCRIPT FLUSH each room's call of a batch is sent again; one
    # failing (here: a key of the wrong type) leaves the others' lines
    # recorded and answered.
    now = time.time()
    seat(store, "ABCD", "ada", now)
    store.client.set("chat:{EFGH}", "not a room")
    store.client.script_flush()
    limits, host = store._limits_json, store.host_id
    calls = [
        (store._room(code), ["append", repr(now), limits, host, "ts", name, "hi", "", 5, 10])
        for code, name in (("ABCD", "ada"), ("EFGH", "bob"))
    ]
    results = _run_together(store.client, store._script, store._leases, store._clock, calls)
    assert results[0] == ["recorded", 2, "ada"]
    assert isinstance(results[1], redis.ResponseError)
    assert [m.text for m in store.messages("ABCD", 1, 10)] == ["hi"]


@pytest.mark.server
def test_a_person_sending_into_a_full_redis_is_told_unavailable_then_sends(
    redis_proc, tmp_path, live_people
):
    server = LiveServer({"STORE": redis_proc.url}, tmp_path / "app").start()
    try:
        ada = live_people(server)
        code = ada.create_room("ada")
        client = ada.socket({"room": code})
        assert client.send_line("before")["ok"]
        admin = redis.Redis.from_url(redis_proc.url)
        admin.config_set("maxmemory", 1)
        assert client.send_line("refused", timeout=5) == {"ok": False, "error": "unavailable"}
        assert live_people(server).post_lobby("create", "bob").status_code == 503
        admin.config_set("maxmemory", 0)
        admin.close()
        assert client.send_line("after")["ok"]
        texts = [m["text"] for m in client.lines() if m["kind"] == "chat"]
        assert texts == ["before", "after"]
        assert wait_for(lambda: "Redis refuses calls" in server.log_text())
    finally:
        server.close()
