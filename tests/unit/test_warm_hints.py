"""A page opened at a notebook's URL starts that notebook's kernel's warm parent
(teamhub.envs.warm_hints): which pages open a notebook, and the page config hook chained
after JupyterHub's. The whole path on a real server: tests/hub/test_warm_kernels.py."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from teamhub.envs.warm_hints import (
    WARM_AHEAD_SETTING,
    hint_pages,
    notebook_of_page,
    page_hook,
)

BASE = "/user/ann/"


def page(path: str, *args: str, **kwargs: str) -> Any:
    """A handler as tornado makes it for PATH: the route's groups in path_args (unnamed)
    or path_kwargs (named, as jupyterlab_server's Lab page route has them)."""
    return SimpleNamespace(request=SimpleNamespace(path=BASE + path), base_url=BASE,
                           path_args=list(args), path_kwargs=kwargs)


@pytest.mark.parametrize(("handler", "notebook"), [
    (page("lab/tree/a/b.ipynb", mode="lab", workspace=None, tree="/tree/a/b.ipynb"),
     "a/b.ipynb"),
    (page("lab/workspaces/w/tree/n.ipynb", mode="lab", workspace="/workspaces/w",
          tree="/tree/n.ipynb"), "n.ipynb"),
    (page("doc/tree/n.ipynb", mode="doc", tree="/tree/n.ipynb"), "n.ipynb"),
    (page("notebooks/x/y z.ipynb", "/x/y z.ipynb"), "x/y z.ipynb"),
    (page("lab/tree/x/../../etc/x.ipynb", tree="/tree/x/../../etc/x.ipynb"),
     "../etc/x.ipynb"),  # left to the containment check (notebook_kernel.inside)
    (page("lab", mode="lab", workspace=None, tree=None), None),
    (page("lab/tree/folder", mode="lab", tree="/tree/folder"), None),
    (page("lab/tree/script.py", mode="lab", tree="/tree/script.py"), None),
    (page("lab/tree/RTC:n.ipynb", mode="lab", tree="/tree/RTC:n.ipynb"), None),
    (page("tree/n.ipynb", "/n.ipynb"), None),  # Notebook 7's file tree (it redirects)
    (page("edit/n.ipynb", "/n.ipynb"), None),  # the notebook's JSON in an editor
])
def test_the_notebook_a_page_opens_at(handler: Any, notebook: str | None) -> None:
    assert notebook_of_page(handler) == notebook


class Ahead:
    """What WarmAhead.intended is asked for (the parents themselves: the hub test)."""

    def __init__(self, known: set[str]) -> None:
        self.known, self.asked = known, []

    def intended(self, name: str) -> bool:
        self.asked.append(name)
        if name not in self.known:
            raise KeyError(name)
        return True


def notebook(path: Path, kernel: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"cells": [], "metadata": {"kernelspec": {
        "name": kernel, "display_name": kernel}}, "nbformat": 4, "nbformat_minor": 5},
        sort_keys=True, indent=1))


def render(tmp_path: Path, settings: dict[str, Any], handler: Any) -> dict[str, Any]:
    """Render a page's config through the hooks of SETTINGS, in a running loop, and let
    the hint that schedules run."""
    handler.settings = settings
    handler.contents_manager = SimpleNamespace(root_dir=str(tmp_path))
    handler.log = logging.getLogger("test")

    async def go() -> dict[str, Any]:
        config = settings["page_config_hook"](handler, {"page": True})
        for _ in range(50):  # the hint reads the file in an executor
            await asyncio.sleep(0.02)
        return config

    return asyncio.run(go())


def test_the_hook_hints_the_notebooks_kernel_after_the_hook_before_it(
        tmp_path: Path) -> None:
    notebook(tmp_path / "p" / "env.ipynb", "env-x")
    notebook(tmp_path / "p" / "gone.ipynb", "no-such-env")
    ahead = Ahead({"env-x"})
    calls = []

    def jupyterhubs(handler: Any, config: dict[str, Any]) -> dict[str, Any]:
        calls.append(handler)
        return {**config, "hubUser": "ann"}

    settings: dict[str, Any] = {"page_config_hook": jupyterhubs, WARM_AHEAD_SETTING: ahead}
    hint_pages(settings)
    hint_pages(settings)  # chained once, however often the server asks
    lab = page("lab/tree/p/env.ipynb", tree="/tree/p/env.ipynb")
    assert render(tmp_path, settings, lab) == {"page": True, "hubUser": "ann"}
    assert calls == [lab] and ahead.asked == ["env-x"]
    # A kernel that is not here, a missing notebook, a path out of the files, a page
    # that opens none: the page renders the same, and nothing more is started.
    for path in ("p/gone.ipynb", "p/none.ipynb", "../../x.ipynb"):
        handler = page(f"lab/tree/{path}", tree=f"/tree/{path}")
        assert render(tmp_path, settings, handler) == {"page": True, "hubUser": "ann"}
    assert render(tmp_path, settings, page("lab", tree=None))["hubUser"] == "ann"
    assert ahead.asked == ["env-x", "no-such-env"]


def test_warm_kernels_off_reads_no_notebook(tmp_path: Path) -> None:
    notebook(tmp_path / "env.ipynb", "env-x")
    settings: dict[str, Any] = {}
    hint_pages(settings)  # no hook before it: the page config as it is
    handler = page("lab/tree/env.ipynb", tree="/tree/env.ipynb")
    assert render(tmp_path, settings, handler) == {"page": True}


def test_the_hook_is_chained_on_the_hook_that_is_set() -> None:
    first = page_hook(None)
    settings: dict[str, Any] = {"page_config_hook": first}
    hint_pages(settings)
    assert settings["page_config_hook"] is first
