"""Everything without a mouse, with the focus visible and where a person expects it."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.support.browser import chat_texts
from tests.support.browser import create_room
from tests.support.browser import log
from tests.support.browser import wait_connected

pytestmark = pytest.mark.browser

FOCUS_RING = """() => {
  const el = document.activeElement;
  if (!el || !el.matches(":focus-visible")) return null;
  const style = getComputedStyle(el);
  const outline = style.outlineStyle !== "none" && parseFloat(style.outlineWidth) > 0;
  const shadow = style.boxShadow !== "none";
  if (outline) return style.outlineStyle + " " + style.outlineWidth;
  return shadow ? style.boxShadow : "";
}"""
FOCUSED_NAME = """() => {
  const el = document.activeElement;
  return el ? (el.getAttribute("aria-label") || el.labels?.[0]?.textContent
               || el.textContent || "").trim() : "";
}"""


def tab_to(page, name: str, key: str = "Tab", limit: int = 25) -> None:
    """Press Tab (or Shift+Tab) until the focused element is called ``name``; check its ring."""
    for _ in range(limit):
        page.keyboard.press(key)
        if page.evaluate(FOCUSED_NAME) == name:
            ring = page.evaluate(FOCUS_RING)
            assert ring, f"no visible focus on {name!r}: {ring!r}"
            return
    raise AssertionError(f"{key} never reached {name!r}")


def test_keyboard_only_from_lobby_to_leave(browser_server, open_context):
    context = open_context(permissions=["clipboard-read", "clipboard-write"])
    ada = context.new_page()
    ada.goto(browser_server.url + "/")

    # The lobby: focus starts in the name field.
    expect(ada.get_by_label("Your name")).to_be_focused()
    ada.keyboard.type("ada")
    tab_to(ada, "Room code")
    tab_to(ada, "Create a room")
    ada.keyboard.press("Enter")
    ada.wait_for_url(re.compile(r"/room/[A-Z]+$"))
    wait_connected(ada)

    # The room: focus lands in the composer.
    composer = ada.get_by_role("textbox", name="Message")
    expect(composer).to_be_focused()
    ada.keyboard.type("first line")
    ada.keyboard.press("Shift+Enter")
    ada.keyboard.type("second line")
    expect(composer).to_have_value("first line\nsecond line")
    ada.keyboard.press("Enter")
    expect(log(ada).get_by_text("first line")).to_be_visible()
    assert chat_texts(ada) == ["first line\nsecond line"]
    expect(composer).to_have_value("")
    expect(composer).to_be_focused()

    tab_to(ada, "Copy invite link", key="Shift+Tab")
    ada.keyboard.press("Space")
    expect(ada.get_by_role("status").filter(has_text="Invite link copied")).to_be_visible()
    assert ada.evaluate("navigator.clipboard.readText()").endswith("/?code=" + ada.url[-4:])

    tab_to(ada, "Show QR code", key="Tab")
    ada.keyboard.press("Enter")
    expect(ada.get_by_role("img", name="QR code of the invite link")).to_be_visible()

    # Leave, the one step that cannot be taken back, comes after the tools.
    tab_to(ada, "Leave room", key="Tab", limit=2)  # past "Notify me when mentioned"
    ada.keyboard.press("Enter")
    ada.wait_for_url(browser_server.url + "/")
    expect(ada.get_by_label("Your name")).to_be_focused()


def test_focus_ring_on_every_control_of_the_room(browser_server, open_context):
    ada = open_context().new_page()
    create_room(ada, browser_server.url, "ada")
    seen = set()
    for _ in range(20):
        ada.keyboard.press("Tab")
        name = ada.evaluate(FOCUSED_NAME)
        tag = ada.evaluate("document.activeElement.tagName")
        if tag == "BODY":
            continue
        ring = ada.evaluate(FOCUS_RING)
        assert ring, f"no visible focus on {tag} {name!r}"
        seen.add(name)
    for expected in ("Leave room", "Copy invite link", "Show QR code", "Send"):
        assert expected in seen, seen


def test_notices_do_not_steal_focus(browser_server, open_context):
    ada = open_context().new_page()
    code = create_room(ada, browser_server.url, "ada")
    composer = ada.get_by_role("textbox", name="Message")
    composer.press_sequentially("half a thou")

    bob = open_context().new_page()
    bob.goto(f"{browser_server.url}/?code={code}")
    bob.get_by_label("Your name").fill("bob")
    bob.get_by_role("button", name="Join room").click()
    expect(log(ada).get_by_text("bob joined")).to_be_visible()

    expect(composer).to_be_focused()
    expect(composer).to_have_value("half a thou")
    # New lines reach screen readers through the polite log region.
    region = ada.get_by_role("log", name="Messages")
    expect(region).to_have_attribute("aria-live", "polite")
