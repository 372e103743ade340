"""Response headers that keep pages from being framed, sniffed or injected."""

from __future__ import annotations

from flask import abort
from flask import Flask
from flask import request
from flask import Response

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self' {websocket_origins}",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


def register_request_limits(app: Flask) -> None:
    """Refuse form posts with more than ``MAX_FORM_PARTS`` fields (413).

    Werkzeug counts parts of multipart bodies only; an urlencoded body of
    16 KiB can hold thousands of empty fields.
    """

    @app.before_request
    def limit_form_parts() -> None:
        if request.mimetype == "application/x-www-form-urlencoded":
            parts = sum(len(values) for values in request.form.listvalues())
            if parts > app.config["MAX_FORM_PARTS"]:
                abort(413)


def register_security_headers(app: Flask) -> None:
    """Add the security headers to every response."""

    @app.after_request
    def add_headers(response: Response) -> Response:
        headers = response.headers
        # 'self' covers ws: and wss: in CSP 3; older Safari needs them named.
        websocket_origins = f"ws://{request.host} wss://{request.host}"
        headers.setdefault(
            "Content-Security-Policy",
            CONTENT_SECURITY_POLICY.format(websocket_origins=websocket_origins),
        )
        headers.setdefault("X-Content-Type-Options", "nosniff")
        # same-origin, not no-referrer: Flask-WTF checks the Referer of
        # form posts over HTTPS, and links out of a room must not carry it.
        headers.setdefault("Referrer-Policy", "same-origin")
        headers.setdefault("X-Frame-Options", "DENY")
        return response
