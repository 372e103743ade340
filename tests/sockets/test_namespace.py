"""The /chat namespace over Flask-SocketIO's test client: events, acks, presence,
and connect, ``send`` and ``typing`` payloads of every shape."""

from __future__ import annotations

import threading
import time
import unicodedata

import pytest
from hypothesis import given
from hypothesis import HealthCheck
from hypothesis import settings
from hypothesis import strategies as st

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


# -- payloads of every shape (Hypothesis, PROTOCOL.md as the oracle) ----------------------

FUZZ = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


MAX_TEXT = 2000
FREE_SENDING = {"SEND_RATE": 10**6, "SEND_BURST": 10**6}


CID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"


# Unicode White_Space (what PROTOCOL.md trims), and characters Python's
# str.strip() also removes although they are controls: either reading is fine.
WHITE_SPACE = frozenset(
    map(
        chr,
        [*range(0x09, 0x0E), 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B)]
        + [0x2028, 0x2029, 0x202F, 0x205F, 0x3000],
    )
)


PY_ONLY_SPACE = frozenset("\x1c\x1d\x1e\x1f")


EITHER = "either"


@pytest.fixture
def connected_room(people):
    """ada and bob in one room, both connected, their inboxes emptied."""
    ada, bob = people(), people()
    code = ada.create_room("ada")
    bob.join(code, "bob")
    a, b = ada.socket(room=code), bob.socket(room=code)
    a.get_received(CHAT_NAMESPACE)
    b.get_received(CHAT_NAMESPACE)
    return code, a, b, ada, bob


def expected_send(args):
    """PROTOCOL.md's ack for ``send`` with ``args``: ("ok", text), ("error", {codes}) or EITHER."""
    if len(args) != 1 or not isinstance(args[0], dict) or not isinstance(args[0].get("text"), str):
        return "error", {"invalid"}
    payload = args[0]
    cid = payload.get("cid")
    if "cid" in payload and cid is not None:
        if not (isinstance(cid, str) and 1 <= len(cid) <= 64 and set(cid) <= set(CID_CHARS)):
            return "error", {"invalid"}
    text = payload["text"].replace("\r\n", "\n").replace("\r", "\n")
    if any(c in PY_ONLY_SPACE for c in text) or any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        return EITHER
    start, end = 0, len(text)
    while start < end and text[start] in WHITE_SPACE:
        start += 1
    while end > start and text[end - 1] in WHITE_SPACE:
        end -= 1
    text = text[start:end]
    errors = set()
    if any(unicodedata.category(c) == "Cc" and c not in "\n\t" for c in text):
        errors.add("invalid")
    if not text:
        errors.add("empty")
    if len(text) > MAX_TEXT:
        errors.add("too_long")
    return ("error", errors) if errors else ("ok", text)


TRICKY = st.sampled_from(
    [
        "\x00",
        "\ud800",  # lone surrogates
        "\udfff",
        "\u202e",
        "\u2066",
        "\u200b",
        "\ufeff",
        "\r\n",
        "\r",
        "\n",
        "\t",
        "\x85",
        "\u2028",
        "\x1f",
        "\x7f",
        "\x9b",
        "😀",
        "e\u0301",
        " ",
        "\u3000",
        "<img src=x onerror=alert(1)>",
        "{{7*7}}",
        '"}],"x":["',
    ]
)


TEXTS = st.one_of(
    st.text(max_size=30),
    st.lists(st.one_of(TRICKY, st.text(max_size=4)), max_size=10).map("".join),
    st.builds(
        lambda pad, n, char: pad + char * n + pad,
        st.sampled_from(["", " ", "\n\t ", "\u3000"]),
        st.integers(MAX_TEXT - 2, MAX_TEXT + 2),
        st.sampled_from(["x", "😀", "é", "\u0301"]),
    ),
)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


CIDS = st.one_of(
    st.none(), st.text(alphabet=CID_CHARS, min_size=1, max_size=66), st.text(max_size=8), JSON
)


