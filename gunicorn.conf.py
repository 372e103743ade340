"""gunicorn settings for chatapp: ``gunicorn -c gunicorn.conf.py wsgi:app``.

One gevent-websocket worker: Socket.IO sessions live in one process, and the
worker patches gevent in before it loads ``wsgi:app`` (so never ``--preload``).
The address comes from ``CHATAPP_HOST`` (default 127.0.0.1; the Docker image
sets 0.0.0.0) and ``CHATAPP_PORT``, else ``PORT``, else 5000.
"""

import os

host = os.environ.get("CHATAPP_HOST") or "127.0.0.1"
port = os.environ.get("CHATAPP_PORT") or os.environ.get("PORT") or "5000"
bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]

# WebSocket upgrades need gevent-websocket's handler (plain ``gevent`` fails
# every upgrade while gevent-websocket is installed); chatapp's subclass of
# its worker bounds frames to MAX_FRAME_BYTES before reading them.
worker_class = "chatapp.engine.worker.ChatWorker"
workers = 1
# Requests in flight at once (each has a greenlet). A WebSocket session lets
# go of its request once the handshake is done (chatapp.engine.transport), but a
# long-polling one keeps one open; the default 1000 would stall those.
worker_connections = 10000
backlog = 1024

# The worker must check in with the arbiter within ``timeout`` seconds (gevent
# workers do so from their own greenlet, so long-lived sockets are fine).
timeout = 30
# On SIGTERM: stop accepting, give open requests (and sockets) this long, then
# close them; well inside the 10 s that ``docker stop`` waits before SIGKILL.
graceful_timeout = 5
keepalive = 5

# gunicorn >= 25.1 opens a control socket under $HOME by default; the image's
# user has no use for it (older versions ignore this setting).
control_socket_disable = True

# The path without its query string (Engine.IO sids), no cookies, no referrer.
# Note: the worker's handler writes no access log at all (URLs carry room codes
# and Engine.IO sids); the format guards any other worker class.
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms'
accesslog = None
errorlog = "-"
loglevel = "info"
