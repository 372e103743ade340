"""Error pages: every error a person can meet gets a page that says what to do."""

from __future__ import annotations

from flask import Flask
from flask import render_template
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import BadHost
from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import SecurityError

from chatapp.stores.base import StoreUnavailable

EXPIRED_FORM = "This form expired. Please try again."
BAD_HOST = "the Host header does not name this server."


def register_error_handlers(app: Flask) -> None:
    """Render HTTP errors, CSRF failures and store outages as pages."""
    app.register_error_handler(CSRFError, _csrf_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(StoreUnavailable, _store_unavailable)


def _csrf_error(error: CSRFError) -> ResponseReturnValue:
    # The lobby shows its own form again instead (chatapp.lobby.routes).
    return _page(400, "Bad request", EXPIRED_FORM)


def _http_error(error: HTTPException) -> ResponseReturnValue:
    code = error.code or 500
    if isinstance(error, (BadHost, SecurityError)):
        # Refused before routing: with no URL adapter, no page with links
        # (the stylesheet, the lobby) can be built.
        return f"{code} {error.name}: {BAD_HOST}\n", code, {"Content-Type": "text/plain"}
    body, status = _page(code, error.name, error.description or "")
    # Keep what the error says in its headers (Allow on a 405), not its type.
    headers = [(k, v) for k, v in error.get_headers() if k.lower() != "content-type"]
    return body, status, headers


def _store_unavailable(error: StoreUnavailable) -> ResponseReturnValue:
    return _page(503, "Unavailable", "The chat is unavailable right now. Try again in a moment.")


def _page(code: int, title: str, description: str) -> tuple[str, int]:
    return (
        render_template("errors/error.html", code=code, title=title, description=description),
        code,
    )
