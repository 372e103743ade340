"""Configuration classes for chatapp's app factory.

Plain class attributes, no environment reads: ``create_app`` layers the
instance folder's ``config.py`` and ``CHATAPP_*`` variables on top. The
protocol's settings keep PROTOCOL.md's names and defaults.
"""

from datetime import timedelta


class Config:
    """Safe defaults for every environment."""

    SECRET_KEY = None  # from CHATAPP_SECRET_KEY, instance/config.py, or generated once
    SOCKETIO_ASYNC_MODE = "gevent"

    # Where rooms live: "memory" or "redis://host:port/db".
    STORE = "memory"

    # PROTOCOL.md settings.
    ROOM_CODE_LENGTH = 4
    NAME_MAX_LENGTH = 32
    MESSAGE_MAX_LENGTH = 2000
    HISTORY_ON_JOIN = 50
    ROOM_HISTORY_LIMIT = 500
    ROOM_MAX_MEMBERS = 200
    ROOM_IDLE_TTL = 600
    LEAVE_GRACE_SECONDS = 5
    SEND_RATE = 5
    SEND_BURST = 10
    MAX_FRAME_BYTES = 65536
    ALLOWED_ORIGINS: list[str] = []  # empty: only the app's own origin
    TRUSTED_PROXIES = 0
    JOIN_FAILURES_PER_MINUTE = 20
    CREATES_PER_MINUTE = 10

    # Limits that keep a public instance up (PROTOCOL.md version 2; README,
    # "Limits that keep a public instance up"). A classroom behind one NAT (30
    # people, two tabs each, joining within a minute) never meets them; a
    # script from one address meets them at once.
    MAX_ROOMS = 1000  # rooms at their limits take at most ~0.5-1 GiB in memory (README)
    ROOMS_PER_ADDRESS = 20  # more than a class's groups; one address cannot fill MAX_ROOMS
    ROOM_HISTORY_BYTES = 65536  # 500 lines of 131 bytes: no room grows big by long lines
    JOINS_PER_MINUTE = 60  # a class of 30 joining twice within the minute
    # Engine.IO sessions (WebSocket or long-polling) open at once per client
    # address, in this process: 60 tabs, and room for reloads and phones
    # whose dropped sessions have not timed out yet.
    CONNECTIONS_PER_ADDRESS = 100
    # New sessions per client address a minute, in bursts of as many: a
    # handshake costs 0.7 ms, and one address opening sessions in a loop held
    # a core. 60 tabs twice over (a WebSocket tried, then long-polling), and
    # the next minute's reloads.
    HANDSHAKES_PER_MINUTE = 180
    # A session must connect to /chat within this (the page does at once).
    CONNECT_TIMEOUT_SECONDS = 10
    # An HTTP request's line and headers must all arrive within this.
    HEADER_TIMEOUT_SECONDS = 10
    # Every packet a connection sends spends its budget: packets a second
    # and burst (the page sends at most a few a second, one line at a time),
    # and bytes a second (bursts of 4 * MAX_FRAME_BYTES). Past it the
    # connection is closed; the member stays within the leave grace.
    INPUT_RATE = 20
    INPUT_BURST = 60
    INPUT_BYTES_PER_SECOND = 65536

    # With the Redis store: how long a connection outlives the process that
    # stopped renewing it (a crash); the ghost-member bound is this plus
    # about 2 s of sweep and LEAVE_GRACE_SECONDS.
    CONNECTION_LEASE_SECONDS = 15

    # Fixed by the protocol; settings so that tests can shorten them.
    MEMBER_CONNECT_SECONDS = 60  # a form join that never connects ends after this
    TYPING_INTERVAL_SECONDS = 2

    # Seconds between full garbage collections under ``python -m chatapp``
    # and the gunicorn worker (chatapp/gcpolicy.py); 0 leaves Python's own schedule, whose full
    # collections pause every connection for ~60 ms per 1,000 of them.
    GC_FULL_INTERVAL = 300

    # Engine.IO heartbeat: a silent client is dropped after interval + timeout.
    SOCKETIO_PING_INTERVAL = 25
    SOCKETIO_PING_TIMEOUT = 20

    # The lobby form is tiny: refuse large bodies and many parts with 413.
    MAX_CONTENT_LENGTH = 16 * 1024
    MAX_FORM_PARTS = 20

    # Prometheus metrics at /metrics: off unless enabled; then loopback only,
    # or anyone with "Authorization: Bearer <METRICS_TOKEN>" when it is set.
    METRICS_ENABLED = False
    METRICS_TOKEN = None

    # Flask-WTF would refuse HTTPS form posts without a same-origin Referer;
    # the token (tied to the session) and SameSite=Lax already stop CSRF, and
    # bots and privacy tools often send no Referer.
    WTF_CSRF_SSL_STRICT = False

    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_SECURE = False  # set CHATAPP_SESSION_COOKIE_SECURE=true behind HTTPS
    PERMANENT_SESSION_LIFETIME = timedelta(days=7)
    # The cookie is signed and sent again only when it changes (a join, a
    # leave), not on every page view: it lasts 7 days from the last join.
    SESSION_REFRESH_EACH_REQUEST = False
    WTF_CSRF_TIME_LIMIT = None  # the token lives as long as the session


class ProductionConfig(Config):
    """What ``python -m chatapp``, wsgi.py and the Docker image run."""


class DevelopmentConfig(Config):
    """Local development: debug pages and a fixed key."""

    DEBUG = True
    SECRET_KEY = "dev"


class TestingConfig(Config):
    """The Flask and Flask-SocketIO test clients: threads, CSRF off."""

    TESTING = True
    SECRET_KEY = "test"
    WTF_CSRF_ENABLED = False
    SOCKETIO_ASYNC_MODE = "threading"
