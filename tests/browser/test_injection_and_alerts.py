"""Hostile names and lines show as text, links as what they are; unread count in the
title; mention notifications."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.support.browser import create_room
from tests.support.browser import join_room
from tests.support.browser import log
from tests.support.browser import send

pytestmark = pytest.mark.browser

# Any payload that runs sets window.__pwned (define it as a trap first).
TRAP = "Object.defineProperty(window, '__pwned', {set() { window.__ran = true; }, get() {}});"
PAYLOAD_NAMES = ["<img src=x onerror=__pwned=1>", "<script>__pwned=1</script>"]
PAYLOAD_LINES = [
    "<script>window.__pwned = 1</script>",
    "<img src=x onerror=window.__pwned=1>",
    "javascript:window.__pwned=1",
    '"><svg onload=window.__pwned=1>',
    '<a href="javascript:window.__pwned=1">click</a>',
]

# The page's own test hooks: a hidden tab, and a Notification that records.
HIDDEN_TAB = """
(() => {
  let hidden = false;
  Object.defineProperty(document, "hidden", {configurable: true, get: () => hidden});
  Object.defineProperty(document, "visibilityState", {
    configurable: true, get: () => (hidden ? "hidden" : "visible"),
  });
  window.__setHidden = (value) => {
    hidden = value;
    document.dispatchEvent(new Event("visibilitychange"));
  };
})();
"""
NOTIFICATION_STUB = """
(() => {
  window.__notifications = [];
  window.__permissionRequests = 0;
  class RecordingNotification {
    static permission = "default";
    static requestPermission() {
      window.__permissionRequests += 1;
      RecordingNotification.permission = "granted";
      return Promise.resolve("granted");
    }
    constructor(title, options = {}) {
      window.__notifications.push({title, body: options.body || ""});
      this.onclick = null;
    }
    close() {}
  }
  window.Notification = RecordingNotification;
})();
"""


def ran(page) -> bool:
    """Whether anything set the trap."""
    return page.evaluate("window.__ran === true || typeof window.__pwned !== 'undefined'")


@pytest.mark.parametrize("name", PAYLOAD_NAMES)
def test_hostile_names_and_lines_are_text(browser_server, open_context, allow_console, name):
    # Chromium logs the lobby's 400 answer to the refused join below; nothing else.
    allow_console(r"^Failed to load resource: the server responded with a status of 400 ")
    mallory_context = open_context()
    mallory_context.add_init_script(TRAP)
    ada_context = open_context()
    ada_context.add_init_script(TRAP)
    ada = ada_context.new_page()
    code = create_room(ada, browser_server.url, "ada")
    mallory = mallory_context.new_page()
    join_room(mallory, browser_server.url, code, name)

    for line in PAYLOAD_LINES:
        send(mallory, line)
    for page in (ada, mallory):
        for line in PAYLOAD_LINES:
            expect(log(page).get_by_text(line, exact=True)).to_be_visible()
        expect(log(page).get_by_text(f"{name} joined")).to_be_visible()
        expect(page.get_by_role("complementary").get_by_text(name)).to_be_visible()
        expect(log(page).get_by_role("link")).to_have_count(0)
        expect(log(page).locator("img, script, svg, a")).to_have_count(0)
    expect(mallory.get_by_text(re.compile(r"You are not|no longer"))).to_have_count(0)

    # The lobby shows the name as text too when it is refused (taken).
    other = open_context().new_page()
    other.goto(f"{browser_server.url}/?code={code}")
    other.get_by_label("Your name").fill(name)
    other.get_by_role("button", name="Join room").click()
    expect(other.get_by_text("Someone in this room has that name")).to_be_visible()
    expect(other.get_by_label("Your name")).to_have_value(name)
    for page in (ada, mallory, other):
        assert not ran(page)


LINKS = [
    # (line, the link's text, where it leads)
    (
        "see https://en.wikipedia.org/wiki/Mercury_(planet)).",
        "https://en.wikipedia.org/wiki/Mercury_(planet)",
        "https://en.wikipedia.org/wiki/Mercury_(planet)",
    ),
    ("read https://a.example/guide… then", "https://a.example/guide", "https://a.example/guide"),
    (
        "login here: \u202ehttps://evil.example/\u202e?moc.elgoog//:sptth",
        "https://evil.example/",
        "https://evil.example/",
    ),
]


@pytest.mark.parametrize(("line", "text", "href"), LINKS)
def test_links_end_where_the_address_does_and_read_left_to_right(
    browser_server, open_context, line, text, href
):
    ada = open_context().new_page()
    create_room(ada, browser_server.url, "ada")
    send(ada, line)
    link = log(ada).get_by_role("link")
    expect(link).to_have_text(text)
    expect(link).to_have_attribute("href", href)
    # Isolated from the text around it: an override before it cannot reverse it.
    style = link.evaluate("a => [getComputedStyle(a).direction, getComputedStyle(a).unicodeBidi]")
    assert style == ["ltr", "isolate"]


def test_unread_count_in_the_title_while_hidden(browser_server, open_context):
    ada_context = open_context()
    ada_context.add_init_script(HIDDEN_TAB)
    ada = ada_context.new_page()
    code = create_room(ada, browser_server.url, "ada")
    expect(ada).to_have_title(f"{code} · chatapp")
    bob = open_context().new_page()
    join_room(bob, browser_server.url, code, "bob")

    ada.evaluate("window.__setHidden(true)")
    for text in ("one", "two", "three"):
        send(bob, text)
    expect(log(ada).get_by_text("three")).to_be_attached()
    expect(ada).to_have_title(f"(3) {code} · chatapp")
    # Her own lines do not count.
    send(ada, "mine")
    expect(log(ada).get_by_text("mine")).to_be_attached()
    expect(ada).to_have_title(f"(3) {code} · chatapp")

    ada.evaluate("window.__setHidden(false)")
    expect(ada).to_have_title(f"{code} · chatapp")
    send(bob, "seen at once")
    expect(log(ada).get_by_text("seen at once")).to_be_visible()
    expect(ada).to_have_title(f"{code} · chatapp")


def test_mention_notification_is_opt_in(browser_server, open_context):
    ada_context = open_context()
    ada_context.grant_permissions(["notifications"])
    ada_context.add_init_script(HIDDEN_TAB)
    ada_context.add_init_script(NOTIFICATION_STUB)
    ada = ada_context.new_page()
    code = create_room(ada, browser_server.url, "ada")
    bob = open_context().new_page()
    join_room(bob, browser_server.url, code, "bob")

    # Not asked for on its own, and nothing shown before opting in.
    ada.evaluate("window.__setHidden(true)")
    send(bob, "@ada before opting in")
    expect(log(ada).get_by_text("@ada before opting in")).to_be_attached()
    assert ada.evaluate("window.__permissionRequests") == 0
    assert ada.evaluate("window.__notifications") == []
    ada.evaluate("window.__setHidden(false)")

    button = ada.get_by_role("button", name="Notify me when mentioned")
    expect(button).to_have_attribute("aria-pressed", "false")
    button.click()
    expect(button).to_have_attribute("aria-pressed", "true")
    assert ada.evaluate("window.__permissionRequests") == 1
    expect(
        ada.get_by_role("status").filter(has_text="notified when someone writes @ada")
    ).to_be_visible()

    ada.evaluate("window.__setHidden(true)")
    send(bob, "no mention of adam or @adam here, nor of mail@ada.example")
    send(bob, "hey @ADA, look")
    expect(log(ada).get_by_text("hey @ADA, look")).to_be_attached()
    ada.wait_for_function("window.__notifications.length >= 1")
    assert ada.evaluate("window.__notifications") == [
        {"title": f"bob mentioned you in room {code}", "body": "hey @ADA, look"}
    ]
    # Her own mention of herself does not notify.
    send(ada, "note to @ada")
    expect(log(ada).get_by_text("note to @ada")).to_be_attached()
    assert ada.evaluate("window.__notifications.length") == 1

    # Off again with one more click.
    ada.evaluate("window.__setHidden(false)")
    button.click()
    expect(button).to_have_attribute("aria-pressed", "false")
    ada.evaluate("window.__setHidden(true)")
    send(bob, "@ada once more")
    expect(log(ada).get_by_text("@ada once more")).to_be_attached()
    assert ada.evaluate("window.__notifications.length") == 1
