"""The lobby form: a name, a room code and two buttons (create or join)."""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any

from flask_wtf import FlaskForm
from wtforms import Field
from wtforms import StringField
from wtforms import ValidationError

from chatapp.extensions import get_registry
from chatapp.rooms import InvalidCode
from chatapp.rooms import InvalidName

ACTIONS = ("create", "join")
# The code field takes a code and some spaces around it (they are trimmed).
CODE_FIELD_SLACK = 12

NAME_ERRORS = {
    "empty": "Enter your name.",
    "too_long": "Names are at most {max} characters.",
    "malformed": "Names cannot contain control, direction or invisible characters.",
}


def chosen_action(formdata: Mapping[str, Any]) -> str | None:
    """Return the button pressed, ``create`` or ``join``; None unless exactly one."""
    pressed = [action for action in ACTIONS if action in formdata]
    return pressed[0] if len(pressed) == 1 else None


def _single(field: Field) -> None:
    if field.raw_data and len(field.raw_data) > 1:
        raise ValidationError("Send this field once.")


class LobbyForm(FlaskForm):  # type: ignore[misc]  # Flask-WTF is untyped
    """Name and room code; ``action`` says which button was pressed."""

    class Meta:
        # CSRFProtect checks every POST before the view runs; a form of its
        # own would make a token each time it is built, refusals included.
        # The page asks for one (csrf_token()) only when it renders.
        csrf = False

    name = StringField("Your name")
    code = StringField("Room code")

    def __init__(self, *args: Any, action: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.action = action
        self.form_errors: list[str] = []

    @property
    def code_max_length(self) -> int:
        """How many characters the code field takes."""
        return get_registry().settings.code_length + CODE_FIELD_SLACK

    def validate_name(self, field: Field) -> None:
        """Refuse names the registry would refuse, saying why."""
        _single(field)
        registry = get_registry()
        try:
            field.data = registry.normalize_name(field.data or "")
        except InvalidName as error:
            limit = registry.settings.name_max_length
            raise ValidationError(NAME_ERRORS[error.reason].format(max=limit)) from None

    def validate_code(self, field: Field) -> None:
        """Require a well-formed code when joining (creating ignores it)."""
        _single(field)
        if self.action != "join":
            return
        if not (field.data or "").strip():
            raise ValidationError("Enter the room code.")
        registry = get_registry()
        try:
            field.data = registry.normalize_code(field.data)
        except InvalidCode:
            length = registry.settings.code_length
            example = (string.ascii_uppercase * (length // 26 + 1))[:length]
            raise ValidationError(f"Room codes are {length} letters, like {example}.") from None
