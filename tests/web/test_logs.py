"""Operations: structured logs, Prometheus metrics, graceful shutdown."""

from __future__ import annotations

import json
import logging
import signal
import time

import pytest

from chatapp.sockets import CHAT_NAMESPACE
from tests.support.liveserver import LiveServer
from tests.support.liveserver import Person
from tests.support.liveserver import wait_for

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


@pytest.mark.settings(METRICS_ENABLED=False)
def test_metrics_off_by_default(client):
    assert client.get("/metrics").status_code == 404


@pytest.mark.settings(METRICS_ENABLED=True)
def test_metrics_loopback_only_without_token(app, room):
    code, ada, bob = room
    a = ada.socket(room=code)
    bob.socket(room=code)
    a.emit("send", {"text": "hi"}, namespace=CHAT_NAMESPACE, callback=True)
    a.emit("send", {"text": ""}, namespace=CHAT_NAMESPACE, callback=True)
    local = app.test_client().get("/metrics")
    assert local.status_code == 200
    body = local.data.decode()
    assert "chatapp_connections 2.0" in body
    assert "chatapp_rooms 1.0" in body and "chatapp_members 2.0" in body
    assert "chatapp_messages_accepted_total 1.0" in body
    assert 'chatapp_messages_rejected_total{reason="empty"} 1.0' in body
    assert "chatapp_delivery_seconds_count 1.0" in body
    remote = app.test_client().get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert remote.status_code == 404


@pytest.mark.settings(METRICS_ENABLED=True, METRICS_TOKEN="s3cret")
def test_metrics_with_token(app):
    client = app.test_client()
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 404
    ok = client.get("/metrics", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200 and b"chatapp_connections" in ok.data


@pytest.mark.server
def test_sigterm_closes_sockets_then_exits(tmp_path):
    server = LiveServer({}, tmp_path).start()
    try:
        ada = Person(server.url)
        ada.create_room("ada")
        client = ada.socket()
        assert client.send_line("acknowledged before the stop")["ok"]
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        wait_for(lambda: client.disconnects, timeout=5)
        assert time.monotonic() - started < 3
        assert server.process.wait(timeout=10) == 0
        ada.close()
    finally:
        server.close()
