"""What `teamhub user block|unblock|remove|admin|logout` change, for the CLI and the
console's Users page alike (one function behind both, same checks, same messages).

Each function reports what it did line by line through SAY (the CLI echoes each line at
once, the page collects them), so a step that fails still leaves the lines of the steps
before it. The running hub is told over its REST API (hubaccounts), also from inside the
hub process: the page runs these functions off the event loop, which stays free to answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import hubaccounts, hubclient
from .accounts.store import Account, AccountStore
from .errors import AccountError
from .hubaccounts import hub_step
from .paths import Paths
from .projects.actions import projects_of
from .projects.model import Principal
from .rootwork import Direct, RootWork
from .system import users
from .system.containers import home_volume, remove_user_containers, remove_user_volume
from .system.docker import Engine
from .system.names import canonical_name, system_name

Say = Callable[[str], None]


# What only makes sense for teamhub's own accounts; in PAM mode the machine's
# Linux accounts are the accounts, managed with the system's own tools.
BUILTIN_ONLY = {
    "add": "create the Linux account with `adduser NAME`",
    "passwd": "set a password with `passwd NAME`, then `teamhub user logout NAME`",
    "remove": "remove the Linux account with `deluser NAME` (it then cannot log in)",
    "block": "lock the Linux account with `usermod -L NAME`, then `teamhub user logout NAME`",
    "unblock": "unlock the Linux account with `usermod -U NAME`",
}


def check_builtin(settings: Any, command: str) -> None:
    """Refuse COMMAND (`teamhub user COMMAND`) when the accounts are Linux's (PAM mode)."""
    hint = BUILTIN_ONLY.get(command)
    if hint and settings["auth.mode"] == "pam":
        raise AccountError(f"`teamhub user {command}` manages teamhub's "
                           f"own accounts, but auth.mode is pam (Linux accounts): {hint}")


def existing_account(store: AccountStore, name: str) -> Account:
    account = store.get(canonical_name(name))  # invalid names fail here, with the rule
    if account is None:
        raise AccountError(f"user {name!r} does not exist", "see `teamhub user list`")
    return account


def ended_text(name: str, how: str, counts: dict[str, int]) -> str:
    """One line saying whose sessions `hubaccounts.end_sessions` ended, and where."""
    if how == "none":
        return f"{name} has no hub sessions to end"
    where = "by the running hub" if how == "hub" else "in the hub database (no hub is running)"
    text = f"ended every browser session of {name} {where}"
    if counts.get("api_tokens"):
        text += f"; revoked {counts['api_tokens']} API token(s)"
    return text


@dataclass(frozen=True)
class Removal:
    """What `remove` would remove: the account, and the Linux account if teamhub made it."""

    account: Account
    sysname: str
    managed: bool

    def question(self, keep_home: bool = False) -> str:
        what = f"hub user {self.account.name}"
        if self.managed:
            what += f" and Linux account {self.sysname}" + ("" if keep_home else " with its home")
        return f"Remove {what}?"


def plan_removal(settings: Any, paths: Paths, store: AccountStore, name: str) -> Removal:
    """What removing NAME removes; fails (nothing changed) if the Linux account is unusable."""
    account = existing_account(store, name)
    sysname = system_name(account.name, settings["users.system_prefix"])
    managed = users.is_managed(sysname, registry=paths.system_users)
    if managed and users.lookup(sysname) is not None:
        users.check_usable(sysname, registry=paths.system_users)
    return Removal(account, sysname, managed)


def direct(settings: Any, paths: Paths) -> Direct:
    """Root's part of these commands done by this process (the CLI, a root hub)."""
    return Direct(projects_of(settings, paths), paths.private_runtime)


