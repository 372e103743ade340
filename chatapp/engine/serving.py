"""Serve the app on gevent's WSGI server with WebSocket support."""

from __future__ import annotations

import signal
import socket

import gevent
from flask import Flask
from gevent.pywsgi import WSGIServer

from chatapp.engine.runtime import prepare_process
from chatapp.engine.websocket import ChatWebSocketHandler

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
    """Run the app's graceful stop: its sockets are told to go, for up to ``timeout``.

    The app factory registers it (``app.extensions["graceful_stop"]``): the
    engine knows nothing of what the sockets are connected to.
    """
    stop = app.extensions.get("graceful_stop")
    if stop is not None:
        stop(timeout)


def serve(app: Flask, host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT, then stop gracefully.

    Stop accepting, tell the sockets to go (they reconnect and catch up by
    ``last_id``), let requests in flight finish, then exit. A send is
    acknowledged only once recorded, so no acknowledged line is lost.
    """
    limit = prepare_process(app.config["GC_FULL_INTERVAL"])
    server = make_server(app, host, port)

    def stop() -> None:
        app.logger.info("stopping: closing sockets, then the server")
        server.close()  # stop accepting first
        close_sockets(app)
        server.stop(timeout=STOP_TIMEOUT_SECONDS)

    gevent.signal_handler(signal.SIGTERM, stop)
    gevent.signal_handler(signal.SIGINT, stop)
    app.logger.info("serving on http://%s:%d (open files: %d)", host, server.server_port, limit)
    server.serve_forever()
