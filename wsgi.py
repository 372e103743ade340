"""WSGI entry point for gunicorn with chatapp's gevent WebSocket worker.

gunicorn -c gunicorn.conf.py wsgi:app

(gunicorn.conf.py picks chatapp.engine.worker.ChatWorker: gevent-websocket's own
worker would drop the frame size limit and the close on SIGTERM.)
"""

from gevent import monkey

monkey.patch_all()

from chatapp import create_app

app = create_app()