def remove(settings: Any, paths: Paths, store: AccountStore, plan: Removal, *, actor: str,
           keep_home: bool, purge: bool, say: Say, root: RootWork | None = None) -> None:
    """Stop NAME's servers, delete their Linux account (if teamhub created it; with its
    home unless KEEP_HOME) and their account. ROOT does the machine's part (default: this
    process, as root)."""
    account, sysname, managed = plan.account, plan.sysname, plan.managed
    # Order: hub, then Linux account, then the store last. Each step is
    # idempotent (hub: 404 is fine; Linux: gone from the registry is skipped),
    # so if one fails the user is still listed and removing again finishes the
    # job. Removing from the store first would leave a server or an account
    # behind that no `teamhub user` command could reach any more.
    # A hub that does not answer stops it here, with nothing changed.
    hubaccounts.delete_user(paths, account.name)
    if settings["spawner.backend"] == "docker":
        # The hub stopped (and so removed) a running server; this catches a container left
        # running while the hub was down.
        engine = Engine()
        for gone in remove_user_containers(engine, account.name):
            say(f"removed container {gone}")
        if purge and remove_user_volume(engine, account.name):
            say(f"removed volume {home_volume(account.name)}")
        elif any(v["Name"] == home_volume(account.name) for v in engine.volumes()):
            say(f"kept volume {home_volume(account.name)} (their files); remove it with "
                f"`docker volume rm {home_volume(account.name)}`")
    p = projects_of(settings, paths)
    # The ACL entries go before the account (they name its uid, which a later account
    # would get), the grants after it: a failed userdel leaves them for the next try.
    if managed:
        (root or direct(settings, paths)).remove_account(account.name, keep_home)
    # (An account teamhub did not make has no ACL entries: projects name teamhub's only.)
    p.store.forget_principal(Principal("user", account.name), actor)
    store.remove(account.name)
    say(f"removed user {account.name}" + (f" and Linux account {sysname}" if managed else ""))
    if not managed and users.lookup(sysname) is not None:
        say(f"Linux account {sysname} was not created by teamhub and was left alone")


def block(settings: Any, paths: Paths, store: AccountStore, name: str, *, actor: str,
          say: Say, root: RootWork | None = None) -> None:
    """Block NAME at once (see `teamhub user block --help`); ROOT ends their processes and
    takes their project access away (default: this process, as root)."""
    account = existing_account(store, name)
    sysname = system_name(account.name, settings["users.system_prefix"])
    # A busy hub or an impostor on its port stops it before anything changes.
    hubclient.hub_running(paths)
    already = store.set_blocked(account.name, True)
    say(f"user {account.name} was already blocked; making sure nothing is left"
        if already else f"blocked user {account.name}: logins are refused")
    with hub_step(f"user {account.name} is blocked (logins are refused)",
                  f"to finish, run `teamhub user block {account.name}` again once the hub "
                  "answers"):
        cut = hubaccounts.cut_off_user(paths, account.name)
        if cut is None:
            say("no hub is running: it refuses the user when it starts")
        else:
            say(f"hub: stopped {cut['servers']} server(s), revoked {cut['tokens']} "
                "API token(s)")
        say(ended_text(account.name,
                       *hubaccounts.end_sessions(paths, account.name, api_tokens=True)))
    ended, touched = (root or direct(settings, paths)).cut_off(account.name)
    if ended is not None:
        say(f"ended {ended} process(es) of Linux account {sysname}")
    p = projects_of(settings, paths)
    for project in touched:
        p.store.log(project, actor, "block", account.name)
    say("removed access to projects: " + ", ".join(touched)
        if touched else "no project access to remove")


def unblock(settings: Any, paths: Paths, store: AccountStore, name: str, *, actor: str,
            say: Say, root: RootWork | None = None) -> None:
    """Unblock NAME: they can log in again and get their project access back (ROOT gives
    it, default: this process, as root)."""
    account = existing_account(store, name)
    already = store.set_blocked(account.name, False)
    say(f"user {account.name} was not blocked" if already
        else f"unblocked user {account.name}: logins work again")
    p = projects_of(settings, paths)
    (root or direct(settings, paths)).restore(account.name)
    mine = p.accessible(account.name)
    if not already:
        for project in mine:
            p.store.log(project, actor, "unblock", account.name)
    say("project access: " + ", ".join(f"{k} ({v})" for k, v in mine.items())
        if mine else "no project access to restore")


def set_admin(paths: Paths, store: AccountStore, name: str, on: bool, *, say: Say) -> None:
    """Make NAME an admin (ON) or not; a running hub follows at once."""
    account = existing_account(store, name)
    if account.pending:
        raise AccountError(f"user {account.name!r} is waiting for approval",
                           "approve it first "
                           f"with `teamhub user approve {account.name}`")
    state = "an admin" if on else "not an admin"
    # A busy hub or an impostor on its port stops it before anything changes.
    hubclient.hub_running(paths)
    store.set_admin(account.name, on)
    # The hub also takes the flag from the store at its next auth refresh.
    with hub_step(f"{account.name} is {state} in the account store",
                  "the hub takes it from there within a minute (auth refresh) or at "
                  "their next login"):
        hub = hubaccounts.set_admin(paths, account.name, on)
    say(f"{account.name} is {state}"
        + {True: " (the running hub is updated)",
           False: " (the running hub applies it at their next login)",
           None: " (no hub is running; it applies at start)"}[hub])
