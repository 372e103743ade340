"""Two people chatting in real browsers: invite, join, lines, members, typing, reload, leave."""

from __future__ import annotations

import re
from datetime import datetime
from datetime import UTC

import pytest
from playwright.sync_api import expect

from tests.support.browser import chat_texts
from tests.support.browser import create_room
from tests.support.browser import join_room
from tests.support.browser import log
from tests.support.browser import send
from tests.support.browser import wait_connected

pytestmark = pytest.mark.browser

CLIPBOARD = ["clipboard-read", "clipboard-write"]


def members(page):
    """The member list of the room page."""
    return page.get_by_role("complementary").get_by_role("listitem")


def test_invite_join_chat_members_and_typing(browser_server, open_context):
    ada = open_context(permissions=CLIPBOARD).new_page()
    code = create_room(ada, browser_server.url, "ada")

    ada.get_by_role("button", name="Copy invite link").click()
    expect(ada.get_by_role("status").filter(has_text="Invite link copied")).to_be_visible()
    expect(ada.get_by_role("button", name="Copied")).to_be_visible()
    invite = ada.evaluate("navigator.clipboard.readText()")
    assert invite == f"{browser_server.url}/?code={code}"
    expect(ada.get_by_label("Invite link")).to_have_value(invite)

    bob = open_context().new_page()
    bob.goto(invite)
    expect(bob.get_by_role("heading", name=f"Join room {code}")).to_be_visible()
    expect(bob.get_by_label("Room code")).to_have_value(code)
    expect(bob.get_by_label("Your name")).to_be_focused()
    bob.get_by_label("Your name").fill("bob")
    bob.get_by_role("button", name="Join room").click()
    bob.wait_for_url(re.compile(rf"/room/{code}$"))
    wait_connected(bob)

    expect(log(ada).get_by_text("bob joined")).to_be_visible()
    expect(log(bob).get_by_text("bob joined")).to_be_visible()
    expect(members(ada)).to_have_text(["ada (you)", "bob"])
    expect(members(bob)).to_have_text(["ada", "bob (you)"])

    send(ada, "hello bob")
    send(bob, "hi ada")
    for page in (ada, bob):
        expect(log(page).get_by_text("hello bob")).to_be_visible()
        expect(log(page).get_by_text("hi ada")).to_be_visible()
        assert chat_texts(page) == ["hello bob", "hi ada"]

    # Typing is relayed at most once every 2 s, and bob's last line just used that.
    bob.wait_for_timeout(2100)
    bob.get_by_role("textbox", name="Message").press_sequentially("still typ")
    expect(ada.get_by_text("bob is typing…")).to_be_visible()
    expect(bob.get_by_text("is typing…")).to_have_count(0)
    # Cleared when the line arrives (else after a few seconds of silence).
    bob.get_by_role("textbox", name="Message").press("Enter")
    expect(log(ada).get_by_text("still typ")).to_be_visible()
    expect(ada.get_by_text("bob is typing…")).to_have_count(0)


def test_typing_indicator_clears_after_silence(browser_server, open_context):
    ada = open_context().new_page()
    code = create_room(ada, browser_server.url, "ada")
    bob = open_context().new_page()
    join_room(bob, browser_server.url, code, "bob")

    bob.get_by_role("textbox", name="Message").press_sequentially("hm")
    expect(ada.get_by_text("bob is typing…")).to_be_visible()
    expect(ada.get_by_text("bob is typing…")).to_have_count(0, timeout=6000)
    assert chat_texts(ada) == []


def test_reload_keeps_history_and_two_tabs_are_one_member(browser_server, open_context):
    ada = open_context().new_page()
    code = create_room(ada, browser_server.url, "ada")
    bob_context = open_context()
    bob = bob_context.new_page()
    join_room(bob, browser_server.url, code, "bob")
    send(ada, "before the reload")
    expect(log(bob).get_by_text("before the reload")).to_be_visible()

    bob.reload()
    wait_connected(bob)
    expect(log(bob).get_by_text("before the reload")).to_be_visible()
    expect(log(bob).get_by_text("bob joined")).to_have_count(1)

    second_tab = bob_context.new_page()
    second_tab.goto(f"{browser_server.url}/room/{code}")
    wait_connected(second_tab)
    expect(log(second_tab).get_by_text("before the reload")).to_be_visible()
    expect(members(ada)).to_have_text(["ada (you)", "bob"])
    second_tab.close()

    # Past the grace period: still no leave or join notice for bob.
    send(bob, "still here")
    expect(log(ada).get_by_text("still here")).to_be_visible()
    ada.wait_for_timeout(3500)
    send(ada, "after the grace period")
    expect(log(ada).get_by_text("after the grace period")).to_be_visible()
    expect(log(ada).get_by_text("bob left")).to_have_count(0)
    expect(log(ada).get_by_text("bob joined")).to_have_count(1)
    expect(members(ada)).to_have_text(["ada (you)", "bob"])


