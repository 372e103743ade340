"""The room: the chat page, and leaving for good."""

from __future__ import annotations

from flask import abort
from flask import Blueprint
from flask import redirect
from flask import render_template
from flask import Response
from flask import url_for
from flask.typing import ResponseReturnValue

from chatapp.extensions import get_presence
from chatapp.extensions import get_registry
from chatapp.names import normalize_code
from chatapp.web import memberships
from chatapp.web.qr import invite_qr_svg

bp = Blueprint("room", __name__, url_prefix="/room")


@bp.get("/<code>")
def chat(code: str) -> ResponseReturnValue:
    """Show the chat page to a member; send anyone else to the lobby."""
    code = normalize_code(code)
    membership = memberships.find(code)
    if membership is None or not get_registry().is_member(code, membership.member_id):
        if membership is not None:
            memberships.forget(code)  # the room expired or the seat was given up
        return redirect(url_for("lobby.index", code=code), 303)
    return render_template(
        "room/chat.html",
        room_code=code,
        name=membership.name,
        invite_url=url_for("lobby.index", code=code, _external=True),
        leave_url=url_for("room.leave", code=code),
    )


@bp.get("/<code>/qr.svg")
def qr(code: str) -> ResponseReturnValue:
    """Serve the invite link as a QR code (SVG) to the room's members only."""
    code = normalize_code(code)
    membership = memberships.find(code)
    if membership is None or not get_registry().is_member(code, membership.member_id):
        abort(404)
    # The same absolute invite link as the page shows (see chat()).
    url = url_for("lobby.index", code=code, _external=True)
    response = Response(invite_qr_svg(url), mimetype="image/svg+xml")
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.post("/<code>/leave")
def leave(code: str) -> ResponseReturnValue:
    """Leave the room for good: notice, disconnect, free the name."""
    code = normalize_code(code)
    membership = memberships.find(code)
    if membership is not None:
        get_presence().leave(code, membership.member_id)
        memberships.forget(code)
    return redirect(url_for("lobby.index"), 303)
