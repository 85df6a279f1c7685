"""Browser tier: headless Chromium (Debian's ``/usr/bin/chromium``, never a downloaded build)
driven by Playwright against the real server process.

``server`` is one healthmed process per test module on a private redis-server. ``page`` is a
fresh page whose requests to any origin but the server are aborted and recorded in
``page.blocked`` (route interception), so a test proves a page works with no internet.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import ServerProcess, private_server

CHROMIUM = os.environ.get("HEALTHMED_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with private_server(Path(tmp_path_factory.mktemp("server"))) as proc:
        yield proc


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing (.ci/run installs Debian's chromium)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any, server: ServerProcess) -> Iterator[Any]:
    context = browser.new_context()
    page = context.new_page()
    blocked: list[str] = []

    def only_the_server(route: Any) -> None:
        url = route.request.url
        if url.startswith(server.url + "/") or url == server.url:
            route.continue_()
        else:
            blocked.append(url)
            route.abort()

    context.route("**/*", only_the_server)
    page.blocked = blocked
    yield page
    context.close()
