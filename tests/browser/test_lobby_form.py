"""The lobby's name field counts characters as the server does (code points)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.support.browser import create_room

pytestmark = pytest.mark.browser

VALIDATION_MESSAGE = "el => el.validationMessage"


def test_a_name_of_emoji_up_to_the_limit_is_taken(browser_server, open_context):
    ada = open_context().new_page()
    name = "😀" * 32  # 32 code points, 64 UTF-16 units: maxlength cut it to 32 units
    create_room(ada, browser_server.url, name)
    expect(ada.locator("#members")).to_contain_text(name)


def test_a_name_over_the_limit_is_refused_before_it_is_sent(browser_server, open_context):
    ada = open_context().new_page()
    ada.goto(browser_server.url + "/")
    field = ada.get_by_label("Your name")
    field.fill("ada " + "x" * 30)  # 34 characters
    ada.get_by_role("button", name="Create a room").click()
    assert field.evaluate(VALIDATION_MESSAGE) == "Names are at most 32 characters (2 over)."
    assert ada.url == browser_server.url + "/"  # nothing was sent
    field.fill("  ada   " + "x" * 28 + "  ")  # 32 once trimmed and folded, as the server counts
    assert field.evaluate(VALIDATION_MESSAGE) == ""
    ada.get_by_role("button", name="Create a room").click()
    ada.wait_for_url(f"{browser_server.url}/room/*")
    expect(ada.locator("#members")).to_contain_text("ada " + "x" * 28)
