"""The /chat namespace over Flask-SocketIO's test client: events, acks, presence."""

from __future__ import annotations

import threading
import time

import pytest

from chatapp.presence import ENDINGS_AT_ONCE
from chatapp.rooms import StoreUnavailable
from chatapp.sockets import CHAT_NAMESPACE
from tests.support.socket_events import events
from tests.support.socket_events import received


def wait_until(predicate, timeout=3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def chat_lines(payloads):
    return [(m["name"], m["text"]) for m in payloads if m["kind"] == "chat"]


# -- connecting ---------------------------------------------------------------


def test_connect_sends_joined(room):
    code, ada, _ = room
    socket = ada.socket(room=code)
    assert socket.is_connected(CHAT_NAMESPACE)
    (joined,) = events(socket, "joined")
    assert joined["room"] == code and joined["name"] == "ada"
    assert joined["members"] == ["ada"]
    assert joined["latest_id"] == 1 and joined["truncated"] is False
    (notice,) = joined["history"]
    assert notice["id"] == 1 and notice["kind"] == "join" and notice["name"] == "ada"
    assert notice["text"] == "" and notice["ts"].endswith("Z") and len(notice["ts"]) == 24


def test_connect_without_room_uses_the_newest_membership(app, people):
    ada = people()
    first = ada.create_room("ada")
    second = ada.create_room("ada")
    assert first != second
    assert events(ada.socket(), "joined")[0]["room"] == second
    assert events(ada.socket(room=first.lower()), "joined")[0]["room"] == first


def test_connect_refused_without_session(socketio_client, refusals):
    socket = socketio_client()
    assert not socket.is_connected(CHAT_NAMESPACE)
    assert refusals == [{"message": "not_joined"}]


def test_connect_refused_for_a_room_not_joined(room, people, refusals):
    code, ada, _ = room
    other = people()
    other.create_room("cy")
    assert not other.socket(room=code).is_connected(CHAT_NAMESPACE)
    assert refusals == [{"message": "not_joined"}]


@pytest.mark.settings(ROOM_IDLE_TTL=0.5)  # a new room is idle, too, until ada connects
def test_connect_refused_when_room_is_gone(people, refusals):
    ada = people()
    code = ada.create_room("ada")
    socket = ada.socket(room=code)
    socket.disconnect(CHAT_NAMESPACE)
    time.sleep(0.8)  # the grace (0.2 s) passes, the room empties and expires 0.5 s later
    assert not ada.socket(room=code).is_connected(CHAT_NAMESPACE)
    assert refusals == [{"message": "room_not_found"}]


@pytest.mark.parametrize(
    "origin",
    ["http://evil.example", "null", "http://localhost.evil", "http://localhost,", ","],
)
def test_connect_refused_for_foreign_origin(room, socketio_client, refusals, origin):
    code, ada, _ = room
    socket = socketio_client(ada.client, auth={"room": code}, headers={"Origin": origin})
    assert not socket.is_connected(CHAT_NAMESPACE)
    assert refusals == [{"message": "origin"}]


# Sent twice, as websocket-client does when it is given one, it arrives joined.
@pytest.mark.parametrize("origin", ["http://localhost", "http://localhost, http://localhost/"])
def test_connect_accepts_own_origin(room, socketio_client, origin):
    code, ada, _ = room
    socket = socketio_client(ada.client, auth={"room": code}, headers={"Origin": origin})
    assert socket.is_connected(CHAT_NAMESPACE)


@pytest.mark.settings(ALLOWED_ORIGINS="https://chat.example, https://other.example")
def test_connect_allowed_origins_from_setting(room, socketio_client, refusals):
    code, ada, _ = room
    allowed = socketio_client(
        ada.client, auth={"room": code}, headers={"Origin": "https://other.example"}
    )
    assert allowed.is_connected(CHAT_NAMESPACE)
    refused = socketio_client(
        ada.client, auth={"room": code}, headers={"Origin": "http://localhost"}
    )
    assert not refused.is_connected(CHAT_NAMESPACE)


@pytest.mark.parametrize("auth", ["ABCD", 5, [1], {"room": 5}, {"room": None, "last_id": "x"}])
def test_connect_tolerates_odd_auth(room, socketio_client, auth):
    code, ada, _ = room
    socket = socketio_client(ada.client, auth=auth)
    assert socket.is_connected(CHAT_NAMESPACE)
    assert events(socket, "joined")[0]["room"] == code


def test_a_store_failure_after_the_connect_leaves_nobody_present(app, room, refusals, monkeypatch):
    code, ada, bob = room
    a = ada.socket(room=code)
    a.get_received(CHAT_NAMESPACE)
    presence = app.extensions["chat_presence"]
    admit = presence.broadcaster.admit

    def fails_once(*args):  # as the store does when it times out right then
        monkeypatch.setattr(presence.broadcaster, "admit", admit)
        raise StoreUnavailable("timed out")

    monkeypatch.setattr(presence.broadcaster, "admit", fails_once)
    assert not bob.socket(room=code).is_connected(CHAT_NAMESPACE)
    assert refusals == [{"message": "unavailable"}]
    assert len(presence.local_connections()) == 1  # ada's socket only
    got = []
    # bob's notice went out; with no socket left, the grace ends his membership.
    assert wait_until(lambda: got.extend(received(a)) or ("members", {"members": ["ada"]}) in got)
    assert [m["kind"] for e, m in got if e == "message"] == ["join", "leave"]


def test_join_notice_and_members_reach_the_room(room):
    code, ada, bob = room
    a = ada.socket(room=code)
    a.get_received(CHAT_NAMESPACE)
    bob.socket(room=code)
    got = received(a)
    assert got[0][0] == "message" and got[0][1]["kind"] == "join" and got[0][1]["name"] == "bob"
    assert got[1] == ("members", {"members": ["ada", "bob"]})


def test_second_tab_is_the_same_member(room):
    code, ada, bob = room
    a = ada.socket(room=code)
    bob.socket(room=code)
    a.get_received(CHAT_NAMESPACE)
    second = bob.socket(room=code)
    assert events(second, "joined")[0]["members"] == ["ada", "bob"]
    assert received(a) == []  # no notice, no members change


# -- sending ------------------------------------------------------------------


def test_send_reaches_everyone_and_is_acknowledged(room):
    code, ada, bob = room
    a, b = ada.socket(room=code), bob.socket(room=code)
    a.get_received(CHAT_NAMESPACE)
    b.get_received(CHAT_NAMESPACE)
    ack = a.emit("send", {"text": "hello", "cid": "k3j9x"}, namespace=CHAT_NAMESPACE, callback=True)
    assert ack == {"ok": True, "id": 3}
    for socket in (a, b):
        (message,) = events(socket, "message")
        assert message["id"] == 3 and message["kind"] == "chat"
        assert message["name"] == "ada" and message["text"] == "hello"


def test_send_duplicate_cid_is_acknowledged_not_repeated(room):
    code, ada, bob = room
    a, b = ada.socket(room=code), bob.socket(room=code)
    first = a.emit("send", {"text": "hi", "cid": "c1"}, namespace=CHAT_NAMESPACE, callback=True)
    b.get_received(CHAT_NAMESPACE)
    again = a.emit("send", {"text": "hi", "cid": "c1"}, namespace=CHAT_NAMESPACE, callback=True)
    assert again == first == {"ok": True, "id": 3}
    assert events(b, "message") == []


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((), "invalid"),
        (("hello",), "invalid"),
        (({"text": "a", "cid": "no spaces"},), "invalid"),
        (({"text": "a"}, {"text": "b"}), "invalid"),
        (({"text": "  "},), "empty"),
        (({"text": "x" * 2001},), "too_long"),
    ],
)
def test_send_refusals_record_and_broadcast_nothing(room, args, error):
    code, ada, bob = room
    a, b = ada.socket(room=code), bob.socket(room=code)
    b.get_received(CHAT_NAMESPACE)
    ack = a.emit("send", *args, namespace=CHAT_NAMESPACE, callback=True)
    assert ack == {"ok": False, "error": error}
    assert events(b, "message") == []
    assert events(bob.socket(room=code), "joined")[0]["latest_id"] == 2


