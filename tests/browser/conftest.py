"""Fixtures for the browser tests: Debian's chromium, a live server, pages that fail on errors.

Playwright's sync API drives ``/usr/bin/chromium`` (no browser download).
Every page opened through ``open_context`` records console errors and
uncaught exceptions (CSP violations are console errors); a test fails at
teardown if any was seen that it did not allow with ``allow_console``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser
from playwright.sync_api import BrowserContext
from playwright.sync_api import expect
from playwright.sync_api import Page
from playwright.sync_api import Playwright
from playwright.sync_api import sync_playwright

from tests.support.liveserver import LiveServer
from tests.support.liveserver import REPO_ROOT

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
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

expect.set_options(timeout=10_000)


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    """Playwright's sync API, or skip when Debian's chromium is missing."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (./dev setup --test)")
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """One headless chromium for the whole run."""
    browser = playwright.chromium.launch(
        executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
    )
    yield browser
    browser.close()


def start_live_server(settings: dict[str, object] | None = None) -> LiveServer:
    """Start ``python -m chatapp`` with the fast settings plus ``settings``."""
    return LiveServer({**FAST_SETTINGS, **(settings or {})}).start()


@pytest.fixture(scope="module")
def server(browser: Browser) -> Iterator[LiveServer]:
    """One live server for a module whose tests do not restart it."""
    live = start_live_server()
    yield live
    live.close()


class PageErrors:
    """Console errors and uncaught exceptions seen on the pages of one test."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.allowed: list[re.Pattern[str]] = []

    def watch(self, page: Page) -> None:
        """Record the errors of ``page``."""
        page.on("console", lambda msg: self._console(page, msg.type, msg.text))
        page.on("pageerror", lambda error: self.errors.append(f"{page.url}: pageerror {error}"))

    def _console(self, page: Page, kind: str, text: str) -> None:
        if kind == "error" and not any(p.search(text) for p in self.allowed):
            self.errors.append(f"{page.url}: console.error {text}")

    def allow(self, pattern: str) -> None:
        """Allow console errors matching the regular expression ``pattern``."""
        self.allowed.append(re.compile(pattern))


@pytest.fixture
def page_errors() -> PageErrors:
    """The errors seen in this test's pages."""
    return PageErrors()


@pytest.fixture
def allow_console(page_errors: PageErrors) -> Callable[[str], None]:
    """Allow console errors that match a pattern (e.g. the network drop a test causes)."""
    return page_errors.allow


ContextFactory = Callable[..., BrowserContext]


@pytest.fixture
def open_context(browser: Browser, page_errors: PageErrors) -> Iterator[ContextFactory]:
    """Open browser contexts (one person each) whose pages fail the test on errors."""
    contexts: list[BrowserContext] = []

    def make(**options: Any) -> BrowserContext:
        options.setdefault("viewport", {"width": 1280, "height": 800})
        context = browser.new_context(**options)
        context.set_default_timeout(10_000)
        context.on("page", page_errors.watch)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()
    assert page_errors.errors == [], "errors in the browser:\n" + "\n".join(page_errors.errors)


# -- what a person does ---------------------------------------------------------


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
