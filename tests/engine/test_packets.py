"""Hostile Socket.IO clients: connect, ``send`` and ``typing`` of every shape.

Two layers. Flask-SocketIO's test client (fast) drives the handlers with
Hypothesis-generated JSON; a real server (``@pytest.mark.server``, one per
module) meets raw Engine.IO frames from ``rawsocket.RawSocket``: foreign
origins over WebSocket and polling, wrong namespaces, malformed packets,
binary attachments, oversized frames. Every answer checked is PROTOCOL.md's.
"""

from __future__ import annotations

import json
import time
import unicodedata

import pytest
import requests
import socketio
import websocket
from hypothesis import given
from hypothesis import HealthCheck
from hypothesis import settings
from hypothesis import strategies as st

from chatapp.sockets import CHAT_NAMESPACE
from tests.support.liveserver import LiveServer
from tests.support.liveserver import Person
from tests.support.liveserver import wait_for
from tests.support.rawsocket import CHAT
from tests.support.rawsocket import RawSocket
from tests.support.socket_events import events

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
def room(people):
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
def test_send_shape_property(room):
    code, a, b, _, _ = room
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
def test_send_length_and_character_boundaries(room, text, ack):
    code, a, b, _, _ = room
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
def test_send_lone_surrogates_never_reach_the_room(room, text):
    code, a, b, _, _ = room
    answer = a.emit("send", {"text": text}, namespace=CHAT_NAMESPACE, callback=True)
    got = events(b, "message")
    assert answer == {"ok": False, "error": "invalid"} or answer["ok"]
    for message in got:
        message["text"].encode("utf-8")  # whatever is delivered is valid UTF-8


@pytest.mark.settings(**FREE_SENDING)
def test_typing_shape_property(room, people):
    code, a, b, _, _ = room

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


# -- a real server and raw frames ------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    live = LiveServer(
        {
            "LEAVE_GRACE_SECONDS": 0.3,
            "MAX_FRAME_BYTES": 4096,
            "CREATES_PER_MINUTE": 10**6,
            "JOIN_FAILURES_PER_MINUTE": 10**6,
            "JOINS_PER_MINUTE": 10**6,
            "ROOMS_PER_ADDRESS": 10**6,
            # One server for the module, and a fresh socket for every case.
            "HANDSHAKES_PER_MINUTE": 10**6,
            **FREE_SENDING,
        },
        tmp_path_factory.mktemp("hardening-sockets"),
    )
    live.start()
    yield live
    live.stop()


@pytest.fixture
def members(server):
    """ada and bob in a new room on the live server; ``raw(person)`` opens raw sockets."""
    made, sockets = [], []

    def person():
        p = Person(server.url)
        made.append(p)
        return p

    def raw(who, origin=None, connect=True, **options):
        sock = RawSocket(server.url, cookie=who.cookie_header(), origin=origin, **options)
        sockets.append(sock)
        if connect:
            assert sock.connect({"room": who.code})[0] == "connect"
            sock.read_until(lambda: sock.received("joined"))
        return sock

    ada, bob = person(), person()
    ada.create_room("ada")
    bob.join(ada.code, "bob")
    raw(ada)  # both are members with a tab open: later tabs make no notices
    b = raw(bob)
    b.read_until(
        lambda: (
            len(b.received("members")) >= 1 or b.received("joined")[0]["members"] == ["ada", "bob"]
        )
    )
    b.read_for(0.05)
    b.events.clear()
    yield ada, bob, raw, b
    for sock in sockets:
        sock.close()
    for p in made:
        p.close()


def still_serving(server, ada, raw, text="still serving"):
    """The server answers HTTP and a fresh tab of ada can send; return the ack."""
    assert server.process.poll() is None
    assert server.health() == 200
    tab = raw(ada)
    return tab.call("send", {"text": text, "cid": f"s{time.monotonic_ns()}"})


def assert_clean_log(server, since):
    """No traceback or ERROR line in what the server logged after offset ``since``."""
    log = server.log_text()[since:]
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]


