"""The export's identities come from real Linux accounts: teamhub's registry, the passwd
entry, supplementary groups; accounts not created yet get uids no account or group uses."""

from __future__ import annotations

import grp
import os
import pwd
import secrets
import string
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from teamhub.export.team import identities
from teamhub.system import users

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(os.geteuid() != 0, reason="creates real Linux accounts: needs root"),
]


def _random() -> str:
    return "x" + "".join(secrets.choice(string.ascii_lowercase + string.digits)
                         for _ in range(6))


@pytest.fixture
def made(tmp_path: Path) -> Iterator[tuple[str, str, Path, str]]:
    """A hub user with a real teamhub Linux account (prefix `thx-`) in an extra group."""
    prefix, hub_name, group = "thx-", _random(), "thxg" + _random()
    registry = tmp_path / "state" / "system_users.json"
    login = prefix + hub_name
    users.ensure_system_user(login, registry=registry, home_root=tmp_path / "home",
                             shell="/bin/sh")
    subprocess.run(["groupadd", group], check=True, capture_output=True)
    subprocess.run(["usermod", "-aG", group, login], check=True, capture_output=True)
    try:
        yield prefix, hub_name, registry, group
    finally:
        subprocess.run(["userdel", "--remove", login], capture_output=True, check=False)
        subprocess.run(["groupdel", group], capture_output=True, check=False)
        if users.lookup(login) is None:
            try:
                grp.getgrnam(login)
                subprocess.run(["groupdel", login], capture_output=True, check=False)
            except KeyError:
                pass


def test_identities_from_the_registry_and_passwd(made) -> None:
    prefix, hub_name, registry, group = made
    account = pwd.getpwnam(prefix + hub_name)
    newcomer = _random()
    found = identities([hub_name, newcomer], prefix, registry)
    mine = found[hub_name]
    assert (mine.login, mine.uid, mine.gid, mine.allocated) == \
        (prefix + hub_name, account.pw_uid, account.pw_gid, False)
    assert mine.supplemental_gids == (grp.getgrnam(group).gr_gid,)
    fresh = found[newcomer]
    assert fresh.allocated and fresh.uid == fresh.gid > account.pw_uid
    taken = {p.pw_uid for p in pwd.getpwall()} | {g.gr_gid for g in grp.getgrall()}
    assert fresh.uid not in taken


def test_an_account_whose_uid_changed_is_not_believed(made) -> None:
    prefix, hub_name, registry, _ = made
    login = prefix + hub_name
    subprocess.run(["usermod", "-u", str(pwd.getpwnam(login).pw_uid + 7000), login],
                   check=True, capture_output=True)
    found = identities([hub_name], prefix, registry)[hub_name]
    # Not the account teamhub made (the registry holds another uid): a fresh identity.
    assert found.allocated and found.uid != pwd.getpwnam(login).pw_uid