@pytest.mark.settings(SEND_RATE=1, SEND_BURST=3)
def test_send_rate_limited_with_retry_after(room):
    code, ada, _ = room
    a = ada.socket(room=code)
    acks = [
        a.emit("send", {"text": f"{i}"}, namespace=CHAT_NAMESPACE, callback=True) for i in range(4)
    ]
    assert [ack["ok"] for ack in acks] == [True, True, True, False]
    assert acks[3]["error"] == "rate_limited" and 0 < acks[3]["retry_after"] <= 1


def test_send_after_leaving_is_not_joined(room):
    code, ada, bob = room
    b = bob.socket(room=code)
    bob.client.post(f"/room/{code}/leave")
    assert not b.is_connected(CHAT_NAMESPACE)


def test_typing_reaches_others_not_the_typist(room):
    code, ada, bob = room
    a, b = ada.socket(room=code), bob.socket(room=code)
    b2 = bob.socket(room=code)
    for s in (a, b, b2):
        s.get_received(CHAT_NAMESPACE)
    b.emit("typing", {}, namespace=CHAT_NAMESPACE)
    assert events(a, "typing") == [{"name": "bob"}]
    assert events(b, "typing") == [] and events(b2, "typing") == []


def test_typing_throttled_to_once_per_interval(room):
    code, ada, bob = room
    a, b = ada.socket(room=code), bob.socket(room=code)
    a.get_received(CHAT_NAMESPACE)
    for _ in range(5):
        b.emit("typing", {}, namespace=CHAT_NAMESPACE)
    assert events(a, "typing") == [{"name": "bob"}]


