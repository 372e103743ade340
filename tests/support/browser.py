"""What a person does in a real browser (Playwright pages), and the live server those pages use.

No fixtures here: tests/browser/conftest.py has them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.sync_api import expect
from playwright.sync_api import Page

from tests.support.liveserver import LiveServer
from tests.support.liveserver import REPO_ROOT

AXE_JS = REPO_ROOT / "node_modules" / "axe-core" / "axe.min.js"


SCREENSHOTS = REPO_ROOT / "test-artifacts" / "screenshots"


# Short server timings. A reload must finish well within the grace period.
GRACE_SECONDS = 3


FAST_SETTINGS: dict[str, object] = {
    "LEAVE_GRACE_SECONDS": GRACE_SECONDS,
    "SOCKETIO_PING_INTERVAL": 2,
    "SOCKETIO_PING_TIMEOUT": 2,
    "SEND_RATE": 50,
    "SEND_BURST": 100,
    "CREATES_PER_MINUTE": 1000,
    "JOIN_FAILURES_PER_MINUTE": 1000,
    "JOINS_PER_MINUTE": 1000,
    "ROOMS_PER_ADDRESS": 1000,
}


def start_live_server(settings: dict[str, object] | None = None) -> LiveServer:
    """Start ``python -m chatapp`` with the fast settings plus ``settings``."""
    return LiveServer({**FAST_SETTINGS, **(settings or {})}).start()


def room_code(page: Page) -> str:
    """Return the code of the room the page shows."""
    match = re.search(r"/room/([A-Z]+)$", page.url)
    assert match is not None, page.url
    return match.group(1)


def wait_connected(page: Page) -> None:
    """Wait until the room page says it is connected."""
    expect(page.get_by_role("status").filter(has_text="Connected")).to_be_visible()


def create_room(page: Page, base_url: str, name: str) -> str:
    """Open the lobby, type ``name``, create a room; return its code once connected."""
    page.goto(base_url + "/")
    page.get_by_label("Your name").fill(name)
    page.get_by_role("button", name="Create a room").click()
    page.wait_for_url(re.compile(r"/room/[A-Z]+$"))
    wait_connected(page)
    return room_code(page)


def join_room(page: Page, base_url: str, code: str, name: str) -> None:
    """Open the invite link of room ``code``, type ``name``, join; wait until connected."""
    page.goto(f"{base_url}/?code={code}")
    expect(page.get_by_label("Room code")).to_have_value(code)
    page.get_by_label("Your name").fill(name)
    page.get_by_role("button", name="Join room").click()
    page.wait_for_url(re.compile(rf"/room/{code}$"))
    wait_connected(page)


def send(page: Page, text: str) -> None:
    """Type ``text`` in the composer and press Enter."""
    box = page.get_by_role("textbox", name="Message")
    box.fill(text)
    box.press("Enter")


def log(page: Page) -> Any:
    """The message log."""
    return page.get_by_role("log", name="Messages")


def pending(page: Page) -> Any:
    """The list of lines not sent yet."""
    return page.get_by_role("list", name="Messages not sent yet")


def chat_texts(page: Page) -> list[str]:
    """The texts of the chat lines in the log, oldest first."""
    return log(page).locator(".msg--chat .msg-text").all_inner_texts()


def run_axe(page: Page) -> list[dict[str, Any]]:
    """Run axe-core on the page; return its violations."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        # Evaluated, not added as a <script> element, so the CSP does not apply.
        page.evaluate(AXE_JS.read_text(encoding="utf-8"))
    return page.evaluate(
        """async () => {
            const result = await window.axe.run(document, {
                runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa",
                                                "best-practice"]},
            });
            return result.violations.map((v) => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.map((n) => n.target.join(" ") + " :: " + n.failureSummary),
            }));
        }"""
    )


def screenshot(page: Page, name: str) -> Path:
    """Save a full-page screenshot as ``test-artifacts/screenshots/<name>.png``."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
