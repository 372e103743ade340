"""axe-core, horizontal overflow, the composer above the keyboard, and screenshots."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.support.browser import create_room
from tests.support.browser import join_room
from tests.support.browser import log
from tests.support.browser import run_axe
from tests.support.browser import screenshot
from tests.support.browser import send

pytestmark = pytest.mark.browser

SIZES = {"phone": (390, 844), "desktop": (1280, 800)}
LONG_WORD = "x" * 120
LINES = [
    "hello there, see https://example.com/some/long/path?with=query&and=more",
    LONG_WORD,
    "a line\nwith two lines",
]


def assert_no_horizontal_overflow(page) -> None:
    widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], widths


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("size", list(SIZES))
def test_pages_pass_axe_fit_the_screen_and_are_captured(browser_server, open_context, scheme, size):
    width, height = SIZES[size]
    options = {"color_scheme": scheme, "viewport": {"width": width, "height": height}}
    ada = open_context(**options).new_page()

    ada.goto(browser_server.url + "/")
    expect(ada.get_by_label("Your name")).to_be_focused()
    assert run_axe(ada) == []
    assert_no_horizontal_overflow(ada)
    screenshot(ada, f"lobby-{size}-{scheme}")

    code = create_room(ada, browser_server.url, "ada " + LONG_WORD[:20])
    bob = open_context(**options).new_page()
    join_room(bob, browser_server.url, code, "bob")
    for line in LINES:
        send(bob, line)
    send(ada, "hi @bob")
    expect(log(ada).get_by_text("hi @bob")).to_be_visible()
    bob.get_by_role("textbox", name="Message").press_sequentially("typing")
    # The dark scheme really applies.
    background = ada.evaluate("getComputedStyle(document.body).backgroundColor")
    assert (background == "rgb(14, 17, 20)") == (scheme == "dark"), background

    assert run_axe(ada) == []
    assert_no_horizontal_overflow(ada)
    screenshot(ada, f"room-{size}-{scheme}")
    ada.get_by_text("Show QR code").click()
    expect(ada.get_by_role("img", name="QR code of the invite link")).to_be_visible()
    assert run_axe(ada) == []
    assert_no_horizontal_overflow(ada)


def test_composer_stays_reachable_above_the_keyboard(browser_server, open_context):
    # A phone with the on-screen keyboard up leaves about 390x500.
    ada = open_context(viewport={"width": 390, "height": 500}).new_page()
    code = create_room(ada, browser_server.url, "ada")
    bob = open_context().new_page()
    join_room(bob, browser_server.url, code, "bob")
    for n in range(15):
        send(bob, f"line {n}")
    expect(log(ada).get_by_text("line 14")).to_be_visible()

    composer = ada.get_by_role("textbox", name="Message")
    composer.focus()
    expect(composer).to_be_in_viewport(ratio=1)
    expect(ada.get_by_role("button", name="Send")).to_be_in_viewport(ratio=1)
    # The newest line is in view, right above the composer.
    expect(log(ada).get_by_text("line 14")).to_be_in_viewport()
    assert_no_horizontal_overflow(ada)
    # The chat page itself never scrolls: only the log does.
    heights = ada.evaluate("[document.documentElement.scrollHeight, window.innerHeight]")
    assert heights[0] <= heights[1], heights
    screenshot(ada, "room-phone-keyboard-light")


CONTROL_HEIGHTS = """() => [...document.querySelectorAll("button, summary, input, textarea")]
  .filter((el) => el.offsetParent !== null)
  .map((el) => [el.id || el.textContent.trim(), el.getBoundingClientRect().height])"""


def test_every_control_is_a_fingers_size_on_a_touch_phone(browser_server, open_context):
    phone = {"viewport": {"width": 390, "height": 844}, "has_touch": True, "is_mobile": True}
    ada = open_context(**phone).new_page()
    code = create_room(ada, browser_server.url, "ada")
    bob = open_context(**phone).new_page()
    join_room(bob, browser_server.url, code, "bob")
    for page in (ada, bob):
        small = [(name, h) for name, h in page.evaluate(CONTROL_HEIGHTS) if h < 44]
        assert small == [], small
