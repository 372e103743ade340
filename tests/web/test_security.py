"""Security headers on every HTML response; what the server's log holds (and never holds)."""

from __future__ import annotations

import base64
import json
import re
import socket
import zlib

import pytest
import requests

from chatapp import create_app
from chatapp.extensions import socketio
from chatapp.sockets import CHAT_NAMESPACE
from tests.support.liveserver import LiveServer
from tests.support.liveserver import Person
from tests.support.liveserver import wait_for
from tests.support.rawsocket import RawSocket


def assert_security_headers(response_headers, where):
    csp = response_headers.get("Content-Security-Policy", "")
    directives = {d.strip().split(" ", 1)[0]: d.strip() for d in csp.split(";") if d.strip()}
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, where
    assert directives.get("script-src") == "script-src 'self'", where
    assert directives.get("frame-ancestors") == "frame-ancestors 'none'", where
    assert directives.get("object-src") == "object-src 'none'", where
    assert "default-src" in directives and "base-uri" in directives, where
    assert response_headers.get("X-Content-Type-Options") == "nosniff", where
    assert response_headers.get("X-Frame-Options") == "DENY", where
    assert response_headers.get("Referrer-Policy") in ("same-origin", "no-referrer"), where


@pytest.fixture
def csrf_app():
    return create_app("config.TestingConfig", {"WTF_CSRF_ENABLED": True, "CREATES_PER_MINUTE": 1})


def test_security_headers_on_every_html_response(csrf_app):
    client = csrf_app.test_client()
    lobby = client.get("/")
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', lobby.text).group(1)
    created = client.post("/", data={"name": "ada", "create": "", "csrf_token": token})
    code = created.headers["Location"].rsplit("/", 1)[1]
    responses = {
        "lobby": lobby,
        "invite": client.get("/?code=%22%3E%3Cscript%3E"),
        "room": client.get(f"/room/{code}"),
        "stranger": csrf_app.test_client().get(f"/room/{code}"),
        "400 form": client.post("/", data={"name": "", "create": "", "csrf_token": token}),
        "400 csrf": client.post("/", data={"name": "ada", "create": ""}),
        "429": client.post("/", data={"name": "bob", "create": "", "csrf_token": token}),
        "404": client.get("/nowhere"),
        "405": client.put("/"),
        "413": client.post("/", data={"name": "x" * 20_000, "create": "", "csrf_token": token}),
        "qr 404": csrf_app.test_client().get(f"/room/{code}/qr.svg"),
        "created": created,
        "healthz": client.get("/healthz"),
    }
    assert responses["room"].status_code == 200 and responses["429"].status_code == 429
    assert responses["413"].status_code == 413 and responses["405"].status_code == 405
    for where, response in responses.items():
        assert response.status_code < 500, where
        assert_security_headers(response.headers, where)
        if response.mimetype == "text/html":
            assert response.headers["Content-Type"] == "text/html; charset=utf-8", where


def test_room_page_is_not_cached_by_shared_caches(csrf_app):
    client = csrf_app.test_client()
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', client.get("/").text)
    created = client.post("/", data={"name": "ada", "create": "", "csrf_token": token.group(1)})
    room = client.get(created.headers["Location"])
    assert "Cookie" in room.headers.get("Vary", "")  # never shared between sessions


# -- the log of a real server ------------------------------------------------------


def readable_cookie(value):
    payload = value.lstrip(".").split(".")[0]
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    return json.loads(zlib.decompress(raw) if value.startswith(".") else raw)


@pytest.mark.parametrize("host", [".", "a..b", "a" * 64 + ".example"])
def test_a_host_header_that_names_no_host_is_a_plain_400(csrf_app, host):
    for path in ("/", "/healthz", "/room/ABCD", "/nope"):
        response = csrf_app.test_client().get(path, headers={"Host": host})
        assert response.status_code == 400, path
        assert response.mimetype == "text/plain"
        assert b"the Host header does not name this server" in response.data
        assert_security_headers(response.headers, path)


def test_an_untrusted_host_is_refused_on_pages_and_sockets():
    app = create_app("config.TestingConfig", {"TRUSTED_HOSTS": ["chat.example"]})
    client = app.test_client()
    assert client.post("/", data={"name": "ada", "create": ""}).status_code == 400
    response = client.get("/", headers={"Host": "evil.example"})
    assert response.status_code == 400 and b"Host header" in response.data
    assert "ws://" not in response.headers["Content-Security-Policy"]
    ok = client.post("/", data={"name": "ada", "create": ""}, headers={"Host": "chat.example"})
    assert ok.status_code == 303
    refused = socketio.test_client(
        app, namespace=CHAT_NAMESPACE, flask_test_client=client, headers={"Host": "evil.example"}
    )
    assert not refused.is_connected(CHAT_NAMESPACE)
    accepted = socketio.test_client(
        app, namespace=CHAT_NAMESPACE, flask_test_client=client, headers={"Host": "chat.example"}
    )
    assert [event["name"] for event in accepted.get_received(CHAT_NAMESPACE)] == ["joined"]


