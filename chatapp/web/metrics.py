"""Prometheus metrics of one process, served at /metrics when enabled.

Off by default (``METRICS_ENABLED``). When on, ``/metrics`` answers requests
that bring ``Authorization: Bearer <METRICS_TOKEN>``, or, with no token set,
requests from the loopback interface only (a scraper on the same host or a
sidecar); anyone else gets 404, as if it were not there.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Callable

from flask import abort
from flask import Flask
from flask import request
from flask import Response
from prometheus_client import CollectorRegistry
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client import Counter
from prometheus_client import Gauge
from prometheus_client import generate_latest
from prometheus_client import Histogram


class Metrics:
    """The counters, gauges and histograms chatapp keeps for Prometheus."""

    def __init__(self) -> None:
        # One registry per app, so that tests can build many apps.
        self.registry = CollectorRegistry()
        self.connections = Gauge(
            "chatapp_connections", "Open /chat connections in this process", registry=self.registry
        )
        self.rooms = Gauge(
            "chatapp_rooms", "Rooms with a connection in this process", registry=self.registry
        )
        self.members = Gauge(
            "chatapp_members",
            "Members with a connection in this process",
            registry=self.registry,
        )
        self.accepted = Counter(
            "chatapp_messages_accepted", "Chat lines recorded", registry=self.registry
        )
        self.rejected = Counter(
            "chatapp_messages_rejected",
            "Sends refused, by the ack's error code",
            ["reason"],
            registry=self.registry,
        )
        self.delivery = Histogram(
            "chatapp_delivery_seconds",
            "From receiving a send to handing the line to every local socket",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=self.registry,
        )

    def track_presence(self, counts: Callable[[], tuple[int, int, int]]) -> None:
        """Read the gauges at scrape time from ``counts()``: connections, rooms, members."""
        self.connections.set_function(lambda: counts()[0])
        self.rooms.set_function(lambda: counts()[1])
        self.members.set_function(lambda: counts()[2])


def register_metrics(app: Flask, metrics: Metrics) -> None:
    """Serve ``/metrics`` when ``METRICS_ENABLED`` is on."""
    if not app.config["METRICS_ENABLED"]:
        return
    token = app.config["METRICS_TOKEN"]

    @app.get("/metrics")
    def metrics_page() -> Response:
        if not _allowed(token):
            abort(404)
        return Response(generate_latest(metrics.registry), mimetype=CONTENT_TYPE_LATEST)


def _allowed(token: str | None) -> bool:
    if token:
        offered = request.headers.get("Authorization", "")
        return hmac.compare_digest(offered.encode(), f"Bearer {token}".encode())
    try:
        return ipaddress.ip_address(request.remote_addr or "").is_loopback
    except ValueError:
        return False
