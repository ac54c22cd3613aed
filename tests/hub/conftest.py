"""What the hub tests share: hubs made by `hub_factory` are cleaned up after the module."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from support.browser import CHROMIUM, CHROMIUM_ARGS
from support.hub import HubFactory, HubProcess


@pytest.fixture(scope="module")
def hub_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubFactory]:
    """HubProcess(**kwargs) in a fresh temp folder; each one made is stopped and its users,
    processes and folders removed when the module's tests are done (even if its start or
    the module's own setup failed)."""
    made: list[HubProcess] = []

    def make(**kwargs: Any) -> HubProcess:
        hub = HubProcess(tmp_path_factory.mktemp("hub"), **kwargs)
        made.append(hub)
        return hub

    yield make
    problems = []
    for hub in reversed(made):
        try:
            hub.cleanup()
        except Exception as exc:  # clean up the others before reporting it
            problems.append(exc)
    if problems:
        raise problems[0]


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """The distribution's headless Chromium through Playwright, one per module."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
