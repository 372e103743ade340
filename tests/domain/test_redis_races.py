"""Races between OS processes over one real Redis: the scripts are atomic."""

from __future__ import annotations

import multiprocessing
import time

import pytest

from chatapp.rooms import NameTaken
from chatapp.rooms import RoomFull
from chatapp.rooms import RoomRegistry
from chatapp.rooms import ServerFull
from chatapp.rooms import Settings
from chatapp.rooms import TooManyAttempts
from chatapp.stores import Limits
from chatapp.stores.redis import RedisStore

pytestmark = pytest.mark.redis

WORKERS = 8
LIMITS = Limits(max_members=5, history_limit=500, idle_ttl=600, max_rooms=5, rooms_per_address=3)


def registry(url: str) -> RoomRegistry:
    return RoomRegistry(
        RedisStore(url, LIMITS), Settings(send_burst=10_000, creates_per_minute=100)
    )


def join_as(args: tuple[str, str, str, float]) -> str:
    url, code, name, start_at = args
    time.sleep(max(0.0, start_at - time.time()))  # start together
    try:
        registry(url).join_room(code, name)
    except NameTaken:
        return "taken"
    except RoomFull:
        return "full"
    return "seated"


def create_from(args: tuple[str, str, float]) -> str:
    url, address, start_at = args
    chat = registry(url)
    time.sleep(max(0.0, start_at - time.time()))
    try:
        chat.create_room("ada", address)
    except TooManyAttempts:
        return "too_many"
    except ServerFull:
        return "full"
    return "created"


def send_lines(args: tuple[str, str, str, float]) -> list[int]:
    url, code, member_id, start_at = args
    chat = registry(url)
    time.sleep(max(0.0, start_at - time.time()))
    return [chat.post(code, member_id, {"text": str(i)})[0] for i in range(100)]


@pytest.fixture
def pool():
    with multiprocessing.get_context("spawn").Pool(WORKERS) as workers:
        yield workers


def test_processes_racing_for_one_name_seat_one(redis_url, pool):
    code = registry(redis_url).create_room("ada").code
    start = time.time() + 1.0
    names = ["bob", "BOB", "Bob", "b\u043eb"] * (WORKERS // 4)  # Cyrillic o too
    outcomes = pool.map(join_as, [(redis_url, code, n, start) for n in names])
    assert sorted(outcomes) == ["seated"] + ["taken"] * (WORKERS - 1)


def test_processes_racing_for_the_last_seat_seat_one(redis_url, pool):
    chat = registry(redis_url)
    code = chat.create_room("ada").code
    for name in ("b", "c", "d"):
        chat.join_room(code, name)
    start = time.time() + 1.0
    outcomes = pool.map(join_as, [(redis_url, code, f"late{i}", start) for i in range(WORKERS)])
    assert sorted(outcomes) == ["full"] * (WORKERS - 1) + ["seated"]


def test_processes_sending_at_once_get_contiguous_ids(redis_url, pool):
    chat = registry(redis_url)
    seats = [chat.create_room("ada")]
    seats += [chat.join_room(seats[0].code, f"m{i}") for i in range(3)]
    for seat in seats:
        chat.connect(seat.code, seat.member_id, f"{seat.member_id}-tab")
    start = time.time() + 1.0
    work = [(redis_url, s.code, s.member_id, start) for s in seats]
    ids = sorted(i for batch in pool.map(send_lines, work) for i in batch)
    assert ids == list(range(5, 5 + 400))


def test_processes_creating_from_one_address_stop_at_its_limit(redis_url, pool):
    start = time.time() + 1.0
    outcomes = pool.map(create_from, [(redis_url, "10.0.0.1", start)] * WORKERS)
    assert sorted(outcomes) == ["created"] * 3 + ["too_many"] * (WORKERS - 3)


def test_processes_creating_at_once_stop_at_max_rooms(redis_url, pool):
    start = time.time() + 1.0
    work = [(redis_url, f"10.0.0.{i}", start) for i in range(WORKERS)]
    assert sorted(pool.map(create_from, work)) == ["created"] * 5 + ["full"] * (WORKERS - 5)