@pytest.mark.parametrize("event", ["connect", "disconnect", "joined", "message", "hack", "members"])
def test_reserved_and_unknown_events_are_ignored(room, event):
    code, ada, bob = room
    a, b = ada.socket(room=code), bob.socket(room=code)
    a.get_received(CHAT_NAMESPACE)
    b.get_received(CHAT_NAMESPACE)
    b.emit(event, {"room": code, "text": "x"}, namespace=CHAT_NAMESPACE)
    assert b.is_connected(CHAT_NAMESPACE)
    assert received(a) == [] and received(b) == []
    ack = b.emit("send", {"text": "still here"}, namespace=CHAT_NAMESPACE, callback=True)
    assert ack == {"ok": True, "id": 3}


# -- presence -----------------------------------------------------------------


def test_leave_button_disconnects_and_announces(room):
    code, ada, bob = room
    a, b = ada.socket(room=code), bob.socket(room=code)
    bob.socket(room=code)
    a.get_received(CHAT_NAMESPACE)
    response = bob.client.post(f"/room/{code}/leave")
    assert response.status_code == 303
    got = received(a)
    assert got[0][1]["kind"] == "leave" and got[0][1]["name"] == "bob"
    assert got[1] == ("members", {"members": ["ada"]})
    assert not b.is_connected(CHAT_NAMESPACE)


def test_leave_is_for_good_even_with_an_old_cookie(app, room, socketio_client, refusals):
    code, ada, bob = room
    bob.socket(room=code)
    old_cookie = bob.client.get_cookie("session").value
    bob.client.post(f"/room/{code}/leave")
    replay = app.test_client()
    replay.set_cookie("session", old_cookie)
    assert not socketio_client(replay, auth={"room": code}).is_connected(CHAT_NAMESPACE)
    assert refusals == [{"message": "not_joined"}]
    assert replay.get(f"/room/{code}").status_code == 303


def test_joining_again_after_the_membership_ended_takes_the_new_name(room, people):
    code, ada, bob = room
    a, b = ada.socket(room=code), bob.socket(room=code)
    b.disconnect(CHAT_NAMESPACE)
    a.get_received(CHAT_NAMESPACE)
    assert wait_until(lambda: ("members", {"members": ["ada"]}) in received(a))
    bob.join(code, "bobby")
    page = bob.client.get(f"/room/{code}").data.decode()
    assert 'data-name="bobby"' in page
    assert events(bob.socket(room=code), "joined")[0]["members"] == ["ada", "bobby"]
    people().join(code, "bob")  # the old name is free


def test_reload_makes_no_notice(room):
    code, ada, bob = room
    a, b = ada.socket(room=code), bob.socket(room=code)
    a.get_received(CHAT_NAMESPACE)
    b.disconnect(CHAT_NAMESPACE)
    reloaded = bob.socket(room=code)
    time.sleep(0.4)  # longer than the grace
    assert received(a) == []
    assert events(reloaded, "joined")[0]["members"] == ["ada", "bob"]


