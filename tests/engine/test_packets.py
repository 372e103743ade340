"""Raw Engine.IO / Socket.IO packets of every shape on the real server.

chatapp.engine (packets, guard, websocket) meets what ``RawSocket`` sends
frame by frame, one server for the module: foreign origins over WebSocket
and polling, wrong namespaces, malformed packets, binary attachments,
oversized frames, reserved events, a connection spending its invalid-input
budget. Every answer checked is PROTOCOL.md's. (The shapes of ``connect``,
``send`` and ``typing`` payloads are fuzzed in tests/sockets/test_namespace.py.)
"""

from __future__ import annotations

import json
import time

import pytest
import requests
import socketio
import websocket

from tests.support.liveserver import LivePerson
from tests.support.liveserver import LiveServer
from tests.support.liveserver import wait_for
from tests.support.rawsocket import CHAT
from tests.support.rawsocket import RawSocket

FREE_SENDING = {"SEND_RATE": 10**6, "SEND_BURST": 10**6}


@pytest.fixture(scope="module")
def packets_server(tmp_path_factory):
    """One live server for the module: 4 KiB frames, the per-address and send limits lifted."""
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
        tmp_path_factory.mktemp("packets"),
    )
    live.start()
    yield live
    live.stop()


@pytest.fixture
def members(packets_server):
    """ada and bob in a new room on the live server; ``raw(person)`` opens raw sockets."""
    made, sockets = [], []

    def person():
        p = LivePerson(packets_server.url)
        made.append(p)
        return p

    def raw(who, origin=None, connect=True, **options):
        sock = RawSocket(packets_server.url, cookie=who.cookie_header(), origin=origin, **options)
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
def test_websocket_from_a_foreign_origin_never_reaches_a_room(packets_server, members, origin):
    ada, bob, raw, b = members
    origin = origin.format(host=packets_server.url.split("//")[1], port=packets_server.port)
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
    assert still_serving(packets_server, ada, raw)["ok"]


@pytest.mark.server
def test_own_origin_is_accepted(packets_server, members):
    ada, _, raw, _ = members
    sock = raw(ada, origin=packets_server.url)
    assert sock.received("joined")[0]["room"] == ada.code


@pytest.mark.server
def test_own_origin_given_to_a_websocket_client_that_adds_its_own(packets_server, members):
    """python-socketio over websocket-client sends the header it is given and its own."""
    ada = members[0]
    client = socketio.Client(reconnection=False)
    joined = []
    client.on("joined", joined.append, namespace=CHAT)
    headers = {"Origin": packets_server.url, "Cookie": ada.cookie_header()}
    client.connect(packets_server.url, headers=headers, transports=["websocket"], namespaces=[CHAT])
    try:
        assert wait_for(lambda: joined, timeout=5)[0]["room"] == ada.code
    finally:
        client.disconnect()


@pytest.mark.server
@pytest.mark.parametrize("origin", ["http://evil.example", "null"])
def test_polling_from_a_foreign_origin(packets_server, members, origin):
    ada, bob, raw, b = members
    http = requests.Session()
    headers = {"Origin": origin, "Cookie": ada.cookie_header()}
    base = packets_server.url + "/socket.io/?EIO=4&transport=polling"
    preflight = http.options(
        base, headers={**headers, "Access-Control-Request-Method": "POST"}, timeout=5
    )
    assert preflight.status_code < 500
    opened = http.get(base, headers=headers, timeout=5)
    for response in (preflight, opened):
        allow = response.headers.get("Access-Control-Allow-Origin")
        assert allow in (None, packets_server.url), allow  # never the foreign origin, never "*"
    if opened.status_code == 200:
        sid = json.loads(opened.text[1:])["sid"]
        url = f"{base}&sid={sid}"
        posted = http.post(
            url, data=f'40{CHAT},{{"room":"{ada.code}"}}', headers=headers, timeout=5
        )
        assert posted.status_code < 500
        answer = http.get(url, headers=headers, timeout=5)
        assert answer.headers.get("Access-Control-Allow-Origin") in (None, packets_server.url)
        assert f'44{CHAT},{{"message":"origin"}}' in answer.text, answer.text
    else:
        assert 400 <= opened.status_code < 500
    http.close()
    b.read_for(0.3)
    assert b.received("message") == []


