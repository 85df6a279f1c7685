"""Browser tier: headless Chromium (Debian's ``/usr/bin/chromium``, never a downloaded build)
driven by Playwright against the real server process.

``server`` is one healthmed process per test module on a private redis-server, with short
access tokens (``ACCESS_TTL_SECONDS``) so that pages live through token refreshes and the
websocket's close at expiry. ``page`` is a fresh page whose requests to any origin but the
server are aborted and recorded in ``page.blocked`` (route interception), so a test proves a
page works with no internet. ``new_page(**options)`` opens such a page as a new user (its own
context: cookies, storage) in pt-BR and São Paulo time, and fails the test at teardown if any
of its pages logged a console error (CSP violations included), threw an uncaught exception or
tried to reach another origin.
"""

from __future__ import annotations

import os
import re
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Route

from tests.e2e.conftest import unique  # noqa: F401  (fresh numbers for accounts, reused)
from tests.support import ROOT, ServerProcess, private_server, timeout

CHROMIUM = os.environ.get("HEALTHMED_CHROMIUM", "/usr/bin/chromium")
AXE = Path(os.environ.get("HEALTHMED_AXE", ROOT / ".cache/axe/node_modules/axe-core/axe.min.js"))
SCREENSHOTS = os.environ.get("HEALTHMED_SCREENSHOTS", "")
"""A folder: when set, tests that take screenshots of the main pages write them there."""
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
ACCESS_TTL_SECONDS = 20
"""Access-token lifetime on the tier's server: short, so that every test also lives through the
client's token refreshes and the websocket's 4401 close at expiry, and resyncs after it."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with private_server(
        Path(tmp_path_factory.mktemp("server")),
        HEALTHMED_ACCESS_TTL_SECONDS=str(ACCESS_TTL_SECONDS),
    ) as proc:
        yield proc


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium per test module. Not per session: the sync Playwright driver holds a
    running event loop while it is open, and later tiers' ``asyncio.run()`` would fail."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing (.ci/system-deps installs it)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-dev-shm-usage", "--lang=pt-BR"],
            # The UI language of native widgets (date pickers, the file chooser) in screenshots.
            env={**os.environ, "LANGUAGE": "pt_BR", "LANG": "pt_BR.UTF-8"},
        )
        yield browser
        browser.close()


def _only(server: ServerProcess, blocked: list[str]) -> Callable[[Route], None]:
    def only_the_server(route: Route) -> None:
        url = route.request.url
        if url.startswith(server.url + "/") or url == server.url:
            route.continue_()
        else:
            blocked.append(url)
            route.abort()

    return only_the_server


@pytest.fixture
def page(browser: Any, server: ServerProcess) -> Iterator[Any]:
    context = browser.new_context()
    page = context.new_page()
    blocked: list[str] = []
    context.route("**/*", _only(server, blocked))
    page.blocked = blocked
    yield page
    context.close()


_HTTP_ERROR = re.compile(r"^Failed to load resource: the server responded with a status of (\d+)")


class PageLog:
    """What went wrong in a page: console errors, uncaught exceptions, other origins reached.

    Chromium logs every 4xx answer to a fetch as a console error; a test that provokes one on
    purpose (an answer the API documents) names it with :func:`allow_http_error`."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.blocked: list[str] = []
        self.allowed: list[tuple[int, re.Pattern[str]]] = []

    def attach(self, page: Page) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))

    def _console(self, msg: ConsoleMessage) -> None:
        if msg.type not in ("error", "assert"):
            return
        url = msg.location.get("url", "")
        http = _HTTP_ERROR.match(msg.text)
        if http and any(
            int(http.group(1)) == status and path.search(url) for status, path in self.allowed
        ):
            return
        self.errors.append(f"console.{msg.type}: {msg.text} ({url})")


_LOGS: weakref.WeakKeyDictionary[Page, PageLog] = weakref.WeakKeyDictionary()


def allow_http_error(page: Page, status: int, path: str) -> None:
    """From now on, an HTTP ``status`` answer for a URL matching ``path`` is expected there."""
    _LOGS[page].allowed.append((status, re.compile(path)))


@pytest.fixture
def new_page(browser: Browser, server: ServerProcess) -> Iterator[Callable[..., Page]]:
    """Open a page as a new user: ``new_page(**context_options)`` (defaults: pt-BR, São Paulo
    time, desktop size, the server as base URL, axe-core loaded when installed)."""
    contexts: list[tuple[BrowserContext, PageLog]] = []

    def open_page(**options: Any) -> Page:
        settings: dict[str, Any] = {
            "base_url": server.url,
            "locale": "pt-BR",
            "timezone_id": "America/Sao_Paulo",
            "viewport": DESKTOP,
            "accept_downloads": True,
            **options,
        }
        context = browser.new_context(**settings)
        context.set_default_timeout(timeout(15) * 1000)
        if AXE.exists():
            # An init script is injected by the DevTools protocol: the page's CSP does not
            # apply to it, so the pages keep their real policy while axe runs.
            context.add_init_script(path=str(AXE))
        log = PageLog()
        context.route("**/*", _only(server, log.blocked))
        contexts.append((context, log))
        page = context.new_page()
        log.attach(page)
        _LOGS[page] = log
        return page

    yield open_page
    errors = [e for _, log in contexts for e in log.errors]
    errors += [f"reached another origin: {url}" for _, log in contexts for url in log.blocked]
    for context, _ in contexts:
        context.close()
    assert errors == [], "the pages logged errors:\n" + "\n".join(errors)


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's WCAG 2.1 A/AA violations on the page as it is now."""
    if not AXE.exists():
        pytest.fail(f"axe-core is not installed at {AXE}: run `make axe` (make test does)")
    result = page.evaluate(
        """async () => {
            const r = await axe.run(document, {
                runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]},
            });
            return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.map(n => n.target.join(" ")).slice(0, 5)}));
        }"""
    )
    return list(result)


def screenshot(page: Page, name: str) -> None:
    """Save desktop and phone screenshots of the page when HEALTHMED_SCREENSHOTS is set."""
    if not SCREENSHOTS:
        return
    folder = Path(SCREENSHOTS)
    folder.mkdir(parents=True, exist_ok=True)
    size = page.viewport_size or DESKTOP
    for label, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(viewport)
        page.wait_for_timeout(150)
        page.screenshot(path=str(folder / f"{name}-{label}.png"), full_page=label == "desktop")
    page.set_viewport_size(size)
