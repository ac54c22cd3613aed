"""What the tests of an unprivileged hub (hub.unprivileged) share: acting as the hub's
account, as a remote code execution in the hub would, and removing that account after."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

from teamhub.system import users
from teamhub.system.processes import processes_of


def as_hub_account(account: str, *cmd: str, input: str | None = None
                   ) -> subprocess.CompletedProcess[str]:
    """CMD run as the hub's account, the way a remote code execution in the hub would run."""
    return subprocess.run(["setpriv", f"--reuid={account}", f"--regid={account}",
                           "--init-groups", "--inh-caps=-all", "--", *cmd],
                          capture_output=True, text=True, timeout=60, input=input)


def remove_account(hub: Any, name: str, *userdel: str) -> None:
    """End every process of account NAME (if it exists), remove the runtime folder the
    helper made it (the hub's cleanup knows teamhub's accounts only), run USERDEL on it."""
    account = users.lookup(name)
    if account is not None:
        shutil.rmtree(hub.paths.private_runtime / str(account.uid), ignore_errors=True)
        for pid in processes_of(account.uid):
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
    subprocess.run([*userdel, name], capture_output=True)