@pytest.mark.server
# ("/chat?x=1" is /chat with a query string in Socket.IO: not a wrong namespace.)
@pytest.mark.parametrize("namespace", ["/", "/admin", "/chat/", "/CHAT", "/" + "n" * 3000])
def test_wrong_namespaces(packets_server, members, namespace):
    ada, bob, raw, b = members
    since = len(packets_server.log_text())
    sock = raw(ada, connect=False)
    try:
        sock.send_text(f"40{namespace},")
        sock.send_text(f'42{namespace},0["send",{{"text":"wrong namespace"}}]')
        sock.read_for(0.3)
    except Exception:  # noqa: BLE001 - the server may close it
        pass
    b.read_for(0.2)
    assert b.received("message") == []
    assert still_serving(packets_server, ada, raw)["ok"]
    assert_clean_log(packets_server, since)


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
def test_malformed_packets_record_nothing_and_harm_no_one(packets_server, members, frame):
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
    assert still_serving(packets_server, ada, raw)["ok"]


@pytest.mark.server
def test_malformed_packets_leave_no_traceback_in_the_log(packets_server, members):
    ada, bob, raw, b = members
    since = len(packets_server.log_text())
    for frame in MALFORMED:
        sock = raw(ada)
        try:
            sock.send_text(frame)
            sock.read_for(0.05)
        except Exception:  # noqa: BLE001 - closing the offender is a fine answer
            pass
        sock.close()
    assert still_serving(packets_server, ada, raw)["ok"]
    time.sleep(0.2)
    assert_clean_log(packets_server, since)


@pytest.mark.server
def test_binary_attachments_are_dropped(packets_server, members):
    # The protocol has no binary data: a packet with attachments is
    # malformed input, dropped unanswered, and its attachments never kept.
    ada, bob, raw, b = members
    since = len(packets_server.log_text())
    sock = raw(ada)
    sock.send_text(f'451-{CHAT},90["send",{{"text":{{"_placeholder":true,"num":0}}}}]')
    sock.send_binary(b"hello as bytes")
    sock.send_text(f'451-{CHAT},91["send",{{"_placeholder":true,"num":0}}]')
    sock.send_binary(b"\x00\xff")
    assert sock.call("send", {"text": "as text"})["ok"] is True
    assert 90 not in sock.acks and 91 not in sock.acks
    b.read_until(lambda: b.received("message"))
    assert [m["text"] for m in b.received("message")] == ["as text"]
    assert still_serving(packets_server, ada, raw)["ok"]
    assert_clean_log(packets_server, since)


@pytest.mark.server
def test_unannounced_binary_frame_leaves_no_traceback(packets_server, members):
    ada, bob, raw, b = members
    since = len(packets_server.log_text())
    sock = raw(ada)
    sock.send_binary(b"an attachment nobody announced")
    sock.read_for(0.2)
    b.read_for(0.1)
    assert b.received("message") == []
    assert still_serving(packets_server, ada, raw)["ok"]
    assert_clean_log(packets_server, since)


@pytest.mark.server
@pytest.mark.parametrize("kind", ["text", "binary", "attachment"])
def test_frames_over_max_frame_bytes_close_the_connection(packets_server, members, kind):
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
    assert still_serving(packets_server, ada, raw)["ok"]


@pytest.mark.server
def test_polling_body_over_max_frame_bytes_is_refused(packets_server, members):
    ada, bob, raw, b = members
    http = requests.Session()
    base = packets_server.url + "/socket.io/?EIO=4&transport=polling"
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
    assert still_serving(packets_server, ada, raw)["ok"]
    assert status is not None and 400 <= status < 500


@pytest.mark.server
@pytest.mark.parametrize(
    "event", ["connect", "disconnect", "connect_error", "joined", "message", "members"]
)
def test_client_sent_reserved_events_are_ignored(packets_server, members, event):
    ada, bob, raw, b = members
    sock = raw(ada)
    sock.emit(event, {"room": ada.code, "text": "x", "id": 1, "name": "bob", "kind": "leave"})
    sock.read_for(0.2)
    b.read_for(0.2)
    assert b.received("message") == [] and b.received("members") == []
    assert not sock.closed
    assert sock.call("send", {"text": "after"})["ok"] is True


@pytest.mark.server
def test_a_connection_spending_its_budget_on_invalid_input_is_closed(packets_server, members):
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
