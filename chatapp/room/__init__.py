"""The room blueprint."""

from chatapp.room.routes import bp

__all__ = ["bp"]
