"""/metrics: off by default, loopback or a bearer token only, the figures Prometheus reads."""

from __future__ import annotations

import pytest

from chatapp.sockets import CHAT_NAMESPACE


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
