"""The real gevent server in a subprocess, driven over HTTP and WebSocket.

The /chat namespace as a browser meets it: each test starts its own
``python -m chatapp`` (production config: CSRF on, memory store) on a free
port and stops it at teardown, also on failure.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.liveserver import CHAT_NAMESPACE
from tests.support.liveserver import ChatClient
from tests.support.liveserver import LivePerson
from tests.support.liveserver import LiveServer
from tests.support.liveserver import wait_for

pytestmark = pytest.mark.server

GRACE = 2.0  # generous: a loaded CI machine must not end bob's membership
FAST = {"LEAVE_GRACE_SECONDS": GRACE}

ServerFactory = Callable[..., LiveServer]
PeopleFactory = Callable[[LiveServer], LivePerson]


@pytest.fixture
def live_server(start_server: ServerFactory) -> LiveServer:
    """A live server with ``LEAVE_GRACE_SECONDS=GRACE``."""
    return start_server(**FAST)


def ids(lines: list[dict[str, Any]]) -> list[int]:
    return [line["id"] for line in lines]


def chat_texts(lines: list[dict[str, Any]], name: str | None = None) -> list[str]:
    return [
        line["text"]
        for line in lines
        if line["kind"] == "chat" and (name is None or line["name"] == name)
    ]


def notices(lines: list[dict[str, Any]], kind: str) -> list[str]:
    return [line["name"] for line in lines if line["kind"] == kind]


def test_two_members_exchange_lines(live_server: LiveServer, live_people: PeopleFactory) -> None:
    ada, bob = live_people(live_server), live_people(live_server)
    code = ada.create_room("ada")
    bob.join(code.lower(), "bob")
    assert bob.code == code

    ada_tab = ada.socket()
    ada_tab.wait_for(lambda c: c.received("joined"))
    bob_tab = bob.socket()
    (joined,) = bob_tab.received("joined")
    assert joined["room"] == code
    assert joined["name"] == "bob"
    assert joined["members"] == ["ada", "bob"]

    # Bob's join notice and the new member list reach ada.
    ada_tab.wait_for_line(lambda m: m["kind"] == "join" and m["name"] == "bob")
    ada_tab.wait_for(lambda c: {"members": ["ada", "bob"]} in c.received("members"))

    sent: list[tuple[str, str, int]] = []
    for n in range(3):
        for who, tab in (("ada", ada_tab), ("bob", bob_tab)):
            text = f"{who} says {n}"
            ack = tab.send_line(text)
            assert ack == {"ok": True, "id": ack["id"]}, ack
            sent.append((who, text, ack["id"]))

    latest = sent[-1][2]
    assert [entry[2] for entry in sent] == list(range(3, latest + 1))
    for tab in (ada_tab, bob_tab):
        tab.wait_for(lambda c: c.last_id() >= latest)
        lines = tab.lines()
        assert ids(lines) == list(range(1, latest + 1)), ids(lines)
        assert notices(lines, "join") == ["ada", "bob"]
        assert notices(lines, "leave") == []
        assert [(line["name"], line["text"], line["id"]) for line in lines[2:]] == sent
        assert all(line["ts"].endswith("Z") for line in lines)


def test_reconnect_with_last_id_gets_exactly_what_it_missed(
    live_server: LiveServer, live_people: PeopleFactory
) -> None:
    ada, bob = live_people(live_server), live_people(live_server)
    code = ada.create_room("ada")
    bob.join(code, "bob")
    ada_tab = ada.socket()
    bob_tab = bob.socket()
    ada_tab.wait_for(lambda c: c.last_id() == 2)
    assert bob_tab.send_line("before the drop")["ok"] is True
    bob_tab.wait_for(lambda c: c.last_id() == 3)
    last_seen = bob_tab.last_id()

    away_since = time.monotonic()
    bob_tab.disconnect()
    missed = [f"while bob is away {n}" for n in range(5)]
    acks = [ada_tab.send_line(text) for text in missed]
    assert acks == [{"ok": True, "id": last_seen + 1 + n} for n in range(5)]

    bob_again = bob.socket(auth={"room": code, "last_id": last_seen})
    away_for = time.monotonic() - away_since
    if away_for >= GRACE:
        pytest.fail(f"bob was away {away_for:.2f} s, not within the {GRACE} s grace: too slow")

    (joined,) = bob_again.received("joined")
    assert joined["members"] == ["ada", "bob"]
    assert joined["latest_id"] == last_seen + 5
    assert joined["truncated"] is False
    assert ids(joined["history"]) == list(range(last_seen + 1, last_seen + 6))
    assert chat_texts(joined["history"], "ada") == missed

    reconnected_at = time.monotonic()
    ack = ada_tab.send_line("after the return")
    assert ack == {"ok": True, "id": last_seen + 6}
    bob_again.wait_for(lambda c: c.last_id() == last_seen + 6)
    lines = bob_again.lines()
    assert ids(lines) == list(range(last_seen + 1, last_seen + 7))
    assert lines[-1]["text"] == "after the return"
    assert notices(lines, "join") == [] and notices(lines, "leave") == []

    # The grace task started by the drop must not end bob's membership now
    # that bob is back: wait the grace out and look again.
    time.sleep(max(0.0, reconnected_at + GRACE + 0.3 - time.monotonic()))
    ada_lines = ada_tab.lines()
    assert ids(ada_lines) == list(range(1, last_seen + 7))
    assert notices(ada_lines, "join") == ["ada", "bob"]
    assert notices(ada_lines, "leave") == []
    assert bob_again.lines() == lines  # nothing twice, nothing new
    assert ada_tab.received("members")[-1] == {"members": ["ada", "bob"]}
    assert bob_again.connected


def test_restart_forgets_memory_store(live_server: LiveServer, live_people: PeopleFactory) -> None:
    ada, bob = live_people(live_server), live_people(live_server)
    code = ada.create_room("ada")
    bob.join(code, "bob")
    ada_tab = ada.socket()
    bob_tab = bob.socket()

    assert live_server.stop() == 0, live_server.log_tail()  # SIGTERM: a clean exit
    ada_tab.wait_for(lambda c: not c.connected and c.disconnects)
    bob_tab.wait_for(lambda c: not c.connected and c.disconnects)

    live_server.start()
    assert live_server.health() == 200
    error = bob.refused(auth={"room": code, "last_id": bob_tab.last_id()})
    assert error in ({"message": "room_not_found"}, {"message": "not_joined"}), error


def test_concurrent_senders(start_server: ServerFactory, live_people: PeopleFactory) -> None:
    senders, per_sender = 4, 25
    total = senders * per_sender
    # Lift the send and input budgets so that only concurrency is under test.
    server = start_server(
        **FAST, SEND_RATE=1000, SEND_BURST=1000, INPUT_RATE=1000, INPUT_BURST=1000
    )
    crowd = [live_people(server) for _ in range(senders)]
    names = [f"member{n}" for n in range(senders)]
    code = crowd[0].create_room(names[0])
    for person, name in zip(crowd[1:], names[1:], strict=True):
        person.join(code, name)
    tabs = [person.socket() for person in crowd]
    latest_before = senders  # the join notices
    for tab in tabs:
        tab.wait_for(lambda c: c.last_id() == latest_before)

    acks: dict[str, list[Any]] = {name: [] for name in names}
    errors: list[BaseException] = []
    start = threading.Barrier(senders)

    def blast(tab: ChatClient, name: str) -> None:
        try:
            start.wait(timeout=5)
            for n in range(per_sender):
                tab.emit(
                    "send",
                    {"text": f"{name} line {n}"},
                    namespace=CHAT_NAMESPACE,
                    callback=acks[name].append,
                )
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [
        threading.Thread(target=blast, args=(tab, name), daemon=True)
        for tab, name in zip(tabs, names, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert not errors, errors
    assert not any(thread.is_alive() for thread in threads)
    wait_for(lambda: all(len(got) == per_sender for got in acks.values()), timeout=10)

    latest = latest_before + total
    all_ack_ids = sorted(ack["id"] for got in acks.values() for ack in got)
    assert all_ack_ids == list(range(latest_before + 1, latest + 1))
    for name in names:
        assert all(ack["ok"] is True for ack in acks[name]), acks[name]

    for tab in tabs:
        tab.wait_for(lambda c: c.last_id() >= latest, timeout=10)
    reference = tabs[0].lines()
    for tab in tabs:
        lines = tab.lines()
        assert ids(lines) == list(range(1, latest + 1)), ids(lines)
        assert lines == reference  # same ids, same lines, everywhere
        assert len(chat_texts(lines)) == total
        for name in names:
            assert chat_texts(lines, name) == [f"{name} line {n}" for n in range(per_sender)]
    by_text = {line["text"]: line["id"] for line in reference if line["kind"] == "chat"}
    for name in names:
        # The acks came back in send order, with the ids the room recorded.
        assert [ack["id"] for ack in acks[name]] == [
            by_text[f"{name} line {n}"] for n in range(per_sender)
        ]


def test_foreign_origin_is_refused(live_server: LiveServer, live_people: PeopleFactory) -> None:
    ada = live_people(live_server)
    code = ada.create_room("ada")

    error = ada.refused(auth={"room": code}, origin="http://evil.example")
    assert error == {"message": "origin"}

    tab = ada.socket(auth={"room": code}, origin=live_server.url)
    (joined,) = tab.received("joined")
    assert joined["name"] == "ada"
    # The refused attempt never reached the room: one join notice, ada's first.
    assert joined["history"] == [
        {"id": 1, "kind": "join", "name": "ada", "text": "", "ts": joined["history"][0]["ts"]}
    ]