def test_grace_then_leave_notice_once_and_renewal(room):
    code, ada, bob = room
    a, b = ada.socket(room=code), bob.socket(room=code)
    a.get_received(CHAT_NAMESPACE)
    b.disconnect(CHAT_NAMESPACE)
    time.sleep(0.05)
    assert received(a) == []  # within the grace: nothing yet
    got = []
    assert wait_until(lambda: got.extend(received(a)) or len(got) >= 2)
    assert got[0][1]["kind"] == "leave" and got[0][1]["name"] == "bob"
    assert got[1] == ("members", {"members": ["ada"]})
    back = bob.socket(room=code)  # the session may come back under its name
    assert events(back, "joined")[0]["members"] == ["ada", "bob"]
    got = received(a)
    assert got[0][1]["kind"] == "join" and got[1] == ("members", {"members": ["ada", "bob"]})


@pytest.mark.settings(CREATES_PER_MINUTE=100)
def test_a_mass_departure_ends_memberships_a_few_at_a_time(app, people, registry, monkeypatch):
    # Twelve rooms, each with one member who stays and one who goes. The
    # twelve graces run out together, as when a process dies or a network
    # cut drops everyone at once; ending them all at the same time held up
    # every live line behind their store calls and notices.
    pairs = []
    for n in range(12):
        stays, goes = people(), people()
        code = stays.create_room(f"stays{n}")
        goes.join(code, f"goes{n}")
        pairs.append((code, stays.socket(room=code), goes.socket(room=code)))
    running, most = 0, 0
    lock = threading.Lock()
    end_if_gone = registry.end_if_gone

    def counted(*args):
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        try:
            time.sleep(0.05)  # a store call's round trip, long enough to overlap
            return end_if_gone(*args)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(registry, "end_if_gone", counted)
    for _, stays, goes in pairs:
        stays.get_received(CHAT_NAMESPACE)
        goes.disconnect(CHAT_NAMESPACE)
    seen = {code: [] for code, _, _ in pairs}

    def all_told():
        for code, stays, _ in pairs:
            seen[code].extend(received(stays))
        return all(len(got) >= 2 for got in seen.values())

    assert wait_until(all_told, timeout=5)
    for n, (code, _, _) in enumerate(pairs):
        notice, members = seen[code][:2]
        assert notice[1]["kind"] == "leave" and notice[1]["name"] == f"goes{n}"
        assert members == ("members", {"members": [f"stays{n}"]})
    assert 1 <= most <= ENDINGS_AT_ONCE


def test_history_replay_with_last_id(room):
    code, ada, bob = room
    a, b = ada.socket(room=code), bob.socket(room=code)
    last_seen = events(b, "joined")[0]["latest_id"]
    b.disconnect(CHAT_NAMESPACE)
    ids = [
        a.emit("send", {"text": f"line {i}"}, namespace=CHAT_NAMESPACE, callback=True)["id"]
        for i in range(3)
    ]
    back = bob.socket(room=code, last_id=last_seen)
    (joined,) = events(back, "joined")
    assert [m["id"] for m in joined["history"]] == ids
    assert joined["latest_id"] == ids[-1] and joined["truncated"] is False


@pytest.mark.settings(ROOM_HISTORY_LIMIT=3, HISTORY_ON_JOIN=2)
def test_history_truncated_when_last_id_is_too_old(room):
    code, ada, bob = room
    a = ada.socket(room=code)
    for i in range(4):
        a.emit("send", {"text": f"line {i}"}, namespace=CHAT_NAMESPACE, callback=True)
    (joined,) = events(bob.socket(room=code, last_id=1), "joined")
    assert [m["id"] for m in joined["history"]] == [4, 5, 6] and joined["truncated"] is True
    (fresh,) = events(bob.socket(room=code), "joined")
    assert [m["id"] for m in fresh["history"]] == [5, 6] and fresh["truncated"] is False


def test_ids_stay_in_order_across_history_and_live_messages(room):
    code, ada, bob = room
    a = ada.socket(room=code)
    for i in range(3):
        a.emit("send", {"text": f"before {i}"}, namespace=CHAT_NAMESPACE, callback=True)
    b = bob.socket(room=code)
    for i in range(3):
        a.emit("send", {"text": f"after {i}"}, namespace=CHAT_NAMESPACE, callback=True)
    got = received(b)
    ids = [m["id"] for m in got[0][1]["history"]]
    ids += [payload["id"] for name, payload in got[1:] if name == "message"]
    assert ids == list(range(1, ids[-1] + 1))
