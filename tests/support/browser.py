"""Real headless Chromium for page tests: the distribution's browser, driven by Playwright
(which never downloads one here), and axe-core (npm, installed by run-tests.sh) for
accessibility checks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SERIOUS = ("serious", "critical")


def axe_script() -> Path:
    """axe.min.js from the test prefix's node_modules (run-tests.sh installs it)."""
    prefix = Path(os.environ.get("TEAMHUB_TEST_RUNTIME", "/opt/teamhub-test/runtime")).parent
    return prefix / "test-node" / "node_modules" / "axe-core" / "axe.min.js"


def output_dir(name: str) -> Path:
    """Where a test leaves files for a person to look at (screenshots): TEAMHUB_TEST_OUTPUT
    (default /tmp/teamhub-test-output), then NAME."""
    path = Path(os.environ.get("TEAMHUB_TEST_OUTPUT", "/tmp/teamhub-test-output")) / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def screenshots(page: Any, folder: Path, stem: str) -> list[Path]:
    """PAGE at desktop width and at 360 px (a phone), full length: FOLDER/STEM-{desktop,360}.png."""
    made = []
    for label, width in (("desktop", 1280), ("360", 360)):
        page.set_viewport_size({"width": width, "height": 800})
        path = folder / f"{stem}-{label}.png"
        page.screenshot(path=str(path), full_page=True)
        made.append(path)
    return made


def login(page: Any, hub_url: str, name: str, password: str, next_path: str = "/hub/home") -> None:
    """Log NAME in through the hub's HTML form, then land on NEXT_PATH."""
    page.goto(f"{hub_url}/hub/login?next={next_path}")
    page.fill("#username_input", name)
    page.fill("#password_input", password)
    page.click("#login_submit")
    page.wait_for_load_state()


def serious_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on PAGE as it is now.

    axe runs through the DevTools protocol (`evaluate`), not as a script tag, so the page's
    own Content-Security-Policy stays as it is."""
    page.evaluate(axe_script().read_text())
    result = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    return [{"id": v["id"], "impact": v["impact"], "help": v["help"],
             "nodes": [n["target"] for n in v["nodes"]][:5]}
            for v in result["violations"] if v["impact"] in SERIOUS]
