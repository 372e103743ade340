"""Fixtures of the web tests (lobby, room page, forms)."""

from __future__ import annotations

import pytest
from flask import Flask


@pytest.fixture
def code(app: Flask) -> str:
    """The code of a room ada created through the lobby form (in her own session)."""
    response = app.test_client().post("/", data={"name": "ada", "code": "", "create": ""})
    assert response.status_code == 303, response.data
    return response.headers["Location"].rsplit("/", 1)[1]
