"""The lobby blueprint."""

from chatapp.lobby.routes import bp

__all__ = ["bp"]