def test_leave_returns_to_the_lobby_and_others_see_it(browser_server, open_context):
    ada = open_context().new_page()
    code = create_room(ada, browser_server.url, "ada")
    bob = open_context().new_page()
    join_room(bob, browser_server.url, code, "bob")

    bob.get_by_role("button", name="Leave room").click()

    bob.wait_for_url(f"{browser_server.url}/")
    expect(bob.get_by_role("heading", name="Start chatting")).to_be_visible()
    expect(bob.get_by_label("Your name")).to_be_focused()
    expect(log(ada).get_by_text("bob left")).to_be_visible()
    expect(members(ada)).to_have_text(["ada (you)"])
    # The room page no longer admits bob: it sends him to the lobby with the code.
    bob.goto(f"{browser_server.url}/room/{code}")
    expect(bob.get_by_label("Room code")).to_have_value(code)


def test_lines_are_grouped_by_person_under_a_day_separator(browser_server, open_context):
    ada = open_context().new_page()
    code = create_room(ada, browser_server.url, "ada")
    bob = open_context().new_page()
    join_room(bob, browser_server.url, code, "bob")

    for text in ("one", "two", "three"):
        send(ada, text)
        expect(log(bob).get_by_text(text, exact=True)).to_be_visible()
    send(bob, "four")
    send(ada, "five")
    expect(log(bob).get_by_text("five", exact=True)).to_be_visible()

    # The name shows once per group: ada (one, two, three), bob (four), ada (five).
    shown_names = log(bob).locator(".msg-meta:not(.visually-hidden) .msg-name")
    expect(shown_names).to_have_text(["ada", "bob", "ada"])
    # Screen readers still hear who wrote each line.
    expect(log(bob).locator(".msg--chat .msg-name")).to_have_count(5)
    # One "Today" separator, before the first message of the day.
    separators = log(bob).get_by_text("Today", exact=True)
    expect(separators).to_have_count(1)
    first_item = log(bob).get_by_role("listitem").first
    expect(first_item).to_have_text("Today")

    # A reload rebuilds the same groups from the history.
    bob.reload()
    wait_connected(bob)
    expect(log(bob).locator(".msg-meta:not(.visually-hidden) .msg-name")).to_have_text(
        ["ada", "bob", "ada"]
    )


def test_today_becomes_yesterday_at_midnight_in_a_tab_left_open(browser_server, open_context):
    context = open_context(timezone_id="UTC")
    late = datetime.now(UTC).replace(hour=23, minute=59, second=30, microsecond=0)
    context.clock.install(time=late)  # the page's clock; it runs on from there
    ada = context.new_page()
    create_room(ada, browser_server.url, "ada")
    send(ada, "still up")
    expect(log(ada).get_by_text("still up", exact=True)).to_be_visible()
    separator = log(ada).locator(".day-separator-text")
    expect(separator).to_have_text("Today")
    ada.clock.fast_forward("01:00")  # past midnight
    expect(separator).to_have_text("Yesterday")


def test_http_links_are_safe_other_schemes_stay_text(browser_server, open_context):
    ada = open_context().new_page()
    create_room(ada, browser_server.url, "ada")

    send(ada, "docs at https://example.com/a?b=1&c=<2>. and http://example.org/x (see)")
    send(ada, "javascript:alert(1) data:text/html,hi ftp://example.com/f")

    links = log(ada).get_by_role("link")
    expect(links).to_have_count(2)
    first = log(ada).get_by_role("link", name="https://example.com/a?b=1&c=")
    expect(first).to_have_attribute("href", "https://example.com/a?b=1&c=")
    for link in links.all():
        expect(link).to_have_attribute("rel", "noopener noreferrer")
        expect(link).to_have_attribute("target", "_blank")
        # Nothing but text inside the link.
        assert link.evaluate("(a) => a.children.length") == 0
    expect(log(ada).get_by_role("link", name="http://example.org/x")).to_have_attribute(
        "href", "http://example.org/x"
    )
    expect(
        log(ada).get_by_text("javascript:alert(1) data:text/html,hi ftp://example.com/f")
    ).to_be_visible()
    assert chat_texts(ada) == [
        "docs at https://example.com/a?b=1&c=<2>. and http://example.org/x (see)",
        "javascript:alert(1) data:text/html,hi ftp://example.com/f",
    ]


def test_qr_code_of_the_invite_link(browser_server, open_context):
    ada = open_context().new_page()
    code = create_room(ada, browser_server.url, "ada")

    image = ada.get_by_role("img", name="QR code of the invite link")
    expect(image).to_be_hidden()
    ada.get_by_text("Show QR code").click()
    expect(image).to_be_visible()
    expect(image).to_have_attribute("src", f"/room/{code}/qr.svg")
    ada.wait_for_function(
        "(img) => img.complete && img.naturalWidth > 100", arg=image.element_handle()
    )

    response = ada.request.get(f"{browser_server.url}/room/{code}/qr.svg")
    assert response.status == 200
    assert response.headers["content-type"].startswith("image/svg+xml")
    stranger = open_context().request.get(f"{browser_server.url}/room/{code}/qr.svg")
    assert stranger.status == 404
