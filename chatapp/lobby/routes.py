"""The lobby: type a name, then create a room or join one by its code."""

from __future__ import annotations

import functools
import math

from flask import Blueprint
from flask import redirect
from flask import render_template
from flask import request
from flask import Response
from flask import url_for
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError
from markupsafe import escape

from chatapp.extensions import get_registry
from chatapp.lobby.forms import chosen_action
from chatapp.lobby.forms import LobbyForm
from chatapp.names import normalize_code
from chatapp.rooms import NameTaken
from chatapp.rooms import NoFreeCode
from chatapp.rooms import RoomFull
from chatapp.rooms import RoomNotFound
from chatapp.rooms import ServerFull
from chatapp.rooms import StoreUnavailable
from chatapp.rooms import TooManyAttempts
from chatapp.web import memberships
from chatapp.web.addresses import address_key
from chatapp.web.errors import EXPIRED_FORM
from chatapp.web.logs import log_event
from chatapp.web.logs import log_refusal

bp = Blueprint("lobby", __name__)

TOO_MANY = "Too many attempts from your network. Wait a minute and try again."
UNAVAILABLE = "The chat is unavailable right now. Try again in a moment."
# What the lobby says when no room can be had now, and the reason logged.
OUTAGES: dict[type[Exception], tuple[str, str]] = {
    ServerFull: ("Sorry, the server is full. Try again later.", "server_full"),
    NoFreeCode: ("No free room code right now. Try again in a moment.", "unavailable"),
    StoreUnavailable: (UNAVAILABLE, "unavailable"),
}


@bp.get("/")
def index() -> ResponseReturnValue:
    """Show the lobby, with the code of an invite link filled in."""
    form = LobbyForm(formdata=None)
    form.code.data = normalize_code(request.args.get("code", ""))[: form.code_max_length]
    return render_template("lobby/index.html", form=form)


@bp.post("/")
def enter() -> ResponseReturnValue:
    """Create or join a room, then go to it."""
    action = chosen_action(request.form)
    form = LobbyForm(action=action)
    address = address_key(request.remote_addr)
    registry = get_registry()
    try:
        if action is None:
            return render_lobby(form, 400, "Choose either Create a room or Join room.")
        if not form.validate():
            registry.refuse_form(action, address)
            return render_lobby(form, 400)
        if action == "create":
            membership = registry.create_room(form.name.data, address)
        else:
            held = memberships.find(form.code.data)
            membership = registry.join_room(form.code.data, form.name.data, held, address)
    except TooManyAttempts as refusal:
        return too_many_attempts(action, refusal)
    except (RoomNotFound, NameTaken, RoomFull) as refusal:
        return render_lobby(form, 400, field_error=refusal)
    except (ServerFull, NoFreeCode, StoreUnavailable) as outage:
        message, reason = OUTAGES[type(outage)]
        return render_lobby(form, 503, message, reason=reason)
    memberships.remember(membership)
    log_event("seat", room=membership.code, action=action)
    return redirect(url_for("room.chat", code=membership.code), 303)


def too_many_attempts(action: str | None, refusal: TooManyAttempts) -> Response:
    """Answer 429 with a page made once: a refusal renders nothing, makes no token."""
    log_refusal("lobby_refused", refusal.reason, request.remote_addr, status=429, action=action)
    retry_after = max(1, math.ceil(refusal.retry_after))
    return Response(
        _too_many_page(request.script_root),
        429,
        {"Retry-After": str(retry_after), "Content-Type": "text/html; charset=utf-8"},
    )


@functools.lru_cache(maxsize=4)
def _too_many_page(script_root: str) -> bytes:
    """Return the 429 page, the same for everyone under one script root."""
    lobby = escape(url_for("lobby.index"))
    stylesheet = escape(url_for("static", filename="css/app.css"))
    return f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Too many attempts · chatapp</title>
  <link rel="stylesheet" href="{stylesheet}">
</head>
<body class="page">
  <main id="main" class="site-main">
    <div class="error-page card">
      <h1 class="error-title">Too many attempts</h1>
      <p class="error-description">{TOO_MANY}</p>
      <p><a class="button button--primary" href="{lobby}">Back to the lobby</a></p>
    </div>
  </main>
</body>
</html>
""".encode()


@bp.errorhandler(CSRFError)
def expired_form(error: CSRFError) -> ResponseReturnValue:
    """Show the lobby again, saying why, when its form's CSRF token failed."""
    return render_lobby(LobbyForm(), 400, EXPIRED_FORM)


def render_lobby(
    form: LobbyForm,
    status: int,
    form_error: str | None = None,
    field_error: Exception | None = None,
    reason: str | None = None,
) -> ResponseReturnValue:
    """Render the lobby again with an error next to the right field."""
    if reason is None:
        reason = type(field_error).__name__ if field_error is not None else "invalid_form"
    fields = [field.name for field in (form.name, form.code) if field.errors]
    addr = request.remote_addr
    log_refusal("lobby_refused", reason, addr, status=status, action=form.action, fields=fields)
    if form_error is not None:
        form.form_errors.append(form_error)
    if isinstance(field_error, RoomNotFound):
        form.code.errors = [f"No room has the code {form.code.data}."]
    elif isinstance(field_error, RoomFull):
        form.code.errors = ["This room is full."]
    elif isinstance(field_error, NameTaken):
        form.name.errors = ["Someone in this room has that name, or one that looks like it."]
    return render_template("lobby/index.html", form=form), status
