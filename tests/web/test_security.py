"""Security headers on every response; a Host header that names no host, or an untrusted one."""

from __future__ import annotations

import re
import socket

import pytest
import requests

from chatapp import create_app
from chatapp.extensions import socketio
from chatapp.sockets import CHAT_NAMESPACE
from tests.support.liveserver import LiveServer


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


@pytest.mark.settings(WTF_CSRF_ENABLED=True, CREATES_PER_MINUTE=1)
def test_security_headers_on_every_html_response(app):
    client = app.test_client()
    lobby = client.get("/")
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', lobby.text).group(1)
    created = client.post("/", data={"name": "ada", "create": "", "csrf_token": token})
    code = created.headers["Location"].rsplit("/", 1)[1]
    responses = {
        "lobby": lobby,
        "invite": client.get("/?code=%22%3E%3Cscript%3E"),
        "room": client.get(f"/room/{code}"),
        "stranger": app.test_client().get(f"/room/{code}"),
        "400 form": client.post("/", data={"name": "", "create": "", "csrf_token": token}),
        "400 csrf": client.post("/", data={"name": "ada", "create": ""}),
        "429": client.post("/", data={"name": "bob", "create": "", "csrf_token": token}),
        "404": client.get("/nowhere"),
        "405": client.put("/"),
        "413": client.post("/", data={"name": "x" * 20_000, "create": "", "csrf_token": token}),
        "qr 404": app.test_client().get(f"/room/{code}/qr.svg"),
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


@pytest.mark.settings(WTF_CSRF_ENABLED=True)
def test_room_page_is_not_cached_by_shared_caches(app):
    client = app.test_client()
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', client.get("/").text)
    created = client.post("/", data={"name": "ada", "create": "", "csrf_token": token.group(1)})
    room = client.get(created.headers["Location"])
    assert "Cookie" in room.headers.get("Vary", "")  # never shared between sessions


# -- the Host header ---------------------------------------------------------------


@pytest.mark.settings(WTF_CSRF_ENABLED=True)
@pytest.mark.parametrize("host", [".", "a..b", "a" * 64 + ".example"])
def test_a_host_header_that_names_no_host_is_a_plain_400(app, host):
    for path in ("/", "/healthz", "/room/ABCD", "/nope"):
        response = app.test_client().get(path, headers={"Host": host})
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