@pytest.mark.server
def test_the_server_answers_a_bad_host_with_a_400(tmp_path):
    server = LiveServer({}, tmp_path)
    server.start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
            raw.sendall(b"GET /healthz HTTP/1.1\r\nHost: a..b\r\nConnection: close\r\n\r\n")
            answer = b"".join(iter(lambda: raw.recv(4096), b""))
        assert answer.startswith(b"HTTP/1.1 400")
        assert answer.endswith(b"400 Bad Request: the Host header does not name this server.\n")
        assert requests.get(f"{server.url}/healthz", timeout=5).status_code == 200
    finally:
        server.stop()


@pytest.mark.server
def test_log_holds_refusals_with_address_and_never_secrets(tmp_path):
    server = LiveServer({"LEAVE_GRACE_SECONDS": 0.2}, tmp_path)
    server.start()
    people = []
    sockets = []
    try:
        ada, bob, eve = Person(server.url), Person(server.url), Person(server.url)
        people += [ada, bob, eve]
        code = ada.create_room("ada")
        bob.join(code, "bob")
        secret = "the-launch-code-is-0000 \u202e"
        tab = RawSocket(server.url, cookie=ada.cookie_header())
        sockets.append(tab)
        assert tab.connect({"room": code})[0] == "connect"
        assert tab.call("send", {"text": secret, "cid": "secret-cid-123"})["ok"]
        assert tab.call("send", {"text": secret + "\x00"}) == {"ok": False, "error": "invalid"}
        assert tab.call("send", {"text": "x" * 2001}) == {"ok": False, "error": "too_long"}
        # Refusals: a bad name, an unknown room, a socket without a seat, a foreign origin.
        injected = "ada\n2026-01-01 00:00:00,000 ERROR forged line"
        assert eve.post_lobby("create", "\u202eevil").status_code == 400
        assert eve.post_lobby("join", "eve", "ZZZQ").status_code == 400
        assert eve.post_lobby("join", injected, code).status_code == 400
        stranger = RawSocket(server.url, cookie=eve.cookie_header())
        sockets.append(stranger)
        assert stranger.connect({"room": code}) == ("connect_error", {"message": "not_joined"})
        foreign = RawSocket(server.url, cookie=bob.cookie_header(), origin="http://evil.example")
        sockets.append(foreign)
        assert foreign.connect({"room": code}) == ("connect_error", {"message": "origin"})
        requests.post(f"{server.url}/room/{code}/leave", timeout=5)  # no CSRF token: 400
        wait_for(lambda: "connect_refused" in server.log_text() or True, timeout=1)
        log = server.log_text()
        lines = log.splitlines()

        secrets = {
            "message text": "the-launch-code",
            "cid": "secret-cid-123",
            "raw socket sid": tab.handshake["sid"],
        }
        for person in (ada, bob, eve):
            for cookie in person.http.cookies:
                secrets[f"cookie of {cookie.name}"] = cookie.value
            data = readable_cookie(person.http.cookies.get("session"))
            for _code, member_id, _name in data.get("rooms", []):
                secrets["member id"] = member_id
            if "csrf_token" in data:
                secrets["csrf token"] = data["csrf_token"]
            secrets["form token"] = person._csrf_token()
        for what, value in secrets.items():
            assert value not in log, f"{what} is in the log"
        assert not any(line.startswith("2026-01-01") for line in lines), "a forged log line"
        assert "Traceback" not in log and " ERROR " not in log, server.log_tail()

        events = []
        for line in lines:
            if " chatapp.events " in line:
                events.append(json.loads(line.split(" chatapp.events ", 1)[1]))
        refusals = [e for e in events if "refused" in e.get("event", "")]
        kinds = {(e["event"], e.get("reason")) for e in refusals}
        assert ("connect_refused", "not_joined") in kinds and ("connect_refused", "origin") in kinds
        assert any(e["event"] == "lobby_refused" for e in refusals)
        assert any(e["event"] == "send_refused" for e in refusals)
        for event in refusals:
            assert event.get("addr") == "127.0.0.1", event
    finally:
        for sock in sockets:
            sock.close()
        for person in people:
            person.close()
        server.stop()
