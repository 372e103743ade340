"""WSGI entry point for gunicorn with a gevent WebSocket worker.

gunicorn -k geventwebsocket.gunicorn.workers.GeventWebSocketWorker -w 1 wsgi:app
"""

from gevent import monkey

monkey.patch_all()

from chatapp import create_app

app = create_app()
