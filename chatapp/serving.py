"""Serve the app on gevent's WSGI server with WebSocket support."""

from __future__ import annotations

import signal
import socket

import gevent
from flask import Flask
from gevent.pywsgi import WSGIServer

from chatapp.descriptors import raise_open_file_limit
from chatapp.gcpolicy import schedule_full_collections
from chatapp.logs import skip_record_details
from chatapp.websocket import ChatWebSocketHandler

LISTEN_BACKLOG = 1024
STOP_TIMEOUT_SECONDS = 5


def make_listener(host: str, port: int) -> socket.socket:
    """Return a listening TCP socket with ``TCP_NODELAY`` set.

    Accepted sockets inherit the option. Without it every small write waits
    for the peer's delayed ACK (~40 ms), which paces every chat round trip;
    ``socketio.run()`` does not set it.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    listener.bind((host, port))
    listener.listen(LISTEN_BACKLOG)
    return listener


def make_server(app: Flask, host: str, port: int) -> WSGIServer:
    """Return a gevent WSGI server for ``app`` (not yet started)."""
    return WSGIServer(
        make_listener(host, port),
        app,
        handler_class=ChatWebSocketHandler,
        log=None,  # access logs would carry room codes and Engine.IO sids
    )


def close_sockets(app: Flask, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
    """Tell every local socket to reconnect elsewhere; refuse new ones.

    Then wait up to ``timeout`` for the clients to close their WebSockets
    (they do when told to go), and close what is left.
    """
    namespace = app.extensions.get("chat_namespace")
    if namespace is not None:
        namespace.close_all()
    sessions = app.extensions.get("chat_sessions")
    if sessions is not None:
        sessions.wait_closed(timeout)


def serve(app: Flask, host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT, then stop gracefully.

    Stop accepting, tell the sockets to go (they reconnect and catch up by
    ``last_id``), let requests in flight finish, then exit. A send is
    acknowledged only once recorded, so no acknowledged line is lost.
    """
    # Each connection spawns greenlets; by default gevent records the stack
    # that spawned each one (~20 frame objects, 4 KiB a connection), which
    # only debugging tools read.
    gevent.config.track_greenlet_tree = False
    skip_record_details()
    limit = raise_open_file_limit()
    server = make_server(app, host, port)
    schedule_full_collections(app.config["GC_FULL_INTERVAL"])

    def stop() -> None:
        app.logger.info("stopping: closing sockets, then the server")
        server.close()  # stop accepting first
        close_sockets(app)
        server.stop(timeout=STOP_TIMEOUT_SECONDS)

    gevent.signal_handler(signal.SIGTERM, stop)
    gevent.signal_handler(signal.SIGINT, stop)
    app.logger.info("serving on http://%s:%d (open files: %d)", host, server.server_port, limit)
    server.serve_forever()