@pytest.mark.server
@pytest.mark.parametrize(
    "origin",
    [
        "http://evil.example",
        "null",
        "",
        "https://{host}",  # another scheme
        "http://{host}.evil.example",
        "http://{host}@evil.example",
        "http://localhost:{port}",  # another host name for the same server
        "http://127.0.0.1:1",  # another port
        "http://{host}, http://evil.example",
        "http://evil.example, http://{host}",
    ],
)
def test_websocket_from_a_foreign_origin_never_reaches_a_room(server, members, origin):
    ada, bob, raw, b = members
    origin = origin.format(host=server.url.split("//")[1], port=server.port)
    try:
        sock = raw(ada, origin=origin, connect=False)
    except websocket.WebSocketBadStatusException as refused:  # refused at the handshake
        assert 400 <= refused.status_code < 500
    else:
        kind, data = sock.connect({"room": ada.code})
        assert (kind, data) == ("connect_error", {"message": "origin"})
        sock.emit("send", {"text": "from evil"}, ack=True)
        assert sock.is_closed_within(0.3) or sock.acks == {}
    b.read_for(0.3)
    assert b.received("message") == []  # no join notice, no line
    assert still_serving(server, ada, raw)["ok"]


@pytest.mark.server
def test_own_origin_is_accepted(server, members):
    ada, _, raw, _ = members
    sock = raw(ada, origin=server.url)
    assert sock.received("joined")[0]["room"] == ada.code


@pytest.mark.server
def test_own_origin_given_to_a_websocket_client_that_adds_its_own(server, members):
    """python-socketio over websocket-client sends the header it is given and its own."""
    ada = members[0]
    client = socketio.Client(reconnection=False)
    joined = []
    client.on("joined", joined.append, namespace=CHAT)
    headers = {"Origin": server.url, "Cookie": ada.cookie_header()}
    client.connect(server.url, headers=headers, transports=["websocket"], namespaces=[CHAT])
    try:
        assert wait_for(lambda: joined, timeout=5)[0]["room"] == ada.code
    finally:
        client.disconnect()


@pytest.mark.server
@pytest.mark.parametrize("origin", ["http://evil.example", "null"])
def test_polling_from_a_foreign_origin(server, members, origin):
    ada, bob, raw, b = members
    http = requests.Session()
    headers = {"Origin": origin, "Cookie": ada.cookie_header()}
    base = server.url + "/socket.io/?EIO=4&transport=polling"
    preflight = http.options(
        base, headers={**headers, "Access-Control-Request-Method": "POST"}, timeout=5
    )
    assert preflight.status_code < 500
    opened = http.get(base, headers=headers, timeout=5)
    for response in (preflight, opened):
        allow = response.headers.get("Access-Control-Allow-Origin")
        assert allow in (None, server.url), allow  # never the foreign origin, never "*"
    if opened.status_code == 200:
        sid = json.loads(opened.text[1:])["sid"]
        url = f"{base}&sid={sid}"
        posted = http.post(
            url, data=f'40{CHAT},{{"room":"{ada.code}"}}', headers=headers, timeout=5
        )
        assert posted.status_code < 500
        answer = http.get(url, headers=headers, timeout=5)
        assert answer.headers.get("Access-Control-Allow-Origin") in (None, server.url)
        assert f'44{CHAT},{{"message":"origin"}}' in answer.text, answer.text
    else:
        assert 400 <= opened.status_code < 500
    http.close()
    b.read_for(0.3)
    assert b.received("message") == []


@pytest.mark.server
# ("/chat?x=1" is /chat with a query string in Socket.IO: not a wrong namespace.)
@pytest.mark.parametrize("namespace", ["/", "/admin", "/chat/", "/CHAT", "/" + "n" * 3000])
def test_wrong_namespaces(server, members, namespace):
    ada, bob, raw, b = members
    since = len(server.log_text())
    sock = raw(ada, connect=False)
    try:
        sock.send_text(f"40{namespace},")
        sock.send_text(f'42{namespace},0["send",{{"text":"wrong namespace"}}]')
        sock.read_for(0.3)
    except Exception:  # noqa: BLE001 - the server may close it
        pass
    b.read_for(0.2)
    assert b.received("message") == []
    assert still_serving(server, ada, raw)["ok"]
    assert_clean_log(server, since)


