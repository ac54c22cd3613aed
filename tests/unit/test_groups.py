"""Groups in the account store: one source of truth for projects and env visibility."""

from __future__ import annotations

import pytest

from teamhub.accounts.groups import GroupStore, canonical_group
from teamhub.accounts.store import AccountStore
from teamhub.errors import AccountError

PW = "long enough password"


@pytest.fixture
def groups(tmp_path):
    store = AccountStore(tmp_path / "accounts.sqlite")
    for name in ("ada", "bob", "cy"):
        store.add(name, PW)
    return GroupStore(store)


def test_create_add_list_and_groups_of(groups: GroupStore) -> None:
    assert groups.create("Data-Team") == "data-team"
    assert groups.add_members("data-team", ["bob", "ADA"]) == ["bob", "ada"]
    assert groups.add_members("data-team", ["ada"]) == []
    assert groups.list() == {"data-team": ["ada", "bob"]}
    assert groups.members("data-team") == ["ada", "bob"]
    assert groups.groups_of("ada") == ["data-team"]
    assert groups.groups_of("cy") == []
    assert groups.groups_of("../x") == []


def test_add_members_is_all_or_nothing(groups: GroupStore) -> None:
    groups.create("g")
    with pytest.raises(AccountError, match="'zed' does not exist"):
        groups.add_members("g", ["ada", "zed"])
    assert groups.members("g") == []


def test_duplicates_unknowns_and_bad_names(groups: GroupStore) -> None:
    groups.create("g")
    with pytest.raises(AccountError, match="already exists"):
        groups.create("G")
    with pytest.raises(AccountError, match="does not exist"):
        groups.delete("nope")
    with pytest.raises(AccountError, match="does not exist"):
        groups.add_members("nope", ["ada"])
    for bad in ("", "../etc", "a b", "x" * 33, "1abc", "@g"):
        with pytest.raises(AccountError):
            canonical_group(bad)


def test_removing_user_or_group_drops_memberships(groups: GroupStore) -> None:
    groups.create("g")
    groups.add_members("g", ["ada", "bob"])
    groups.store.remove("ada")
    assert groups.members("g") == ["bob"]
    assert groups.remove_members("g", ["bob", "cy"]) == ["bob"]
    groups.delete("g")
    assert groups.list() == {}
