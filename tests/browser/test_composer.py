"""The message box: a line over the limit is kept, not cut; a line over the send
rate waits and goes by itself; the log keeps following."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.support.browser import chat_texts
from tests.support.browser import create_room
from tests.support.browser import join_room
from tests.support.browser import log
from tests.support.browser import pending
from tests.support.browser import send
from tests.support.browser import start_live_server

pytestmark = pytest.mark.browser

AT_BOTTOM = """() => {
  const log = document.getElementById("log");
  return log.scrollHeight - log.scrollTop - log.clientHeight < 4;
}"""


def test_a_paste_over_the_limit_stays_in_the_box_with_the_reason(browser_server, open_context):
    ada = open_context().new_page()
    create_room(ada, browser_server.url, "ada")
    box = ada.get_by_role("textbox", name="Message")
    long_text = "word " * 500  # 2,500 characters, 2,499 after trimming
    box.fill(long_text)
    box.press("Enter")
    expect(ada.get_by_role("alert").filter(has_text="Too long")).to_contain_text(
        "2000 characters at most (499 over)"
    )
    assert box.input_value() == long_text  # nothing cut, nothing lost
    ada.wait_for_timeout(300)
    assert not any("word word" in text for text in chat_texts(ada))  # and nothing sent
    box.fill("short enough")
    expect(ada.locator("#composer-error")).to_be_hidden()
    box.press("Enter")
    expect(log(ada)).to_contain_text("short enough")


def test_lines_over_the_send_rate_wait_with_the_reason_and_go_in_order(open_context):
    live = start_live_server({"SEND_RATE": 1, "SEND_BURST": 1})
    try:
        ada = open_context().new_page()
        create_room(ada, live.url, "ada")
        for i in range(3):
            send(ada, f"quick {i}")
        expect(pending(ada)).to_contain_text("you are sending fast, it goes in 1 s")
        expect(log(ada)).to_contain_text("quick 2", timeout=5000)
        assert chat_texts(ada) == ["quick 0", "quick 1", "quick 2"]
        expect(pending(ada)).to_be_hidden()
    finally:
        live.close()


def test_a_paste_padded_with_spaces_is_sent_trimmed(browser_server, open_context):
    ada = open_context().new_page()
    create_room(ada, browser_server.url, "ada")
    box = ada.get_by_role("textbox", name="Message")
    box.fill("padded" + " " * 70_000 + "\r\n")  # more than a frame may carry, untrimmed
    box.press("Enter")
    expect(log(ada)).to_contain_text("padded")
    assert chat_texts(ada) == ["padded"]
    expect(pending(ada)).to_be_hidden()
    expect(ada.get_by_role("status").filter(has_text="Connected")).to_be_visible()


def test_a_line_held_when_the_membership_ends_is_not_sent_after_joining_again(open_context):
    live = start_live_server({"SEND_RATE": 0.1, "SEND_BURST": 1})
    try:
        context = open_context()
        ada, other_tab = context.new_page(), context.new_page()
        code = create_room(ada, live.url, "ada")
        other_tab.goto(f"{live.url}/room/{code}")
        send(ada, "first")
        send(ada, "second, held back")
        expect(pending(ada)).to_contain_text("you are sending fast")
        other_tab.get_by_role("button", name="Leave room").click()  # she leaves in the other tab
        expect(pending(ada)).to_contain_text("Not sent: the room is no longer reachable")
        ada.get_by_role("link", name="Back to the lobby").click()
        ada.get_by_label("Your name").fill("ada")
        ada.get_by_role("button", name="Join room").click()
        expect(ada.get_by_role("status").filter(has_text="Connected")).to_be_visible()
        expect(log(ada)).to_contain_text("ada joined")
        ada.wait_for_timeout(500)
        assert chat_texts(ada) == ["first"]  # the old line was not posted by the new member
    finally:
        live.close()


def test_the_log_keeps_following_while_the_box_grows(browser_server, open_context):
    ada, bob = open_context().new_page(), open_context().new_page()
    code = create_room(ada, browser_server.url, "ada")
    join_room(bob, browser_server.url, code, "bob")
    for i in range(30):
        send(bob, f"line {i}")
    expect(log(ada)).to_contain_text("line 29")
    assert ada.evaluate(AT_BOTTOM)
    box = ada.get_by_role("textbox", name="Message")
    box.click()
    for _ in range(5):  # a longer reply: the box grows, the log shrinks
        box.type("more")
        box.press("Shift+Enter")
    send(bob, "while ada writes")
    expect(log(ada)).to_contain_text("while ada writes")
    ada.wait_for_function(AT_BOTTOM, timeout=2000)
    expect(ada.get_by_role("button", name="New messages ↓")).to_be_hidden()


def test_a_fast_typist_stays_within_the_connections_input_budget(open_context):
    # The page's own packets (lines, typing, pongs) never come near the
    # input budget, even from someone typing and sending as fast as they
    # can past their send rate: every line arrives, the connection stays.
    live = start_live_server({"SEND_RATE": 5, "SEND_BURST": 10})
    try:
        ada = open_context().new_page()
        create_room(ada, live.url, "ada")
        box = ada.get_by_role("textbox", name="Message")
        for i in range(25):
            box.press_sequentially(f"fast {i}", delay=5)
            box.press("Enter")
        expect(log(ada)).to_contain_text("fast 24", timeout=10_000)
        assert chat_texts(ada) == [f"fast {i}" for i in range(25)]
        log_text = live.log_text()
        assert "session_closed" not in log_text and "session_refused" not in log_text
    finally:
        live.close()
