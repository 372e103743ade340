"""Request limits, and response headers that keep pages from being framed, sniffed or injected."""

from __future__ import annotations

from urllib.parse import parse_qsl

from flask import abort
from flask import Flask
from flask import request
from flask import Response
from werkzeug.exceptions import SecurityError

NOT_UTF8 = "The form's text was not sent as UTF-8. Reload the page and try again."

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'{websocket_origins}",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


def register_request_limits(app: Flask) -> None:
    """Refuse form posts that are not UTF-8 (400) or hold over ``MAX_FORM_PARTS`` fields (413).

    Werkzeug counts parts of multipart bodies only; an urlencoded body of
    16 KiB can hold thousands of empty fields. And it reads an urlencoded
    body that is not UTF-8 as no form at all (raw bytes), or keeps the bad
    bytes as ``%XX`` text (escaped ones): neither is what anyone typed.
    Register this before CSRFProtect, whose check reads the form first.
    """

    @app.before_request
    def check_form_body() -> None:
        if request.mimetype != "application/x-www-form-urlencoded":
            return
        # Werkzeug parses the form from this cached copy later.
        body = request.get_data(cache=True, parse_form_data=False)
        try:
            fields = parse_qsl(body.decode(), keep_blank_values=True, errors="strict")
        except UnicodeDecodeError:
            abort(400, NOT_UTF8)
        if len(fields) > app.config["MAX_FORM_PARTS"]:
            abort(413)


def register_security_headers(app: Flask) -> None:
    """Add the security headers to every response."""

    @app.after_request
    def add_headers(response: Response) -> Response:
        headers = response.headers
        try:
            host = request.host
        except SecurityError:  # not one of TRUSTED_HOSTS: the 400 has no page to protect
            host = None
        # 'self' covers ws: and wss: in CSP 3; older Safari needs them named.
        websocket_origins = f" ws://{host} wss://{host}" if host else ""
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
