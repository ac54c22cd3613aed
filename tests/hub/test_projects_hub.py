"""Project folders through real servers and kernels: what users can do in JupyterLab.

One hub for the module; users log in through the form and work through the
Jupyter contents API and kernels, exactly as JupyterLab does.
"""

from __future__ import annotations

import json

import pytest
from support import unixsocket
from support.client import Browser
from support.hub import PASSWORD, HubFactory, HubProcess, unique, world_dir
from support.postgres import db_toml

pytestmark = [pytest.mark.hub, pytest.mark.system]

NOTEBOOK = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


@pytest.fixture(scope="module")
def hub(hub_factory: HubFactory, module_db_url: str) -> HubProcess:
    # Run on each backend (db.url: the sqlite files, then PostgreSQL).
    root = world_dir("teamhub-projroot-")
    h = hub_factory(extra_toml=f'[projects]\nroot = "{root}"\n' + db_toml(module_db_url))
    h.scratch.append(root)
    h.projects_root = root
    h.a, h.b, h.r, h.o = unique("wa"), unique("wb"), unique("rd"), unique("out")
    for name in (h.a, h.b, h.r, h.o):
        h.add_user(name, PASSWORD)
    # Granted before anyone has a Linux account: the spawner applies the ACLs.
    h.teamhub("group", "create", "team")
    h.teamhub("project", "create", "data", "--writers", f"{h.a},{h.b}",
              "--readers", h.r)
    h.start()
    return h


class User:
    def __init__(self, hub: HubProcess, name: str) -> None:
        self.name = name
        self.b = Browser(hub.url)
        assert self.b.login(name, PASSWORD).status_code == 302
        self.b.start_server(name)
        assert self.b.open_lab(name).status_code == 200
        self.kernel = self.b.new_kernel(name)

    def _headers(self) -> dict[str, str]:
        return {"X-XSRFToken": self.b._xsrf(f"/user/{self.name}/")}

    def api(self, method: str, path: str, body: object | None = None) -> int:
        resp = self.b.http.request(method, f"{self.b.base}/user/{self.name}/api/contents/{path}",
                                   json=body, headers=self._headers(), timeout=30)
        return resp.status_code

    def get(self, path: str) -> dict:
        resp = self.b.get(f"/user/{self.name}/api/contents/{path}")
        return resp.json() if resp.status_code == 200 else {"status": resp.status_code}

    def run(self, code: str) -> dict[str, str]:
        return self.b.execute(self.name, self.kernel, code)


@pytest.fixture(scope="module")
def users(hub: HubProcess) -> dict[str, User]:
    return {k: User(hub, getattr(hub, k)) for k in ("a", "b", "r", "o")}


def _nb(source: str) -> dict:
    cells = [{"cell_type": "markdown", "metadata": {}, "source": source, "id": "c1"}]
    return {"type": "notebook", "content": {**NOTEBOOK, "cells": cells}}


def test_writers_share_a_notebook_and_its_checkpoints(hub: HubProcess, users) -> None:
    a, b = users["a"], users["b"]
    assert [e["name"] for e in a.get("projects")["content"]] == ["data"]
    assert a.api("PUT", "projects/data/x.ipynb", _nb("from a")) in (200, 201)
    assert b.api("POST", "projects/data/x.ipynb/checkpoints") == 201
    assert b.api("PUT", "projects/data/x.ipynb", _nb("from b")) == 200
    assert a.get("projects/data/x.ipynb")["content"]["cells"][0]["source"] == "from b"
    assert a.api("POST", "projects/data/x.ipynb/checkpoints") == 201


def test_reader_reads_but_cannot_write_and_outsider_sees_nothing(hub: HubProcess,
                                                                 users) -> None:
    r, o = users["r"], users["o"]
    assert r.get("projects/data/x.ipynb")["content"]["cells"][0]["source"] == "from b"
    assert r.api("PUT", "projects/data/x.ipynb", _nb("from r")) >= 400
    assert r.api("PUT", "projects/data/new.ipynb", _nb("from r")) >= 400
    assert users["a"].get("projects/data/x.ipynb")["content"]["cells"][0]["source"] == "from b"
    assert o.get("projects").get("status") == 404
    out = o.run(f"import os; os.listdir({str(hub.projects_root / 'data')!r})")
    assert out["error"].startswith("PermissionError")


def test_revoke_cuts_off_a_running_kernel(hub: HubProcess, users) -> None:
    r = users["r"]
    path = str(hub.projects_root / "data" / "x.ipynb")
    out = r.run(f"print(len(open({path!r}).read()) > 0)")
    assert out["stdout"] == "True\n", out
    hub.teamhub("project", "revoke", "data", hub.r)
    assert r.run(f"open({path!r}).read()")["error"].startswith("PermissionError")
    assert r.get("projects").get("status") == 404 or r.get("projects")["content"] == []


def test_group_grant_covers_members_added_later_and_not_removed_ones(hub: HubProcess,
                                                                      users) -> None:
    o = users["o"]
    path = str(hub.projects_root / "data" / "x.ipynb")
    hub.teamhub("project", "grant", "data", "@team", "--read")
    assert o.run(f"open({path!r}).read()")["error"].startswith("PermissionError")
    hub.teamhub("group", "add", "team", hub.o)
    assert o.run(f"print(len(open({path!r}).read()) > 0)")["stdout"] == "True\n"
    assert [e["name"] for e in o.get("projects")["content"]] == ["data"]
    hub.teamhub("group", "remove", "team", hub.o)
    assert o.run(f"open({path!r}).read()")["error"].startswith("PermissionError")
    show = json.loads(hub.teamhub("project", "show", "data", "--json").stdout)
    assert show["effective"] == {hub.a: "write", hub.b: "write"}


def test_hub_groups_mirror_the_store(hub: HubProcess, users) -> None:
    hub.teamhub("group", "add", "team", hub.b)
    hub.teamhub("group", "create", "other")
    url = (hub.state / "hub_api_url").read_text().strip()
    token = (hub.state / "cli_api_token").read_text().strip()
    resp = unixsocket.session().get(f"{url}/groups", headers={"Authorization": f"token {token}"},
                                    timeout=30)
    assert {g["name"]: g["users"] for g in resp.json()} == {"team": [hub.b], "other": []}
    hub.teamhub("group", "delete", "other")
    resp = unixsocket.session().get(f"{url}/groups", headers={"Authorization": f"token {token}"},
                                    timeout=30)
    assert [g["name"] for g in resp.json()] == ["team"]


def test_archive_makes_the_writers_read_only(hub: HubProcess, users) -> None:
    a = users["a"]
    hub.teamhub("project", "archive", "data")
    assert a.api("PUT", "projects/data/x.ipynb", _nb("late")) >= 400
    assert a.get("projects/data/x.ipynb")["content"]["cells"][0]["source"] == "from b"
    folder = str(hub.projects_root / "data")
    out = a.run(f"open({folder + '/y.txt'!r}, 'w')")
    assert out["error"].startswith("PermissionError")
