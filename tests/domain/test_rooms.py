"""RoomRegistry with no app: every rule, on a fake clock.

The Store contract suite: each test runs over MemoryStore and over RedisStore
on a real redis-server (marker ``redis``), so both keep the same rules.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from datetime import datetime
from datetime import timezone

import pytest

from chatapp.domain import Present
from chatapp.rooms import InvalidCode
from chatapp.rooms import InvalidName
from chatapp.rooms import NameTaken
from chatapp.rooms import NoFreeCode
from chatapp.rooms import NotJoined
from chatapp.rooms import RoomFull
from chatapp.rooms import RoomNotFound
from chatapp.rooms import RoomRegistry
from chatapp.rooms import SendRefused
from chatapp.rooms import ServerFull
from chatapp.rooms import Settings
from chatapp.rooms import TooManyAttempts
from chatapp.rooms import utc_timestamp
from chatapp.stores import Limits
from chatapp.stores import MemoryStore
from chatapp.stores.base import ANY_EPOCH
from chatapp.stores.base import GONE
from chatapp.stores.redis import RedisStore


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        # Starts at the real time: Redis expires idle rooms' keys by its own
        # clock (a safety net a minute past the logical expiry).
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def make_store(request):
    """Return a factory of empty stores of one kind."""
    if request.param == "memory":
        return MemoryStore
    url = request.getfixturevalue("redis_url")
    return lambda limits: RedisStore(url, limits)


@pytest.fixture
def make_registry(make_store):
    """Return ``make(clock=None, codes=None, **limits_and_settings)``."""

    def make(clock=None, codes=None, **limits_and_settings) -> RoomRegistry:
        limit_names = {
            "max_members",
            "history_limit",
            "idle_ttl",
            "former_limit",
            "max_rooms",
            "rooms_per_address",
            "history_bytes",
        }
        limits = {"max_members": 200, "history_limit": 500, "idle_ttl": 600}
        limits.update({k: v for k, v in limits_and_settings.items() if k in limit_names})
        settings = Settings(
            **{k: v for k, v in limits_and_settings.items() if k not in limit_names}
        )
        draw = None
        if codes is not None:
            source = iter(codes)
            draw = lambda length: next(source)  # noqa: E731
        counter = itertools.count(1)
        return RoomRegistry(
            make_store(Limits(**limits)),
            settings,
            clock=clock or Clock(),
            draw_code=draw,
            new_member_id=lambda: f"m{next(counter)}",
        )

    return make


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def rooms(make_registry, clock):
    """A RoomRegistry with no app, on the fake clock, over each store."""
    return make_registry(clock)


def room_with(rooms, *names):
    """Create a room as names[0], join the others, connect everyone once."""
    ada = rooms.create_room(names[0])
    seats = [ada] + [rooms.join_room(ada.code, name) for name in names[1:]]
    for seat in seats:
        rooms.connect(seat.code, seat.member_id, f"{seat.member_id}-tab1")
    return seats


def history_ids(welcome):
    return [m.id for m in welcome.history]


# -- codes and rooms ----------------------------------------------------------


def test_create_room_draws_an_upper_case_code(rooms):
    seat = rooms.create_room("ada")
    assert len(seat.code) == 4 and seat.code.isalpha() and seat.code.isupper()
    assert seat.name == "ada"


def test_create_room_skips_codes_in_use(make_registry, clock):
    rooms = make_registry(clock, codes=["AAAA", "AAAA", "AAAA", "BBBB"])
    assert rooms.create_room("ada").code == "AAAA"
    assert rooms.create_room("bob").code == "BBBB"


def test_create_room_gives_up_after_bounded_draws(make_registry, clock):
    rooms = make_registry(clock, codes=itertools.repeat("AAAA"), code_draws=5)
    rooms.create_room("ada")
    with pytest.raises(NoFreeCode):
        rooms.create_room("bob")


def test_create_room_code_length_is_configurable(make_registry, clock):
    rooms = make_registry(clock, code_length=6)
    assert len(rooms.create_room("ada").code) == 6


def test_join_room_codes_are_case_insensitive_and_trimmed(rooms):
    ada = rooms.create_room("ada")
    bob = rooms.join_room(f"  {ada.code.lower()} ", "bob")
    assert bob.code == ada.code


@pytest.mark.parametrize("code", ["", "AB", "ABCDE", "AB1D", "ÀBCD"])
def test_join_room_refuses_malformed_codes(rooms, code):
    with pytest.raises(InvalidCode):
        rooms.join_room(code, "bob")


def test_join_room_unknown_room(rooms):
    with pytest.raises(RoomNotFound):
        rooms.join_room("ZZZZ", "bob")


@pytest.mark.parametrize("name", ["ada", "ADA", "Ada", " ada ", "\u0430da", "ａｄａ"])
def test_join_room_name_taken_case_and_confusables(rooms, name):
    ada = rooms.create_room("ada")
    with pytest.raises(NameTaken):
        rooms.join_room(ada.code, name)


@pytest.mark.parametrize("name", ["", "x" * 33, "a\u202eb", "a\u200bb", "a\x00b"])
def test_join_room_refuses_bad_names(rooms, name):
    ada = rooms.create_room("ada")
    with pytest.raises(InvalidName):
        rooms.join_room(ada.code, name)


def test_join_room_same_session_keeps_its_seat(rooms):
    ada = rooms.create_room("ada")
    again = rooms.join_room(ada.code, "someone else", ada)
    assert again == ada  # the same seat, under the name it holds


def test_join_room_after_the_membership_ended_takes_the_new_name(rooms, clock):
    host = rooms.create_room("host")
    rooms.connect(host.code, host.member_id, "c-host")
    ada = rooms.join_room(host.code, "ada")
    clock.advance(61)  # ada never connected: the seat is gone
    bob = rooms.join_room(host.code, "bob", ada)
    assert bob.member_id == ada.member_id and bob.name == "bob"
    assert rooms.join_room(host.code, "ada").name == "ada"  # the old name is free


def test_join_room_full(make_registry, clock):
    rooms = make_registry(clock, max_members=2)
    ada = rooms.create_room("ada")
    rooms.join_room(ada.code, "bob")
    with pytest.raises(RoomFull):
        rooms.join_room(ada.code, "cy")


def race(count, attempt, refusal):
    """Run ``attempt(i)`` in ``count`` threads at once; return what went through and what not."""
    won, lost = [], []
    barrier = threading.Barrier(count)

    def run(i):
        barrier.wait()
        try:
            won.append(attempt(i))
        except refusal:
            lost.append(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return won, lost


def test_concurrent_joins_for_one_name_seat_exactly_one(make_registry, clock):
    rooms = make_registry(clock)
    code = rooms.create_room("ada").code
    won, lost = race(16, lambda i: rooms.join_room(code, "Bob" if i % 2 else "bob"), NameTaken)
    assert len(won) == 1 and len(lost) == 15


def test_concurrent_joins_for_the_last_seat_seat_exactly_one(make_registry, clock):
    rooms = make_registry(clock, max_members=5)
    code = rooms.create_room("ada").code
    for name in ["b", "c", "d"]:
        rooms.join_room(code, name)
    won, full = race(12, lambda i: rooms.join_room(code, f"late{i}"), RoomFull)
    assert len(won) == 1 and len(full) == 11


# -- presence -----------------------------------------------------------------


def test_first_connection_records_one_join_notice(rooms):
    ada = rooms.create_room("ada")
    welcome = rooms.connect(ada.code, ada.member_id, "tab1")
    assert welcome.notice is not None
    assert (welcome.notice.id, welcome.notice.kind, welcome.notice.name) == (1, "join", "ada")
    assert welcome.notice.text == ""
    assert welcome.members == ("ada",)
    assert history_ids(welcome) == [1] and welcome.latest_id == 1
    second_tab = rooms.connect(ada.code, ada.member_id, "tab2")
    assert second_tab.notice is None
    assert second_tab.members == ("ada",)


def test_members_listed_in_join_order(rooms, clock):
    ada = rooms.create_room("ada")
    bob = rooms.join_room(ada.code, "bob")
    cy = rooms.join_room(ada.code, "cy")
    rooms.connect(cy.code, cy.member_id, "c1")
    rooms.connect(ada.code, ada.member_id, "a1")
    # What a process reads when it lost the notices' own lists (chatapp.delivery.sequencer).
    # (bob is not in yet; the list is as of ada's join notice, id 2)
    assert rooms.store.present(ada.code, clock()) == Present(("cy", "ada"), 2)
    welcome = rooms.connect(bob.code, bob.member_id, "b1")
    assert welcome.members == ("cy", "ada", "bob")
    rooms.leave(cy.code, cy.member_id)
    assert rooms.store.present(ada.code, clock()) == Present(("ada", "bob"), 4)
    assert rooms.store.present("ZZZZ", clock()) == Present((), 0)


def test_connect_refuses_strangers_and_unknown_rooms(rooms):
    ada = rooms.create_room("ada")
    with pytest.raises(NotJoined):
        rooms.connect(ada.code, "nobody", "tab")
    with pytest.raises(RoomNotFound):
        rooms.connect("ZZZZ", ada.member_id, "tab")


def test_reload_within_grace_makes_no_notice(rooms):
    (ada,) = room_with(rooms, "ada")
    token = rooms.disconnect(ada.code, ada.member_id, f"{ada.member_id}-tab1")
    assert token is not None
    welcome = rooms.connect(ada.code, ada.member_id, "reloaded")
    assert welcome.notice is None
    assert rooms.end_if_gone(ada.code, ada.member_id, token) is None


def test_last_connection_gone_ends_membership_once(rooms):
    ada, bob = room_with(rooms, "ada", "bob")
    rooms.connect(bob.code, bob.member_id, "b2")
    assert rooms.disconnect(bob.code, bob.member_id, f"{bob.member_id}-tab1") is None
    token = rooms.disconnect(bob.code, bob.member_id, "b2")
    ended = rooms.end_if_gone(bob.code, bob.member_id, token)
    assert ended.notice.kind == "leave" and ended.notice.name == "bob"
    assert ended.members == ("ada",)
    assert rooms.end_if_gone(bob.code, bob.member_id, token) is None


def test_ended_membership_renews_with_a_new_notice(rooms):
    ada, bob = room_with(rooms, "ada", "bob")
    token = rooms.disconnect(bob.code, bob.member_id, f"{bob.member_id}-tab1")
    rooms.end_if_gone(bob.code, bob.member_id, token)
    assert rooms.is_member(bob.code, bob.member_id)
    welcome = rooms.connect(bob.code, bob.member_id, "back")
    assert welcome.notice.kind == "join" and welcome.name == "bob"
    assert welcome.members == ("ada", "bob")


def test_ended_membership_refused_when_its_name_was_taken(rooms):
    ada, bob = room_with(rooms, "ada", "bob")
    token = rooms.disconnect(bob.code, bob.member_id, f"{bob.member_id}-tab1")
    rooms.end_if_gone(bob.code, bob.member_id, token)
    rooms.join_room(ada.code, "BOB")
    with pytest.raises(NotJoined):
        rooms.connect(bob.code, bob.member_id, "back")


def test_never_connected_membership_ends_after_timeout_without_notice(rooms, clock):
    ada, _ = room_with(rooms, "ada", "x")
    bob = rooms.join_room(ada.code, "bob")
    with pytest.raises(NameTaken):
        rooms.join_room(ada.code, "bob")
    clock.advance(61)
    carol_as_bob = rooms.join_room(ada.code, "bob")  # the name is free again
    assert carol_as_bob.member_id != bob.member_id
    with pytest.raises(NotJoined):  # and the late one cannot take it back
        rooms.connect(bob.code, bob.member_id, "late")
    assert [m.kind for m in rooms.connect(ada.code, ada.member_id, "a2").history] == [
        "join",
        "join",
    ]


def test_leave_is_for_good(rooms):
    ada, bob = room_with(rooms, "ada", "bob")
    ended = rooms.leave(bob.code, bob.member_id)
    assert ended.notice.kind == "leave" and ended.members == ("ada",)
    assert ended.connections == (f"{bob.member_id}-tab1",)
    assert not rooms.is_member(bob.code, bob.member_id)
    with pytest.raises(NotJoined):
        rooms.connect(bob.code, bob.member_id, "replayed")
    rooms.join_room(ada.code, "bob")  # the name is free again


def test_leave_before_connecting_makes_no_notice(rooms):
    ada, _ = room_with(rooms, "ada", "x")
    bob = rooms.join_room(ada.code, "bob")
    ended = rooms.leave(bob.code, bob.member_id)
    assert ended.notice is None


def test_room_idle_ttl_deletes_empty_room(make_registry, clock):
    rooms = make_registry(clock, idle_ttl=600)
    (ada,) = room_with(rooms, "ada")
    token = rooms.disconnect(ada.code, ada.member_id, f"{ada.member_id}-tab1")
    rooms.end_if_gone(ada.code, ada.member_id, token)
    clock.advance(599)
    welcome = rooms.connect(ada.code, ada.member_id, "back")  # history intact
    assert [m.kind for m in welcome.history] == ["join", "leave", "join"]
    token = rooms.disconnect(ada.code, ada.member_id, "back")
    rooms.end_if_gone(ada.code, ada.member_id, token)
    clock.advance(600)
    with pytest.raises(RoomNotFound):
        rooms.join_room(ada.code, "bob")
    with pytest.raises(RoomNotFound):
        rooms.connect(ada.code, ada.member_id, "too-late")


def test_room_of_a_creator_who_never_connects_expires(make_registry, clock):
    # Idle from its creation: the creator's connect-by adds nothing to it.
    rooms = make_registry(clock, idle_ttl=600)
    ada = rooms.create_room("ada")
    clock.advance(599)
    assert rooms.is_member(ada.code, ada.member_id)
    clock.advance(1)
    assert not rooms.is_member(ada.code, ada.member_id)


@pytest.mark.parametrize("emptied", [False, True], ids=["new", "emptied"])
def test_never_connected_joins_do_not_keep_a_room_alive(make_registry, clock, emptied):
    rooms = make_registry(clock, idle_ttl=600)
    ada = rooms.create_room("ada")  # empty from now, if ada never connects
    if emptied:  # or ada was in a while, then went: empty from then
        rooms.connect(ada.code, ada.member_id, "a1")
        clock.advance(1000)
        rooms.end_if_gone(ada.code, ada.member_id, rooms.disconnect(ada.code, ada.member_id, "a1"))
    for minute in range(10):  # someone form-joins every minute and never connects
        rooms.join_room(ada.code, f"ghost{minute}")
        clock.advance(60)
    with pytest.raises(RoomNotFound):
        rooms.join_room(ada.code, "late")


def test_a_member_connecting_keeps_the_room_then_its_end_starts_the_idle_time(make_registry, clock):
    rooms = make_registry(clock, idle_ttl=600)
    ada = rooms.create_room("ada")
    clock.advance(590)
    bob = rooms.join_room(ada.code, "bob")
    clock.advance(9)
    rooms.connect(bob.code, bob.member_id, "b1")  # busy: no expiry
    clock.advance(1000)
    token = rooms.disconnect(bob.code, bob.member_id, "b1")
    rooms.end_if_gone(bob.code, bob.member_id, token)
    rooms.join_room(ada.code, "cy")  # pending: changes nothing
    clock.advance(599)
    assert rooms.is_member(bob.code, bob.member_id)
    clock.advance(1)
    assert not rooms.is_member(bob.code, bob.member_id)


def test_purge_frees_expired_rooms(make_registry, clock):
    rooms = make_registry(clock, idle_ttl=10)
    rooms.create_room("ada")
    if isinstance(rooms.store, RedisStore):
        pytest.skip("Redis expires an idle room's keys by itself (PEXPIREAT)")
    clock.advance(71)
    assert rooms.store.purge(clock()) == 1


# -- messages -----------------------------------------------------------------


def test_post_records_and_numbers_messages(rooms, clock):
    ada, bob = room_with(rooms, "ada", "bob")
    message_id, message = rooms.post(ada.code, ada.member_id, {"text": " hello\r\nworld "})
    assert message_id == 3
    assert message.to_dict() == {
        "id": 3,
        "kind": "chat",
        "name": "ada",
        "text": "hello\nworld",
        "ts": utc_timestamp(clock()),
    }


def test_utc_timestamp_rounds_as_datetime_does():
    # The formatter caches each second's text; the milliseconds must round
    # exactly as datetime.fromtimestamp's microseconds do, at every edge.
    rng = random.Random(5)
    edges = [0.0, 0.0005, 0.9995, 0.9999995, 0.0000005, 0.0000015, 0.5]
    for _ in range(20_000):
        now = rng.randrange(0, 4_000_000_000) + rng.choice([*edges, rng.random()])
        moment = datetime.fromtimestamp(now, tz=timezone.utc)
        expected = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
        assert utc_timestamp(now) == expected, now


def test_utc_timestamp_format():
    assert utc_timestamp(1_795_000_000.1234) == "2026-11-18T11:06:40.123Z"


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (None, "invalid"),
        ("hello", "invalid"),
        (["hello"], "invalid"),
        ({}, "invalid"),
        ({"text": 5}, "invalid"),
        ({"text": None}, "invalid"),
        ({"text": "hi", "cid": ""}, "invalid"),
        ({"text": "hi", "cid": "x" * 65}, "invalid"),
        ({"text": "hi", "cid": "bad cid"}, "invalid"),
        ({"text": "hi", "cid": 7}, "invalid"),
        ({"text": "a\x00b"}, "invalid"),
        ({"text": "a\x1bb"}, "invalid"),
        ({"text": "a\ud800b"}, "invalid"),
        ({"text": "\x1fhi"}, "invalid"),  # strip() would drop the separator
        ({"text": ""}, "empty"),
        ({"text": " \n\t\r\n "}, "empty"),
        ({"text": "x" * 2001}, "too_long"),
        ({"text": "🦊" * 2001}, "too_long"),
    ],
)
def test_post_refuses(rooms, payload, error):
    (ada,) = room_with(rooms, "ada")
    with pytest.raises(SendRefused) as info:
        rooms.post(ada.code, ada.member_id, payload)
    assert info.value.error == error
    assert rooms.connect(ada.code, ada.member_id, "t").latest_id == 1  # nothing recorded


@pytest.mark.parametrize(
    "text", ["x" * 2000, "🦊" * 2000, "  " + "x" * 2000 + "  ", "tab\there", "a\nb"]
)
def test_post_accepts_boundaries(rooms, text):
    (ada,) = room_with(rooms, "ada")
    assert rooms.post(ada.code, ada.member_id, {"text": text})[0] == 2


def test_post_ignores_smuggled_fields(rooms):
    (ada,) = room_with(rooms, "ada")
    payload = {"text": "hi", "name": "bob", "id": 99, "kind": "join", "ts": "1999"}
    _, message = rooms.post(ada.code, ada.member_id, payload)
    assert (message.id, message.kind, message.name) == (2, "chat", "ada")
    assert message.ts != "1999"


def test_post_cid_deduplicates(rooms):
    ada, bob = room_with(rooms, "ada", "bob")
    first = rooms.post(ada.code, ada.member_id, {"text": "hi", "cid": "k3j9x"})
    again = rooms.post(ada.code, ada.member_id, {"text": "hi", "cid": "k3j9x"})
    assert first[1] is not None and again == (first[0], None)
    # cids are per member: bob's k3j9x is a new line
    assert rooms.post(bob.code, bob.member_id, {"text": "hi", "cid": "k3j9x"})[1] is not None


def test_post_cid_forgotten_once_message_is_no_longer_retained(make_registry, clock):
    rooms = make_registry(clock, history_limit=3, send_burst=100)
    (ada,) = room_with(rooms, "ada")
    first_id, _ = rooms.post(ada.code, ada.member_id, {"text": "hi", "cid": "c1"})
    for i in range(2):
        rooms.post(ada.code, ada.member_id, {"text": f"more {i}"})
    assert rooms.post(ada.code, ada.member_id, {"text": "hi", "cid": "c1"}) == (first_id, None)
    rooms.post(ada.code, ada.member_id, {"text": "push it out"})
    assert rooms.post(ada.code, ada.member_id, {"text": "hi", "cid": "c1"})[1] is not None


def test_post_rate_limit_burst_then_rate(rooms, clock):
    (ada,) = room_with(rooms, "ada")
    for i in range(10):
        rooms.post(ada.code, ada.member_id, {"text": f"line {i}"})
    with pytest.raises(SendRefused) as info:
        rooms.post(ada.code, ada.member_id, {"text": "one too many"})
    assert info.value.error == "rate_limited"
    assert info.value.retry_after == pytest.approx(0.2)
    assert info.value.ack() == {"ok": False, "error": "rate_limited", "retry_after": 0.2}
    clock.advance(0.2)
    rooms.post(ada.code, ada.member_id, {"text": "allowed again"})


def test_post_rate_limit_refills_only_as_time_moves_forward(rooms, clock):
    # Another host's clock may run behind this one's (or this clock may step
    # back): such a send finds the bucket as it was, not emptied.
    (ada,) = room_with(rooms, "ada")
    for i in range(9):
        rooms.post(ada.code, ada.member_id, {"text": f"line {i}"})
    clock.advance(-30)
    rooms.post(ada.code, ada.member_id, {"text": "from a host whose clock is behind"})
    with pytest.raises(SendRefused):
        rooms.post(ada.code, ada.member_id, {"text": "one too many"})
    clock.advance(30.2)  # back where it was, plus one token's worth
    rooms.post(ada.code, ada.member_id, {"text": "allowed again"})
    with pytest.raises(SendRefused):
        rooms.post(ada.code, ada.member_id, {"text": "and no more"})


def test_post_rate_limit_is_shared_by_tabs(rooms):
    (ada,) = room_with(rooms, "ada")
    rooms.connect(ada.code, ada.member_id, "tab2")
    for i in range(10):
        rooms.post(ada.code, ada.member_id, {"text": f"line {i}"})
    with pytest.raises(SendRefused):
        rooms.post(ada.code, ada.member_id, {"text": "from the other tab"})


def test_post_requires_membership(rooms):
    ada, bob = room_with(rooms, "ada", "bob")
    rooms.leave(bob.code, bob.member_id)
    with pytest.raises(SendRefused) as info:
        rooms.post(bob.code, bob.member_id, {"text": "hi"})
    assert info.value.error == "not_joined"


def test_concurrent_posts_get_contiguous_ids(make_registry, clock):
    rooms = make_registry(clock, send_burst=10_000)
    seats = room_with(rooms, "a", "b", "c", "d")
    ids = []
    barrier = threading.Barrier(len(seats))

    def send(seat):
        barrier.wait()
        for i in range(200):
            ids.append(rooms.post(seat.code, seat.member_id, {"text": str(i)})[0])

    threads = [threading.Thread(target=send, args=(s,)) for s in seats]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(ids) == list(range(5, 5 + 800))


def test_typing_throttled_per_member(rooms, clock):
    ada, bob = room_with(rooms, "ada", "bob")
    assert rooms.typing(ada.code, ada.member_id) == "ada"
    assert rooms.typing(ada.code, ada.member_id) is None
    assert rooms.typing(bob.code, bob.member_id) == "bob"
    clock.advance(2)
    assert rooms.typing(ada.code, ada.member_id) == "ada"


# -- history ------------------------------------------------------------------


def fill(rooms, seat, count):
    for i in range(count):
        rooms.post(seat.code, seat.member_id, {"text": f"line {i}"})


@pytest.fixture
def busy(make_registry, clock):
    """A room holding ids 1..60 with history retained from id 11."""
    rooms = make_registry(clock, history_limit=50, send_burst=1000)
    (ada,) = room_with(rooms, "ada")
    fill(rooms, ada, 59)
    return rooms, ada


def test_history_on_join_is_the_last_n(busy):
    rooms, ada = busy
    welcome = rooms.connect(ada.code, ada.member_id, "t")
    assert history_ids(welcome) == list(range(11, 61))
    assert welcome.latest_id == 60 and welcome.truncated is False


def test_history_on_join_count_is_configurable(make_registry, clock):
    rooms = make_registry(clock, history_on_join=3)
    (ada,) = room_with(rooms, "ada")
    fill(rooms, ada, 5)
    assert history_ids(rooms.connect(ada.code, ada.member_id, "t")) == [4, 5, 6]


@pytest.mark.parametrize(
    ("last_id", "ids", "truncated"),
    [
        (57, [58, 59, 60], False),
        (60, [], False),
        (10, list(range(11, 61)), False),
        (9, list(range(11, 61)), True),
        (0, list(range(11, 61)), True),
        (1000, [], False),
    ],
)
def test_history_after_last_id(busy, last_id, ids, truncated):
    rooms, ada = busy
    welcome = rooms.connect(ada.code, ada.member_id, "t", last_id)
    assert history_ids(welcome) == ids
    assert welcome.truncated is truncated and welcome.latest_id == 60


@pytest.mark.parametrize("last_id", [-1, "5", 5.0, True, None, [5], {"id": 5}])
def test_history_bad_last_id_counts_as_absent(busy, last_id):
    rooms, ada = busy
    welcome = rooms.connect(ada.code, ada.member_id, "t", last_id)
    assert history_ids(welcome) == list(range(11, 61)) and welcome.truncated is False


def test_history_of_an_empty_room(rooms):
    ada = rooms.create_room("ada")
    welcome = rooms.connect(ada.code, ada.member_id, "t", 0)
    assert history_ids(welcome) == [1] and welcome.truncated is False


# -- per-address limits -------------------------------------------------------

A, B = "10.0.0.1", "10.0.0.2"


def test_creation_limit_per_address(rooms, clock):
    for _ in range(10):
        rooms.create_room("ada", A)
    with pytest.raises(TooManyAttempts) as info:
        rooms.create_room("ada", A)
    assert info.value.retry_after == pytest.approx(6)  # 10 a minute: one token in 6 s
    rooms.create_room("ada", B)
    clock.advance(6)
    rooms.create_room("ada", A)


def test_creation_limit_refills_only_as_time_moves_forward(rooms, clock):
    for _ in range(9):
        rooms.create_room("ada", A)
    clock.advance(-30)  # a host whose clock is behind
    rooms.create_room("ada", A)
    with pytest.raises(TooManyAttempts):
        rooms.create_room("ada", A)
    clock.advance(36)  # back, plus one token's worth (10 a minute)
    rooms.create_room("ada", A)


def test_join_failure_limit_per_address(rooms, clock):
    code = rooms.create_room("ada").code
    for _ in range(20):
        with pytest.raises(RoomNotFound):
            rooms.join_room("ZZZZ", "bob", address=A)
    with pytest.raises(TooManyAttempts) as info:  # even a right guess now
        rooms.join_room(code, "bob", address=A)
    assert info.value.retry_after == pytest.approx(3)
    rooms.join_room(code, "bob", address=B)
    clock.advance(3)
    rooms.join_room(code, "cy", address=A)


@pytest.mark.parametrize(
    ("code", "name", "error"),
    [
        ("AB1D", "bob", InvalidCode),
        (None, "\u202e", InvalidName),
        ("ZZZZ", "bob", RoomNotFound),
        (None, "ADA", NameTaken),
        (None, "bob", RoomFull),
    ],
)
def test_every_refused_join_counts_as_a_failure(make_registry, clock, code, name, error):
    rooms = make_registry(clock, join_failures_per_minute=2, max_members=1)
    code = code or rooms.create_room("ada").code
    for _ in range(2):
        with pytest.raises(error):
            rooms.join_room(code, name, address=A)
    with pytest.raises(TooManyAttempts):
        rooms.join_room(code, name, address=A)


def test_refused_forms_count_as_failed_joins_and_a_refusal_records_nothing(make_registry, clock):
    rooms = make_registry(clock, join_failures_per_minute=2, creates_per_minute=1)
    code = rooms.create_room("ada", B).code
    rooms.refuse_form("join", A)
    rooms.refuse_form("join", A)
    for _ in range(3):  # refused before anything is looked at, and not counted
        with pytest.raises(TooManyAttempts):
            rooms.refuse_form("join", A)
    clock.advance(30)  # one failure's worth: the refusals above spent nothing
    rooms.join_room(code, "bob", address=A)
    rooms.refuse_form("create", A)  # a form refused for its fields is no creation
    rooms.create_room("cy", A)
    with pytest.raises(TooManyAttempts):
        rooms.refuse_form("create", A)  # but the budget's answer comes first


def test_joins_per_minute(make_registry, clock):
    rooms = make_registry(clock, joins_per_minute=3)
    code = rooms.create_room("ada", A).code
    rooms.create_room("ada", A)  # creating is not joining
    for name in ("b", "c"):
        rooms.join_room(code, name, address=A)
    with pytest.raises(NameTaken):  # a failure spends no join
        rooms.join_room(code, "b", address=A)
    rooms.join_room(code, "d", address=A)
    with pytest.raises(TooManyAttempts) as info:
        rooms.join_room(code, "e", address=A)
    assert info.value.retry_after == pytest.approx(20)  # 3 a minute
    with pytest.raises(TooManyAttempts):  # a refused join took no seat either
        rooms.join_room(code, "e", address=A)
    rooms.join_room(code, "e", address=B)
    clock.advance(20)
    rooms.join_room(code, "f", address=A)


# -- rooms and memory --------------------------------------------------------------


def test_max_rooms(make_registry, clock):
    rooms = make_registry(clock, max_rooms=2, idle_ttl=600)
    first = rooms.create_room("ada", A)
    rooms.connect(first.code, first.member_id, "tab")  # busy: it never expires
    clock.advance(100)
    second = rooms.create_room("bob", B)
    with pytest.raises(ServerFull):
        rooms.create_room("cy", "10.0.0.3")
    clock.advance(599)
    with pytest.raises(ServerFull):
        rooms.create_room("cy", "10.0.0.3")
    clock.advance(1)  # the second, never connected, expired: its slot is free
    third = rooms.create_room("cy", "10.0.0.3")
    with pytest.raises(RoomNotFound):
        rooms.join_room(second.code, "dan")
    with pytest.raises(ServerFull):
        rooms.create_room("dan", "10.0.0.4")
    rooms.join_room(third.code, "dan")  # joins are not creations


def test_rooms_per_address(make_registry, clock):
    rooms = make_registry(clock, rooms_per_address=2, creates_per_minute=100)
    busy = rooms.create_room("ada", A)
    rooms.connect(busy.code, busy.member_id, "tab")
    clock.advance(100)
    rooms.create_room("ada", A)
    with pytest.raises(TooManyAttempts) as info:
        rooms.create_room("ada", A)
    assert info.value.reason == "too_many_rooms"
    assert info.value.retry_after == pytest.approx(600)  # when the idle one expires
    rooms.create_room("bob", B)  # another address has its own
    clock.advance(600)
    rooms.create_room("ada", A)  # the idle one expired; the busy one still counts
    with pytest.raises(TooManyAttempts) as info:
        rooms.create_room("ada", A)
    assert info.value.retry_after == pytest.approx(600)


def test_rooms_per_address_counts_only_rooms_the_address_created(make_registry, clock):
    # The code of A's expired room is drawn again for B: that room is B's.
    codes = ["AAAA", "AAAA", "BBBB", "CCCC"]
    rooms = make_registry(clock, codes=codes, rooms_per_address=1, idle_ttl=600)
    rooms.create_room("ada", A)
    clock.advance(600)
    reused = rooms.create_room("bob", B)
    assert reused.code == "AAAA"
    rooms.connect(reused.code, reused.member_id, "tab")
    assert rooms.create_room("ada", A).code == "BBBB"
    with pytest.raises(TooManyAttempts):
        rooms.create_room("bob", B)


def test_concurrent_creations_from_one_address_stop_at_the_limit(make_registry, clock):
    rooms = make_registry(clock, rooms_per_address=3, creates_per_minute=1000)
    # A second registry over the same store kind (a second RedisStore: another process).
    other = make_registry(clock, rooms_per_address=3, creates_per_minute=1000)
    if isinstance(rooms.store, MemoryStore):
        other = rooms  # memory is one process's: one store
    made, refused = race(
        12, lambda i: (rooms if i % 2 else other).create_room(f"p{i}", A), TooManyAttempts
    )
    assert len(made) == 3 and len(refused) == 9


def post_lines(rooms, seat, *texts):
    return [
        rooms.post(seat.code, seat.member_id, {"text": t, "cid": f"c{i}"})[0]
        for i, t in enumerate(texts)
    ]


def test_history_bytes_drop_the_oldest(make_registry, clock):
    rooms = make_registry(clock, history_bytes=100, send_burst=100)
    (ada,) = room_with(rooms, "ada")  # id 1: the join notice, no text
    ids = post_lines(rooms, ada, *["x" * 30] * 4)  # ids 2-5: 120 bytes
    welcome = rooms.connect(ada.code, ada.member_id, "t", 0)
    assert history_ids(welcome) == ids[1:]  # 1 and 2 dropped: 90 bytes left
    assert welcome.truncated is True
    assert rooms.connect(ada.code, ada.member_id, "t", 2).truncated is False
    # The dropped line's cid is forgotten: sent again, it is a new line.
    again, message = rooms.post(ada.code, ada.member_id, {"text": "x" * 30, "cid": "c0"})
    assert message is not None and again == 6
    # A retained line's cid still is known.
    assert rooms.post(ada.code, ada.member_id, {"text": "x", "cid": "c3"}) == (5, None)
    assert rooms.store.messages(ada.code, 0, 100)[0].id == 4


def test_history_bytes_count_utf8_bytes(make_registry, clock):
    rooms = make_registry(clock, history_bytes=100, send_burst=100)
    (ada,) = room_with(rooms, "ada")
    fox, accent, one = post_lines(rooms, ada, "🦊" * 20, "é" * 10, "a")  # 80 + 20 + 1
    assert [m.id for m in rooms.store.messages(ada.code, 0, 100)] == [accent, one]
    post_lines(rooms, ada, "🦊" * 25)  # exactly 100 bytes: it alone is kept
    assert [m.text for m in rooms.store.messages(ada.code, 0, 100)] == ["🦊" * 25]


def test_a_line_over_the_byte_limit_is_not_retained(make_registry, clock):
    rooms = make_registry(clock, history_bytes=10, send_burst=100)
    (ada,) = room_with(rooms, "ada")
    (short,) = post_lines(rooms, ada, "hello")
    long_id, message = rooms.post(ada.code, ada.member_id, {"text": "x" * 11, "cid": "big"})
    assert message is not None and message.text == "x" * 11  # recorded and delivered
    assert rooms.store.messages(ada.code, 0, 100) == []
    welcome = rooms.connect(ada.code, ada.member_id, "t", short)
    assert welcome.history == () and welcome.truncated is True and welcome.latest_id == long_id
    assert rooms.post(ada.code, ada.member_id, {"text": "x" * 11, "cid": "big"})[0] != long_id


# -- store operations for several processes ----------------------------------


def test_messages_and_latest_ids_for_gap_filling(make_registry, clock):
    rooms = make_registry(clock, history_limit=5, send_burst=100)
    (ada,) = room_with(rooms, "ada")
    fill(rooms, ada, 7)  # ids 1..8, retained 4..8
    store = rooms.store
    assert store.latest_ids([ada.code, "ZZZZ"]) == [8, 0]
    assert [m.id for m in store.messages(ada.code, 5, 7)] == [6, 7]
    assert [m.id for m in store.messages(ada.code, 0, 100)] == [4, 5, 6, 7, 8]
    assert store.messages(ada.code, 8, 100) == []


def test_connection_leases_expire_unless_renewed(make_registry, clock):
    rooms = make_registry(clock, connection_lease=30)
    ada, bob = room_with(rooms, "ada", "bob")
    store = rooms.store
    if isinstance(store, MemoryStore):
        assert store.expired_connections(clock() + 10_000) == []
        return
    a_conn = (ada.code, ada.member_id, f"{ada.member_id}-tab1")
    b_conn = (bob.code, bob.member_id, f"{bob.member_id}-tab1")
    assert store.expired_connections(clock() + 29) == []
    assert store.renew_leases([a_conn], clock() + 60) == []
    assert store.expired_connections(clock() + 31) == [b_conn]
    # the sweeper detaches a dead connection like any other disconnect
    token = rooms.disconnect(*b_conn)
    # A renewal racing the detach brings nothing back, and says so.
    assert store.renew_leases([a_conn, b_conn], clock() + 60) == [b_conn]
    assert b_conn not in store.expired_connections(clock() + 61)
    assert store.expired_connections(clock() + 31) == [(bob.code, bob.member_id, GONE)]
    assert rooms.end_if_gone(bob.code, bob.member_id, token).members == ("ada",)
    assert store.expired_connections(clock() + 31) == []


def test_gone_member_can_be_ended_by_any_process(make_registry, clock):
    rooms = make_registry(clock, connection_lease=30)
    ada, bob = room_with(rooms, "ada", "bob")
    store = rooms.store
    store.renew_leases([(ada.code, ada.member_id, f"{ada.member_id}-tab1")], clock() + 600)
    token = rooms.disconnect(bob.code, bob.member_id, f"{bob.member_id}-tab1")
    assert token is not None
    if isinstance(store, RedisStore):
        # The process that saw bob go died before his grace ran out: the
        # sweep of another one finds the gone entry once the grace is over.
        assert store.expired_connections(clock() + 4) == []
        assert store.expired_connections(clock() + 6) == [(bob.code, bob.member_id, GONE)]
    ended = rooms.end_if_gone(bob.code, bob.member_id, ANY_EPOCH)
    assert ended.notice.kind == "leave" and ended.members == ("ada",)
    assert store.expired_connections(clock() + 6) == []


def test_reconnecting_cancels_the_gone_entry(make_registry, clock):
    rooms = make_registry(clock, connection_lease=30)
    (ada,) = room_with(rooms, "ada")
    rooms.disconnect(ada.code, ada.member_id, f"{ada.member_id}-tab1")
    rooms.connect(ada.code, ada.member_id, "back")
    assert rooms.store.expired_connections(clock() + 6) == []
    assert rooms.end_if_gone(ada.code, ada.member_id, ANY_EPOCH) is None


def test_joins_racing_the_room_expiry_never_land_in_an_emptied_room(make_registry, clock):
    rooms = make_registry(clock, idle_ttl=10)
    (ada,) = room_with(rooms, "ada")
    token = rooms.disconnect(ada.code, ada.member_id, f"{ada.member_id}-tab1")
    rooms.end_if_gone(ada.code, ada.member_id, token)
    clock.advance(10)  # the room expires exactly now
    outcomes = []
    barrier = threading.Barrier(8)

    def join(i):
        barrier.wait()
        try:
            outcomes.append(rooms.join_room(ada.code, f"late{i}"))
        except RoomNotFound:
            outcomes.append(None)

    threads = [threading.Thread(target=join, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes == [None] * 8  # none was seated in the deleted room
    with pytest.raises(RoomNotFound):  # and none brought it back
        rooms.join_room(ada.code, "later")