MALFORMED = [
    "",
    "4",
    "42",
    f"42{CHAT}",
    f"42{CHAT},",
    f"42{CHAT},[",
    f"42{CHAT},{{}}",
    f"42{CHAT},[]",
    f"42{CHAT},[1]",
    f"42{CHAT},[null]",
    f"42{CHAT},[{{}}]",
    f'42{CHAT},[["send"]]',
    f'42{CHAT},["send"',
    f'42{CHAT},abc["send",{{"text":"x"}}]',
    f'42{CHAT},-1["send",{{"text":"x"}}]',
    f'42{CHAT},["send",{{"text":"x"}}]garbage',
    f'42{CHAT},"send"',
    f'42{CHAT},["send",{{"text":"x"}}',
    f'42{CHAT},["send",{{"text":"\\ud800"}}]',
    f'42{CHAT},["send",' + "[" * 3000 + "]" * 3000 + "]",
    f'42{CHAT},["typing",' + '{"a":' * 500 + "1" + "}" * 500 + "]",
    "4x",
    "49",
    "9",
    "6",
    "5",
    "3",
    "2probe",
    "0",
    f"40{CHAT},[",
    f'40{CHAT},"str"',
    f"43{CHAT},1[{{}}]",
    f"43{CHAT},[]",
    f"44{CHAT},{{}}",
    f"45{CHAT},",
    f'451-{CHAT},["send",{{"_placeholder":true,"num":5}}]',
    f'45999999-{CHAT},["send",{{"text":"x"}}]',
    f"46{CHAT},",
    "\x00",
    "💥",
]


@pytest.mark.server
@pytest.mark.parametrize("frame", MALFORMED, ids=[repr(f)[:40] for f in MALFORMED])
def test_malformed_packets_record_nothing_and_harm_no_one(server, members, frame):
    ada, bob, raw, b = members
    sock = raw(ada)
    try:
        sock.send_text(frame)
        sock.read_for(0.1)
    except Exception:  # noqa: BLE001 - closing the offender is a fine answer
        pass
    b.read_for(0.1)
    assert b.received("message") == [] and b.received("members") == []
    ack = b.call("send", {"text": "bob is fine"})
    assert ack["ok"] is True
    assert still_serving(server, ada, raw)["ok"]


@pytest.mark.server
def test_malformed_packets_leave_no_traceback_in_the_log(server, members):
    ada, bob, raw, b = members
    since = len(server.log_text())
    for frame in MALFORMED:
        sock = raw(ada)
        try:
            sock.send_text(frame)
            sock.read_for(0.05)
        except Exception:  # noqa: BLE001 - closing the offender is a fine answer
            pass
        sock.close()
    assert still_serving(server, ada, raw)["ok"]
    time.sleep(0.2)
    assert_clean_log(server, since)


@pytest.mark.server
def test_binary_attachments_are_dropped(server, members):
    # The protocol has no binary data: a packet with attachments is
    # malformed input, dropped unanswered, and its attachments never kept.
    ada, bob, raw, b = members
    since = len(server.log_text())
    sock = raw(ada)
    sock.send_text(f'451-{CHAT},90["send",{{"text":{{"_placeholder":true,"num":0}}}}]')
    sock.send_binary(b"hello as bytes")
    sock.send_text(f'451-{CHAT},91["send",{{"_placeholder":true,"num":0}}]')
    sock.send_binary(b"\x00\xff")
    assert sock.call("send", {"text": "as text"})["ok"] is True
    assert 90 not in sock.acks and 91 not in sock.acks
    b.read_until(lambda: b.received("message"))
    assert [m["text"] for m in b.received("message")] == ["as text"]
    assert still_serving(server, ada, raw)["ok"]
    assert_clean_log(server, since)