SMUGGLED = st.dictionaries(
    st.sampled_from(["name", "id", "kind", "ts", "room", "ok", "members", "__proto__"]),
    JSON,
    max_size=4,
)


SEND_ARGS = st.one_of(
    st.lists(JSON, max_size=3).map(tuple),
    st.builds(
        lambda text, cid, has_cid, extra: (
            {**extra, "text": text, **({"cid": cid} if has_cid else {})},
        ),
        TEXTS,
        CIDS,
        st.booleans(),
        SMUGGLED,
    ),
)


@pytest.mark.settings(**FREE_SENDING)
def test_send_shape_property(connected_room):
    code, a, b, _, _ = connected_room
    latest = {"id": 2}
    first_id_of_cid = {}

    @FUZZ
    @given(args=SEND_ARGS)
    def check(args):
        ack = a.emit("send", *args, namespace=CHAT_NAMESPACE, callback=True)
        got = events(b, "message")
        a.get_received(CHAT_NAMESPACE)
        want = expected_send(args)
        assert isinstance(ack, dict) and isinstance(ack.get("ok"), bool), ack
        if not ack["ok"]:
            assert set(ack) == {"ok", "error"}, ack
            assert want is EITHER or (want[0] == "error" and ack["error"] in want[1]), (args, ack)
            assert got == []  # nothing broadcast
            return
        assert want is EITHER or want[0] == "ok", (args, ack, want)
        cid = args[0].get("cid")
        if isinstance(cid, str) and cid in first_id_of_cid:
            assert ack == {"ok": True, "id": first_id_of_cid[cid]}
            assert got == []  # a resent line is not recorded again
            return
        assert ack == {"ok": True, "id": latest["id"] + 1}
        latest["id"] += 1
        if isinstance(cid, str):
            first_id_of_cid[cid] = ack["id"]
        (message,) = got
        # Smuggled fields never reach the record: the server sets them.
        assert set(message) == {"id", "kind", "name", "text", "ts"}
        assert message["id"] == ack["id"] and message["kind"] == "chat" and message["name"] == "ada"
        assert message["ts"].endswith("Z") and len(message["ts"]) == 24
        if want is not EITHER:
            assert message["text"] == want[1]

    check()
    assert latest["id"] >= 3  # some lines were recorded
    assert a.is_connected(CHAT_NAMESPACE) and b.is_connected(CHAT_NAMESPACE)


