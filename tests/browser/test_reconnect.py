"""Drops and restarts: the page says so, keeps lines typed meanwhile, and catches up exactly once.

With the in-memory store a restart forgets the room (the page says so and
keeps the unsent line); with the Redis store both pages catch up, every line
exactly once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from chatapp.rooms import utc_timestamp
from chatapp.stores import Limits
from chatapp.stores.redis import RedisStore
from tests.support.browser import chat_texts
from tests.support.browser import create_room
from tests.support.browser import join_room
from tests.support.browser import log
from tests.support.browser import pending
from tests.support.browser import send
from tests.support.browser import start_live_server
from tests.support.browser import wait_connected
from tests.support.liveserver import LiveServer
from tests.support.redisproc import RedisProcess

pytestmark = pytest.mark.browser

# What chromium logs by itself while the network or the server is away.
NETWORK_NOISE = (
    r"^WebSocket connection to '.*' failed"
    r"|^Failed to load resource: "
    r"net::ERR_(INTERNET_DISCONNECTED|CONNECTION_REFUSED|CONNECTION_RESET)"
)


@pytest.fixture
def own_server(request: pytest.FixtureRequest) -> Iterator[LiveServer]:
    """A live server for one test (it may stop and start it); settings by indirect parametrize."""
    live = start_live_server(getattr(request, "param", None))
    yield live
    live.close()


def test_network_drop_delivers_offline_lines_once_and_catches_up(
    browser_server, open_context, allow_console
):
    allow_console(NETWORK_NOISE)
    ada = open_context().new_page()
    code = create_room(ada, browser_server.url, "ada")
    bob_context = open_context()
    bob = bob_context.new_page()
    join_room(bob, browser_server.url, code, "bob")
    send(ada, "before")
    expect(log(bob).get_by_text("before")).to_be_visible()

    bob_context.set_offline(True)
    expect(bob.get_by_role("status").filter(has_text="Offline")).to_be_visible()
    send(bob, "typed while offline")
    expect(pending(bob).get_by_text("typed while offline")).to_be_visible()
    expect(pending(bob).get_by_text("waiting for the connection")).to_be_visible()
    for text in ("ada 1", "ada 2", "ada 3"):
        send(ada, text)
    expect(log(ada).get_by_text("ada 3")).to_be_visible()
    bob.wait_for_timeout(500)
    assert "ada 1" not in chat_texts(bob)

    bob_context.set_offline(False)
    wait_connected(bob)
    expect(log(ada).get_by_text("typed while offline")).to_be_visible()
    expect(log(bob).get_by_text("typed while offline")).to_be_visible()
    expect(pending(bob)).to_be_hidden()
    expected = ["before", "ada 1", "ada 2", "ada 3", "typed while offline"]
    assert chat_texts(bob) == expected
    assert chat_texts(ada) == expected
    # Nothing arrives twice later either (a resend would be a second line).
    send(ada, "after")
    expect(log(bob).get_by_text("after")).to_be_visible()
    assert chat_texts(bob) == [*expected, "after"]
    assert chat_texts(ada) == [*expected, "after"]
    # The drop was shorter than the grace period: no notices about it.
    expect(log(ada).get_by_text("bob left")).to_have_count(0)
    expect(log(ada).get_by_text("bob joined")).to_have_count(1)


def test_server_restart_shows_the_room_is_gone_and_keeps_unsent_lines(
    own_server, open_context, allow_console
):
    allow_console(NETWORK_NOISE)
    ada = open_context().new_page()
    create_room(ada, own_server.url, "ada")
    send(ada, "before the restart")
    expect(log(ada).get_by_text("before the restart")).to_be_visible()

    own_server.stop()
    expect(ada.get_by_role("status").filter(has_text="Reconnecting…")).to_be_visible()
    send(ada, "typed while the server is down")
    line = pending(ada).get_by_role("listitem").filter(has_text="typed while the server is down")
    expect(line).to_contain_text("waiting for the connection")

    own_server.start()
    # The in-memory store forgot the room: the page says so and offers the lobby.
    banner = ada.get_by_role("alert")
    expect(banner).to_contain_text("This room no longer exists.")
    expect(banner.get_by_role("link", name="Back to the lobby")).to_be_visible()
    expect(ada.get_by_role("status").filter(has_text="Disconnected")).to_be_visible()
    # The line is not lost silently: still on screen, marked as not sent.
    expect(line).to_be_visible()
    expect(line).to_contain_text("Not sent")
    expect(ada.get_by_role("textbox", name="Message")).to_be_disabled()
    assert chat_texts(ada) == ["before the restart"]


@pytest.mark.parametrize("own_server", [{"ROOM_HISTORY_LIMIT": 3}], indirect=True)
def test_truncated_history_is_marked(own_server, open_context, allow_console):
    allow_console(NETWORK_NOISE)
    ada = open_context().new_page()
    code = create_room(ada, own_server.url, "ada")
    bob_context = open_context()
    bob = bob_context.new_page()
    join_room(bob, own_server.url, code, "bob")
    send(ada, "seen")
    expect(log(bob).get_by_text("seen")).to_be_visible()

    bob_context.set_offline(True)
    expect(bob.get_by_role("status").filter(has_text="Offline")).to_be_visible()
    for n in range(1, 6):
        send(ada, f"missed {n}")
    expect(log(ada).get_by_text("missed 5")).to_be_visible()
    bob_context.set_offline(False)
    wait_connected(bob)

    marker = log(bob).get_by_text("Some earlier messages are no longer available")
    expect(marker).to_be_visible()
    expect(log(bob).get_by_text("missed 5")).to_be_visible()
    # The room kept only the last 3: they follow the marker, once each.
    assert chat_texts(bob) == ["seen", "missed 3", "missed 4", "missed 5"]


@pytest.mark.redis
def test_server_restart_on_redis_catches_up_exactly_once(tmp_path, open_context, allow_console):
    allow_console(NETWORK_NOISE)
    redis = RedisProcess(tmp_path / "redis", persistent=True)
    redis.start()
    live = start_live_server({"STORE": redis.url})
    try:
        ada = open_context().new_page()
        code = create_room(ada, live.url, "ada")
        bob = open_context().new_page()
        join_room(bob, live.url, code, "bob")
        send(ada, "before the restart")
        expect(log(bob).get_by_text("before the restart")).to_be_visible()

        live.stop()
        for page in (ada, bob):
            expect(page.get_by_role("status").filter(has_text="Reconnecting…")).to_be_visible()
        send(ada, "typed while the server is down")
        expect(pending(ada).get_by_text("typed while the server is down")).to_be_visible()

        live.start()  # the rooms are in Redis: both pages reconnect and catch up
        wait_connected(ada)
        wait_connected(bob)
        expect(log(bob).get_by_text("typed while the server is down")).to_be_visible()
        expect(pending(ada)).to_be_hidden()
        send(bob, "after the restart")
        expect(log(ada).get_by_text("after the restart")).to_be_visible()
        expected = ["before the restart", "typed while the server is down", "after the restart"]
        assert chat_texts(ada) == expected
        assert chat_texts(bob) == expected
    finally:
        live.close()
        redis.stop()


@pytest.mark.redis
def test_a_membership_another_process_ended_is_renewed_by_connecting_again(tmp_path, open_context):
    # Another process swept ada's connection as dead and ended her
    # membership (this one was away from Redis), while her page stayed
    # connected here: her next line is answered not_joined. The page
    # connects again, which renews the membership, and the line goes.
    redis = RedisProcess(tmp_path / "redis")
    redis.start()
    # Long leases: this process's own renewal does not find the swept connection first.
    live = start_live_server({"STORE": redis.url, "CONNECTION_LEASE_SECONDS": 300})
    other = RedisStore(redis.url, Limits(max_members=50, history_limit=500, idle_ttl=600))
    try:
        ada = open_context().new_page()
        code = create_room(ada, live.url, "ada")
        (entry,) = other.client.zrange("chat:leases", 0, -1)
        _, member_id, sid = entry.split("|")
        token = other.disconnect(code, member_id, sid, time.time())
        other.end_if_gone(code, member_id, token, utc_timestamp(time.time()), time.time())
        expect(log(ada).get_by_text("ada left")).to_be_visible()

        send(ada, "still here")
        expect(log(ada).locator(".msg--chat").get_by_text("still here")).to_be_visible()
        wait_connected(ada)
        expect(pending(ada)).to_be_hidden()
        expect(ada.get_by_text("You are no longer in this room.")).to_be_hidden()
        expect(log(ada).get_by_text("ada joined")).to_have_count(2)
    finally:
        other.client.close()
        live.close()
        redis.stop()
