"""Hints that a kernel is about to start, so its warm parent starts first (run by
teamhub.serverext in the user's server, where warm kernels are on).

Three ways a server learns which environment's kernel comes next before it is asked
for it (teamhub.envs.warm_ahead starts the parent, WarmAhead.intended):
- `POST <base>/teamhub/api/warm-parents` with `{"kernel": NAME}`: teamhub's JupyterLab
  extension, when the pointer rests on NAME's launcher card or NAME is chosen in the
  kernel dialog;
- the same with `{"notebook": PATH}`: the pointer rests on a notebook in the file
  browser; the kernel is the one the notebook's metadata names
  (teamhub.envs.notebook_kernel);
- a page that opens a notebook by its URL (JupyterLab's `<base>/lab/tree/PATH`,
  Notebook 7's `<base>/notebooks/PATH`: a bookmark, a link in a message, the hub's
  `user-redirect`): JupyterLab needs a second or more to load before it asks for the
  notebook's kernel, and the page's own request is the earliest sign. Read from the
  page config hook (`page_config_hook`, which jupyterlab_server and notebook call for
  every page they render), chained after the one JupyterHub's extension sets.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from tornado import web
from tornado.ioloop import IOLoop

from .notebook_kernel import inside, kernel_named_in
from .warm_ahead import WarmAhead

WARM_AHEAD_SETTING = "teamhub_warm_ahead"  # the server's WarmAhead, where warm kernels are on
NOTEBOOK_SUFFIX = ".ipynb"


async def kernel_of(settings: dict[str, Any], contents_manager: Any,
                    notebook: str) -> str | None:
    """The kernel NOTEBOOK (a contents-API path) names, read off the loop; None where warm
    kernels are off (nothing would use it), the contents are not files, or the notebook
    names none. HTTPError 404 where the path leads out of the server's root folder."""
    if settings.get(WARM_AHEAD_SETTING) is None:
        return None
    root = getattr(contents_manager, "root_dir", None)
    if not isinstance(root, str):
        return None  # contents elsewhere than in files: nothing to read ahead
    path = inside(root, notebook)
    if path is None:
        raise web.HTTPError(404, f"{notebook!r} is outside this server's files")
    return await IOLoop.current().run_in_executor(None, kernel_named_in, path)


def intended(settings: dict[str, Any], log: Any, name: str) -> bool:
    """Start NAME's parent (WarmAhead.intended); KeyError for a kernel not here."""
    ahead: WarmAhead | None = settings.get(WARM_AHEAD_SETTING)
    if ahead is None:
        return False
    try:
        return ahead.intended(name)
    except KeyError:
        raise
    except Exception as exc:  # noqa: BLE001 - a broken spec: its start will say so
        log.warning("teamhub: no warm parent for %s ahead: %s", name, exc)
        return False


class WarmParentHintHandler(APIHandler):
    """`POST {"kernel": NAME}`: a kernel of NAME is about to be started (teamhub's Lab
    extension, when the pointer rests on its launcher card or it is chosen in the kernel
    dialog); its warm parent starts now. `POST {"notebook": PATH}`: the notebook at PATH
    (a contents-API path) is about to be opened (the pointer rests on it in the file
    browser); the parent of the kernel its metadata names starts now.
    Answers which kernel and whether its parent runs or starts (false where warm kernels
    are off, the kernel has no parent, too many hinted parents are unused, or the
    notebook names no kernel that is here; the kernel is null where the notebook names
    none or, warm kernels being off, was not read)."""

    auth_resource = "kernels"

    @web.authenticated
    @authorized
    async def post(self) -> None:
        body = self.get_json_body() or {}
        body = body if isinstance(body, dict) else {}
        name, notebook = body.get("kernel"), body.get("notebook")
        if not isinstance(notebook, str) or not notebook:
            notebook = None
        if notebook is not None:
            name = await kernel_of(self.settings, self.contents_manager, notebook)
            if name is None:
                self.finish({"notebook": notebook, "kernel": None, "warm": False})
                return
        elif not isinstance(name, str) or not name:
            raise web.HTTPError(400, 'send {"kernel": "<kernel name>"} or '
                                     '{"notebook": "<path>"}')
        warm = False
        try:
            warm = intended(self.settings, self.log, name)
        except KeyError:
            if notebook is None:
                raise web.HTTPError(404, f"there is no kernel named {name!r}") from None
        self.finish({**({"notebook": notebook} if notebook else {}),
                     "kernel": name, "warm": warm})


def notebook_of_page(handler: Any) -> str | None:
    """The notebook (contents-API path) the page HANDLER renders opens at, if any:
    JupyterLab's `lab[/workspaces/W]/tree/PATH` (its `tree` argument) and Notebook 7's
    `notebooks/PATH` (its one positional argument); a PATH that is no notebook is none."""
    kwargs = getattr(handler, "path_kwargs", None) or {}
    args = getattr(handler, "path_args", None) or []
    if kwargs.get("tree"):
        path = str(kwargs["tree"]).removeprefix("/tree/")
    elif not kwargs and len(args) == 1 and isinstance(args[0], str) \
            and _page_of(handler).startswith("notebooks/"):
        path = args[0]
    else:
        return None
    path = path.strip("/")
    if not path.endswith(NOTEBOOK_SUFFIX) or ":" in path.split("/", 1)[0]:
        return None  # a folder, another file, or another drive's (`drive:path`)
    return posixpath.normpath(path)


def _page_of(handler: Any) -> str:
    """HANDLER's request path below the server's base URL."""
    path, base = handler.request.path, getattr(handler, "base_url", "/")
    return path[len(base):] if path.startswith(base) else ""


async def warm_for_notebook(settings: dict[str, Any], contents_manager: Any, log: Any,
                            notebook: str) -> None:
    """Start the parent of NOTEBOOK's kernel; a page is rendered whatever comes of it."""
    try:
        name = await kernel_of(settings, contents_manager, notebook)
        if name is not None and intended(settings, log, name):
            log.debug("teamhub: warm parent of %s ahead of %s", name, notebook)
    except (web.HTTPError, KeyError):
        pass  # a page at a path out of the files, or naming a kernel not here: no hint
    except Exception as exc:  # noqa: BLE001 - only a hint: the page must not fail
        log.warning("teamhub: no warm parent ahead of %s: %s", notebook, exc)


PageConfigHook = Callable[[Any, dict[str, Any]], dict[str, Any]]


def page_hook(before: PageConfigHook | None) -> PageConfigHook:
    """A page config hook that hints the notebook a page opens at, then runs BEFORE (the
    hook that was set, JupyterHub's) as it would have run."""

    def hook(handler: Any, page_config: dict[str, Any]) -> dict[str, Any]:
        notebook = notebook_of_page(handler)
        settings = handler.settings
        if notebook is not None and settings.get(WARM_AHEAD_SETTING) is not None:
            IOLoop.current().add_callback(warm_for_notebook, settings,
                                          handler.contents_manager, handler.log, notebook)
        return before(handler, page_config) if before is not None else page_config

    hook.teamhub_page_hook = True  # type: ignore[attr-defined]
    return hook


def hint_pages(settings: dict[str, Any]) -> None:
    """Chain page_hook onto SETTINGS' page config hook (once every extension has set its
    own: JupyterHub's is set while its extension initializes)."""
    before = settings.get("page_config_hook")
    if getattr(before, "teamhub_page_hook", False):
        return
    settings["page_config_hook"] = page_hook(before)
