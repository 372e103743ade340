"""The gunicorn worker class: ``worker_class = "chatapp.engine.worker.ChatWorker"``.

A module of its own because it imports gunicorn, which only the production
install has (``pip install -e '.[production]'``, the Docker image).
"""

from __future__ import annotations

from typing import Any

import gevent
from geventwebsocket.gunicorn.workers import GeventWebSocketWorker

from chatapp.engine.websocket import ChatWebSocketHandler


class ChatWorker(GeventWebSocketWorker):  # type: ignore[misc]
    """gunicorn's gevent-websocket worker with the bounded handler.

    On SIGTERM it first tells every socket to go, as ``python -m chatapp``
    does, so that clients reconnect at once instead of when gunicorn drops
    them at the end of ``graceful_timeout``.
    """

    wsgi_handler = ChatWebSocketHandler

    def run(self) -> None:
        """Serve with the same runtime policy as ``python -m chatapp``."""
        # Imported here for the reason given in handle_exit.
        from chatapp.engine.runtime import prepare_process

        config = getattr(self.wsgi, "config", {})
        prepare_process(config.get("GC_FULL_INTERVAL", 0))
        super().run()

    def handle_exit(self, sig: int, frame: Any) -> None:
        """On SIGTERM (a graceful stop), close the sockets, then stop as gunicorn does."""
        # Imported here: gunicorn's master imports this module before its
        # workers patch gevent in, and chatapp.engine.serving imports Flask.
        from chatapp.engine.serving import close_sockets

        app = getattr(self, "wsgi", None)
        if hasattr(app, "extensions"):
            gevent.spawn(close_sockets, app)
        super().handle_exit(sig, frame)