@pytest.mark.settings(**FREE_SENDING)
@pytest.mark.parametrize(
    ("text", "ack"),
    [
        ("x" * MAX_TEXT, "ok"),
        ("x" * (MAX_TEXT + 1), "too_long"),
        ("😀" * MAX_TEXT, "ok"),  # code points, not UTF-16 units or bytes
        ("😀" * (MAX_TEXT + 1), "too_long"),
        ("e\u0301" * (MAX_TEXT // 2), "ok"),  # no normalization of chat text
        ("e\u0301" * (MAX_TEXT // 2) + "e", "too_long"),
        ("  \n\t" + "x" * MAX_TEXT + " \u3000\n", "ok"),  # trimmed before counting
        ("x" * (MAX_TEXT - 2) + "\r\n" + "y", "ok"),  # \r\n counts as one
        ("x" * (MAX_TEXT - 1) + "\r\n" + "y", "too_long"),
        ("a\x00b", "invalid"),
        ("a\x1bb", "invalid"),
        ("a\x9bb", "invalid"),
        ("a\u202eb\u2066c", "ok"),  # bidi controls are text in a chat line
        ("line\ttab\nnext", "ok"),
        ("\u200b", "ok"),  # not white space
        (" \u3000 \n", "empty"),
    ],
)
def test_send_length_and_character_boundaries(connected_room, text, ack):
    code, a, b, _, _ = connected_room
    answer = a.emit("send", {"text": text}, namespace=CHAT_NAMESPACE, callback=True)
    got = events(b, "message")
    if ack == "ok":
        assert answer == {"ok": True, "id": 3}
        (message,) = got
        want = text.replace("\r\n", "\n").strip(" \n\t\u3000")
        assert message["text"] == want
    else:
        assert answer == {"ok": False, "error": ack}
        assert got == []


@pytest.mark.settings(**FREE_SENDING)
@pytest.mark.parametrize("text", ["\ud800", "a\udc00b", "\udbff\udfff"])
def test_send_lone_surrogates_never_reach_the_room(connected_room, text):
    code, a, b, _, _ = connected_room
    answer = a.emit("send", {"text": text}, namespace=CHAT_NAMESPACE, callback=True)
    got = events(b, "message")
    assert answer == {"ok": False, "error": "invalid"} or answer["ok"]
    for message in got:
        message["text"].encode("utf-8")  # whatever is delivered is valid UTF-8


@pytest.mark.settings(**FREE_SENDING)
def test_typing_shape_property(connected_room, people):
    code, a, b, _, _ = connected_room

    @FUZZ
    @given(args=st.lists(JSON, max_size=3))
    def check(args):
        b.emit("typing", *args, namespace=CHAT_NAMESPACE)
        for payload in events(a, "typing"):
            assert payload == {"name": "bob"}  # nothing smuggled through
        assert events(b, "typing") == [] and events(b, "message") == []

    started = time.monotonic()
    check()
    a.get_received(CHAT_NAMESPACE)
    assert b.is_connected(CHAT_NAMESPACE)
    assert time.monotonic() - started < 30
    ack = b.emit("send", {"text": "still fine"}, namespace=CHAT_NAMESPACE, callback=True)
    assert ack == {"ok": True, "id": 3}


def test_connect_auth_property(people, socketio_client, refusals):
    ada = people()
    first = ada.create_room("ada")
    code = ada.create_room("ada")  # the newest membership
    a = ada.socket(room=code)
    for i in range(3):
        a.emit("send", {"text": f"line {i}"}, namespace=CHAT_NAMESPACE, callback=True)
    latest = 4  # join notice + 3 lines

    @FUZZ
    @given(
        auth=st.one_of(
            JSON,
            st.fixed_dictionaries(
                {},
                optional={
                    "room": st.one_of(
                        JSON,
                        st.sampled_from(
                            [code, code.lower(), f" {first} ", "ZZZZ", "", code + "\x00"]
                        ),
                    ),
                    "last_id": st.one_of(JSON, st.integers(-5, 10), st.just(10**30), st.just(True)),
                },
            ),
        )
    )
    def check(auth):
        refusals.clear()
        socket = socketio_client(ada.client, auth=auth)
        try:
            room = auth.get("room") if isinstance(auth, dict) else None
            target = room.strip().upper() if isinstance(room, str) else code
            if target not in (code, first):
                assert not socket.is_connected(CHAT_NAMESPACE)
                assert refusals == [{"message": "not_joined"}]
                return
            assert socket.is_connected(CHAT_NAMESPACE), (auth, refusals)
            (joined,) = events(socket, "joined")
            assert joined["room"] == target
            ids = [m["id"] for m in joined["history"]]
            last_id = auth.get("last_id") if isinstance(auth, dict) else None
            valid = isinstance(last_id, int) and not isinstance(last_id, bool) and last_id >= 0
            room_latest = latest if target == code else 1
            if valid:
                assert ids == list(range(last_id + 1, room_latest + 1))
            else:
                assert ids == list(range(1, room_latest + 1))
        finally:
            if socket.is_connected(CHAT_NAMESPACE):
                socket.disconnect(CHAT_NAMESPACE)

    check()


@pytest.mark.parametrize("size", [10_000, 60_000])
def test_connect_with_large_auth(people, socketio_client, size):
    ada = people()
    code = ada.create_room("ada")
    socket = socketio_client(
        ada.client, auth={"room": code, "pad": "x" * size, "last_id": [0] * 100}
    )
    assert socket.is_connected(CHAT_NAMESPACE)
    assert events(socket, "joined")[0]["room"] == code