@pytest.mark.server
def test_unannounced_binary_frame_leaves_no_traceback(server, members):
    ada, bob, raw, b = members
    since = len(server.log_text())
    sock = raw(ada)
    sock.send_binary(b"an attachment nobody announced")
    sock.read_for(0.2)
    b.read_for(0.1)
    assert b.received("message") == []
    assert still_serving(server, ada, raw)["ok"]
    assert_clean_log(server, since)


@pytest.mark.server
@pytest.mark.parametrize("kind", ["text", "binary", "attachment"])
def test_frames_over_max_frame_bytes_close_the_connection(server, members, kind):
    ada, bob, raw, b = members
    sock = raw(ada)
    big = "x" * 5000  # MAX_FRAME_BYTES is 4096 on this server
    if kind == "text":
        sock.send_text(f'42{CHAT},0["send",{{"text":"{big}"}}]')
    elif kind == "binary":
        sock.send_binary(big.encode())
    else:
        sock.send_text(f'451-{CHAT},0["send",{{"text":{{"_placeholder":true,"num":0}}}}]')
        sock.send_binary(big.encode())
    assert sock.is_closed_within(3)
    assert sock.acks == {}
    b.read_for(0.2)
    assert [m for m in b.received("message") if m["kind"] == "chat"] == []
    assert still_serving(server, ada, raw)["ok"]


@pytest.mark.server
def test_polling_body_over_max_frame_bytes_is_refused(server, members):
    ada, bob, raw, b = members
    http = requests.Session()
    base = server.url + "/socket.io/?EIO=4&transport=polling"
    opened = http.get(base, headers={"Cookie": ada.cookie_header()}, timeout=5)
    sid = json.loads(opened.text[1:])["sid"]
    url = f"{base}&sid={sid}"
    http.post(
        url,
        data=f'40{CHAT},{{"room":"{ada.code}"}}',
        headers={"Cookie": ada.cookie_header()},
        timeout=5,
    )
    big = f'42{CHAT},0["send",{{"text":"{"y" * 5000}"}}]'
    try:
        status = http.post(
            url, data=big, headers={"Cookie": ada.cookie_header()}, timeout=3
        ).status_code
    except requests.exceptions.ReadTimeout:
        status = None
    finally:
        http.close()
    b.read_for(0.3)
    assert [m for m in b.received("message") if m["kind"] == "chat"] == []  # nothing recorded
    assert still_serving(server, ada, raw)["ok"]
    assert status is not None and 400 <= status < 500


@pytest.mark.server
@pytest.mark.parametrize(
    "event", ["connect", "disconnect", "connect_error", "joined", "message", "members"]
)
def test_client_sent_reserved_events_are_ignored(server, members, event):
    ada, bob, raw, b = members
    sock = raw(ada)
    sock.emit(event, {"room": ada.code, "text": "x", "id": 1, "name": "bob", "kind": "leave"})
    sock.read_for(0.2)
    b.read_for(0.2)
    assert b.received("message") == [] and b.received("members") == []
    assert not sock.closed
    assert sock.call("send", {"text": "after"})["ok"] is True


@pytest.mark.server
def test_a_connection_spending_its_budget_on_invalid_input_is_closed(server, members):
    ada, bob, raw, b = members
    sock = raw(ada)
    polite = raw(bob)
    for _ in range(3):  # a few mistakes cost a member nothing
        assert polite.call("send", "not an object") == {"ok": False, "error": "invalid"}
    closed = False
    for i in range(1000):
        try:
            sock.emit("send", [i], ack=True)
        except Exception:  # noqa: BLE001 - the server closed it
            closed = True
            break
        if i % 50 == 49 and sock.is_closed_within(0.05):
            closed = True
            break
    assert closed or sock.is_closed_within(1.0)
    assert not polite.is_closed_within(0.2)
    assert b.call("send", {"text": "others unaffected"})["ok"] is True
