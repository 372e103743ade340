"""Flask's session cookie as anyone can read it, and as one who holds a key can sign it."""

from __future__ import annotations

import base64
import json
import zlib
from typing import Any

from flask import Flask
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import URLSafeTimedSerializer


def signer(app: Flask, secret_key: str) -> URLSafeTimedSerializer:
    """Flask's own cookie serializer, keyed with ``secret_key``."""
    interface = SecureCookieSessionInterface()
    return URLSafeTimedSerializer(
        secret_key,
        salt=interface.salt,
        serializer=interface.serializer,
        signer_kwargs={
            "key_derivation": interface.key_derivation,
            "digest_method": interface.digest_method,
        },
    )


def readable(cookie_value: str) -> Any:
    """Decode a signed session cookie without the key, as anyone can."""
    payload = cookie_value.lstrip(".").split(".")[0]
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    if cookie_value.startswith("."):
        raw = zlib.decompress(raw)
    return json.loads(raw)
