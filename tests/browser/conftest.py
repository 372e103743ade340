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

from tests.support.browser import start_live_server
from tests.support.liveserver import LiveServer

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


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


@pytest.fixture(scope="module")
def browser_server(browser: Browser) -> Iterator[LiveServer]:
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
