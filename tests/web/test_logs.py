"""The event log: one JSON line per join, leave and refusal, with the client address,
and never a secret (message text, cookies, tokens, ids)."""

from __future__ import annotations

import json
import logging

import pytest
import requests

from chatapp.sockets import CHAT_NAMESPACE
from tests.support.cookies import readable
from tests.support.liveserver import LivePerson
from tests.support.liveserver import LiveServer
from tests.support.liveserver import wait_for
from tests.support.rawsocket import RawSocket

SECRET_TEXT = "the password is hunter2"


def event_lines(caplog):
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "chatapp.events"]


def test_logs_one_line_per_join_leave_and_refusal(app, room, people, caplog):
    caplog.set_level(logging.INFO, logger="chatapp.events")
    code, ada, bob = room
    a = ada.socket(room=code)
    bob.socket(room=code)
    a.emit("send", {"text": SECRET_TEXT}, namespace=CHAT_NAMESPACE, callback=True)
    a.emit("send", {"text": ""}, namespace=CHAT_NAMESPACE, callback=True)
    people().socket(room=code)  # a stranger: refused
    bob.client.post(f"/room/{code}/leave")
    ada.client.post("/", data={"name": "", "create": ""})
    lines = event_lines(caplog)
    kinds = [line["event"] for line in lines]
    assert kinds.count("join") == 2 and kinds.count("leave") == 1
    assert {"event": "send_refused", "room": code, "reason": "empty"}.items() <= lines[
        kinds.index("send_refused")
    ].items()
    refused = lines[kinds.index("connect_refused")]
    assert refused["reason"] == "not_joined" and refused["addr"] == "127.0.0.1"
    lobby = lines[kinds.index("lobby_refused")]
    assert lobby["status"] == 400 and lobby["fields"] == ["name"]
    assert all("addr" in line for line in lines if line["event"] != "leave" or "by" in line)
    everything = "\n".join(r.getMessage() for r in caplog.records)
    assert SECRET_TEXT not in everything
    session_cookie = ada.client.get_cookie("session").value
    assert session_cookie not in everything


def refusal_events(log: str) -> list[dict]:
    """The refusal events (``*_refused``) a live server's log holds, oldest first."""
    events = [
        json.loads(line.split(" chatapp.events ", 1)[1])
        for line in log.splitlines()
        if " chatapp.events " in line
    ]
    return [event for event in events if "refused" in event.get("event", "")]


@pytest.mark.server
def test_log_holds_refusals_with_address_and_never_secrets(tmp_path):
    server = LiveServer({"LEAVE_GRACE_SECONDS": 0.2}, tmp_path)
    server.start()
    people = []
    sockets = []
    try:
        ada, bob, eve = LivePerson(server.url), LivePerson(server.url), LivePerson(server.url)
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

        # The server writes its log in its own time: read it once every refusal
        # above is there, or a log read too early would hold no secret either.
        def every_refusal_logged():
            kinds = {(e["event"], e.get("reason")) for e in refusal_events(server.log_text())}
            return {
                ("connect_refused", "not_joined"),
                ("connect_refused", "origin"),
            } <= kinds and {"lobby_refused", "send_refused"} <= {kind for kind, _ in kinds}

        wait_for(every_refusal_logged, timeout=5)
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
            data = readable(person.http.cookies.get("session"))
            for _code, member_id, _name in data.get("rooms", []):
                secrets["member id"] = member_id
            if "csrf_token" in data:
                secrets["csrf token"] = data["csrf_token"]
            secrets["form token"] = person._csrf_token()
        for what, value in secrets.items():
            assert value not in log, f"{what} is in the log"
        assert not any(line.startswith("2026-01-01") for line in lines), "a forged log line"
        assert "Traceback" not in log and " ERROR " not in log, server.log_tail()

        refusals = refusal_events(log)
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
