"""The signed session cookie, read defensively and signed without rework.

Flask's cookie sessions pass whatever a validly signed cookie decodes to
into ``dict()``: a signed JSON string or number makes every request with it
fail with a 500. Only the secret key can sign one, but keys leak, rotate and
get shared between deployments, so such a cookie counts as no session here,
like one with a bad signature (and a CSRF secret that is not a string as no
secret). Flask also builds the signing serializer again for every request
and every socket event that opens the session; here it is built once per
key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask
from flask.sessions import SecureCookieSession
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import URLSafeTimedSerializer

# Where Flask-WTF keeps the session's CSRF secret (WTF_CSRF_FIELD_NAME).
CSRF_KEY = "csrf_token"


class ChatSession(SecureCookieSession):
    """A cookie session that starts empty unless the cookie held an object.

    A CSRF secret that is not a string is dropped: Flask-WTF compares it
    with ``hmac.compare_digest``, which raises on anything else.
    """

    def __init__(self, initial: Any = None) -> None:
        data = dict(initial) if isinstance(initial, Mapping) else {}
        if not isinstance(data.get(CSRF_KEY, ""), str):
            del data[CSRF_KEY]
        super().__init__(data)


class ChatSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions with ChatSession and a cached serializer."""

    session_class = ChatSession

    def __init__(self) -> None:
        self._serializer: tuple[tuple[Any, ...], URLSafeTimedSerializer] | None = None

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        """Return the serializer for the app's current keys, built once per key."""
        if not app.secret_key:
            return None
        keys = (app.secret_key, *(app.config.get("SECRET_KEY_FALLBACKS") or ()))
        if self._serializer is None or self._serializer[0] != keys:
            serializer = super().get_signing_serializer(app)
            assert serializer is not None  # the key is set
            self._serializer = (keys, serializer)
        return self._serializer[1]
