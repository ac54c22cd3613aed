"""Test layers: tests/unit (pure logic), tests/hub (real hub, proxy, users), tests/system (OS).

Everything that touches the OS needs root; run the suite with ./run-tests.sh.
"""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root: creates Linux users (run ./run-tests.sh as root)")
    for item in items:
        if "system" in item.keywords or "hub" in item.keywords:
            item.add_marker(skip)
