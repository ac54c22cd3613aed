"""Project names, grants in the store, and who may therefore do what (pure logic)."""

from __future__ import annotations

from pathlib import Path

import pytest

from teamhub.accounts.groups import GroupStore
from teamhub.accounts.store import AccountStore
from teamhub.errors import AccountError
from teamhub.projects.model import (
    Principal,
    Project,
    ProjectError,
    ProjectStore,
    check_project_name,
    effective,
    parse_principals,
)

PW = "long enough password"


@pytest.mark.parametrize("name", ["data", "a", "ml-2024_q1", "x" * 64])
def test_good_project_names_are_kept_as_they_are(name: str) -> None:
    assert check_project_name(name) == name


@pytest.mark.parametrize("name, why", [
    ("Data", "upper-case"), ("..", "invalid"), ("a/b", "invalid"), ("/etc", "invalid"),
    ("%2e%2e", "invalid"), ("x" * 65, "too long"), ("", "invalid"), ("-a", "invalid"),
    ("1abc", "invalid"), (".trash", "invalid"), ("a b", "invalid"), ("dätä", "invalid"),
    ("a\n", "invalid"), ("x" * 10000, "too long"),
])
def test_bad_project_names_are_refused_with_the_rule(name: str, why: str) -> None:
    with pytest.raises(ProjectError, match=why) as info:
        check_project_name(name)
    assert len(str(info.value)) < 200


def test_principals_parse_users_and_groups() -> None:
    assert parse_principals(" Ada, @Data-Team ,,") == [Principal("user", "ada"),
                                                       Principal("group", "data-team")]
    assert parse_principals(None) == []
    with pytest.raises(AccountError):
        parse_principals("../x")
    with pytest.raises(AccountError):
        parse_principals("@../x")


def _project(grants: dict[Principal, str], archived: bool = False) -> Project:
    return Project("p", "", archived, "now", grants)


U, G = (lambda n: Principal("user", n)), (lambda n: Principal("group", n))


def test_effective_expands_groups_and_write_beats_read() -> None:
    groups = {"team": ["bob", "cy"], "readers": ["ada", "dee"]}
    p = _project({U("ada"): "write", G("team"): "read", G("readers"): "read", U("cy"): "write"})
    assert effective(p, groups, ["ada", "bob", "cy", "dee"]) == {
        "ada": "write", "bob": "read", "cy": "write", "dee": "read"}


def test_effective_ignores_unknown_users_and_groups() -> None:
    p = _project({U("ghost"): "write", G("gone"): "write", U("ada"): "read"})
    assert effective(p, {}, ["ada"]) == {"ada": "read"}


def test_archived_project_is_read_only_for_everyone() -> None:
    p = _project({U("ada"): "write", G("team"): "write", U("cy"): "read"}, archived=True)
    assert effective(p, {"team": ["bob"]}, ["ada", "bob", "cy", "zed"]) == {
        "ada": "read", "bob": "read", "cy": "read"}


@pytest.fixture
def stores(tmp_path: Path) -> tuple[ProjectStore, GroupStore]:
    accounts = AccountStore(tmp_path / "accounts.sqlite")
    for name in ("ada", "bob"):
        accounts.add(name, PW)
    groups = GroupStore(accounts)
    groups.create("team")
    return ProjectStore(accounts), groups


def test_store_keeps_grants_and_an_audit_trail(stores) -> None:
    projects, _ = stores
    projects.create("data", "shared data", {U("ada"): "write", G("team"): "read"}, "root")
    projects.grant("data", U("bob"), "read", "root")
    projects.grant("data", U("bob"), "write", "root")  # replaces, never duplicates
    projects.revoke("data", G("team"), "root")
    p = projects.get("data")
    assert p.grants == {U("ada"): "write", U("bob"): "write"}
    assert [(r["actor"], r["action"]) for r in projects.history("data")] == [
        ("root", "create"), ("root", "grant"), ("root", "grant"), ("root", "revoke")]
    assert "@team=read" in projects.history("data")[0]["detail"]


def test_store_refuses_bad_input_and_changes_nothing(stores) -> None:
    projects, _ = stores
    projects.create("data", "", {}, "root")
    with pytest.raises(ProjectError, match="already exists"):
        projects.create("data", "", {}, "root")
    with pytest.raises(ProjectError, match="upper-case"):
        projects.create("Data", "", {}, "root")
    with pytest.raises(ProjectError, match="user 'zed' does not exist"):
        projects.create("other", "", {U("ada"): "write", U("zed"): "read"}, "root")
    with pytest.raises(ProjectError, match="group 'nope' does not exist"):
        projects.grant("data", G("nope"), "read", "root")
    with pytest.raises(ProjectError, match="does not exist"):
        projects.grant("missing", U("ada"), "read", "root")
    with pytest.raises(ProjectError, match="no grant"):
        projects.revoke("data", U("bob"), "root")
    assert [p.name for p in projects.list()] == ["data"]
    assert projects.get("data").grants == {}


def test_log_outlives_a_deleted_project(stores) -> None:
    projects, _ = stores
    projects.create("data", "", {}, "root")
    projects.delete("data", "root", "was empty")
    assert projects.list() == []
    assert [r["action"] for r in projects.history("data")] == ["create", "delete"]


def test_a_name_written_around_the_rule_never_becomes_a_folder(stores, tmp_path: Path) -> None:
    """With hub.unprivileged the store is the hub's account's and root's helper reads it: a
    project row put there directly (a compromised hub) must not steer root to a path."""
    from teamhub.projects.apply import Layout

    projects, _ = stores
    projects.create("data", "", {}, "root")
    with projects.store._connect() as conn:
        for bad in ("../../home/jupyter-ada", "/etc", "x/y"):
            conn.execute("INSERT INTO projects (name, description, created) VALUES (?,?,?)",
                         (bad, "", "2026-01-01 00:00:00"))
    assert [p.name for p in projects.list()] == ["data"]
    layout = Layout(root=tmp_path / "projects", store_path=tmp_path / "accounts.sqlite",
                    prefix="jupyter-", registry=tmp_path / "system_users.json")
    assert layout.folder("data") == tmp_path / "projects" / "data"
    with pytest.raises(ProjectError):
        layout.folder("../../etc")
