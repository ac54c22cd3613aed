"""How the CLI tells JupyterHub about account changes, running or not.

A running hub is told over its REST API (hubclient.HubClient, which checks the
hub is what answers before it sends the CLI's token). Only when no hub runs,
provably (`HubNotRunning`), is the hub's database changed instead, so the
change holds at the next start; a hub that runs but does not answer, or an
impostor on its port, raises HubError and nothing is done here.

Each function says how it was done, so the CLI never claims the running hub
did what it did not.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from . import hubdb
from .errors import HubError, HubNotRunning, TeamhubError
from .hubclient import HubClient, Reply
from .paths import Paths

NO_SESSIONS = {"oauth_tokens": 0, "api_tokens": 0}


@contextmanager
def hub_step(done: str, finish: str) -> Iterator[None]:
    """Around telling the running hub after DONE was already changed: if the hub
    fails then (it was checked just before), the error says what is done and how
    to finish, instead of leaving the admin to guess."""
    try:
        yield
    except HubError as exc:
        # The hub's own hint comes first (it is about the failure), then how to finish.
        hint = f"{exc.hint}; {finish}" if exc.hint else finish
        raise type(exc)(f"{done}, but {exc.message}", hint) from None


def _ask(paths: Paths, method: str, path: str,
         body: object | None = None) -> tuple[HubClient, Reply] | None:
    """(client, reply) of the running hub to a first request; None if provably no hub
    runs. HubError (busy hub, impostor) goes to the caller: then nothing is done."""
    try:
        hub = HubClient.for_cli(paths)
        return hub, hub.call(method, path, body)
    except HubNotRunning:
        return None


def _check(reply: Reply, what: str, ok: tuple[int, ...] = (200, 201, 204)) -> None:
    if reply.status not in ok:
        raise TeamhubError(f"the running hub refused to {what} (HTTP {reply.status})",
                           "the "
                           "account store is updated and the hub catches up at its next start")


def sync_groups(paths: Paths, groups: dict[str, list[str]]) -> bool:
    """Make a running hub's groups equal GROUPS; False if no hub runs.

    With no hub running nothing is done: `c.JupyterHub.load_groups` (set from
    the store at start) brings the hub up to date then.
    """
    asked = _ask(paths, "GET", "/groups")
    if asked is None:
        return False
    hub, current = asked
    if current.status != 200 or not isinstance(current.body, list):
        raise TeamhubError(f"the running hub refused to list groups (HTTP {current.status})",
                           "restart it with `teamhub up` so it picks up the groups")
    have = {g["name"]: set(g.get("users", [])) for g in current.body}
    for name in set(have) - set(groups):
        _check(hub.call("DELETE", f"/groups/{name}"), f"delete group {name}")
    for name, members in groups.items():
        if name not in have:
            _check(hub.call("POST", f"/groups/{name}"), f"create group {name}")
        old = have.get(name, set())
        for user in sorted(set(members) - old):
            # Group members must be hub users; a user who never logged in may not be yet.
            _check(hub.call("POST", f"/users/{user}"), f"add user {user}", ok=(201, 409))
        if set(members) - old:
            _check(hub.call("POST", f"/groups/{name}/users",
                            {"users": sorted(set(members) - old)}), f"fill group {name}")
        if old - set(members):
            _check(hub.call("DELETE", f"/groups/{name}/users",
                            {"users": sorted(old - set(members))}), f"empty group {name}")
    return True


def add_user(paths: Paths, name: str, admin: bool) -> bool:
    """List account NAME in a running hub at once (its admin page included); False if no
    hub runs (it lists every account at start: c.Authenticator.allowed_users)."""
    asked = _ask(paths, "POST", f"/users/{name}", {"admin": admin})
    if asked is None:
        return False
    # 409: the hub already has NAME (say, from an earlier start): nothing to do.
    _check(asked[1], f"add user {name}", ok=(201, 409))
    return True


def delete_user(paths: Paths, name: str) -> str:
    """Stop NAME's servers and remove NAME from the hub: "hub" when the running hub did
    it, "database" when no hub runs and its database was changed."""
    asked = _ask(paths, "DELETE", f"/users/{name}")
    if asked is None:
        hubdb.delete_user(paths.hub_db, name)
        return "database"
    status = asked[1].status
    if status in (204, 404):
        return "hub"
    raise TeamhubError(f"the running hub refused to delete user {name!r} (HTTP {status})",
                       "see the hub log (`teamhub logs`) and try again")


def hub_state(paths: Paths, name: str) -> dict[str, Any] | None:
    """The hub's JSON model of user NAME; None if no hub runs or it does not know NAME."""
    asked = _ask(paths, "GET", f"/users/{name}")
    if asked is None or asked[1].status != 200 or not isinstance(asked[1].body, dict):
        return None
    return asked[1].body


def cut_off_user(paths: Paths, name: str) -> dict[str, int] | None:
    """Stop every server of NAME and revoke its API tokens in a running hub.

    Returns {"servers": n, "tokens": n} (what was stopped and revoked), or None
    if no hub runs. The user stays in the hub (unlike delete_user), so their
    record and named servers' state survive an unblock; the authenticator turns
    their browser sessions away within auth_refresh_age.
    """
    asked = _ask(paths, "GET", f"/users/{name}")
    if asked is None:
        return None
    hub, found = asked
    if found.status == 404:
        return {"servers": 0, "tokens": 0}  # the hub has never seen them: nothing to stop
    if found.status != 200 or not isinstance(found.body, dict):
        raise TeamhubError(f"the running hub refused to look up user {name!r} (HTTP "
                           f"{found.status})", "see the hub log (`teamhub logs`) and try again")
    servers = sorted(found.body.get("servers") or {})
    for server in servers:
        path = f"/users/{name}/server" if server == "" else f"/users/{name}/servers/{server}"
        _check(hub.call("DELETE", path), f"stop {name}'s server {server!r}",
               ok=(202, 204, 404))
    tokens = hub.call("GET", f"/users/{name}/tokens")
    if tokens.status != 200 or not isinstance(tokens.body, dict):
        raise TeamhubError(f"the running hub refused to list {name}'s tokens (HTTP "
                           f"{tokens.status})",
                           "restart it with `teamhub up` so the CLI gets "
                           "the `tokens` scope")
    ids = [t["id"] for t in tokens.body.get("api_tokens", [])
           if isinstance(t, dict) and "id" in t]
    for token_id in ids:
        _check(hub.call("DELETE", f"/users/{name}/tokens/{token_id}"),
               f"revoke a token of {name}", ok=(204, 404))
    return {"servers": len(servers), "tokens": len(ids)}


def set_admin(paths: Paths, name: str, admin: bool) -> bool | None:
    """Set NAME's admin flag in a running hub.

    Returns True if the hub changed it, False if the hub does not know NAME yet
    (it takes the flag from the account store at their first login), and None
    if no hub runs (it reads the store again at start and at each refresh).
    """
    asked = _ask(paths, "PATCH", f"/users/{name}", {"admin": admin})
    if asked is None:
        return None
    reply = asked[1]
    if reply.status == 404:
        return False
    _check(reply, f"change the admin flag of {name}", ok=(200,))
    return True


def end_sessions(paths: Paths, name: str, *, api_tokens: bool) -> tuple[str, dict[str, int]]:
    """End NAME's sessions in every browser (and with API_TOKENS their API tokens).

    Returns (how, counts): "hub" when the running hub did it (it must, as it
    caches users), "database" when no hub runs and the hub database was
    changed, "none" when the hub has never seen NAME (no session to end).
    """
    query = "?api_tokens=1" if api_tokens else ""
    asked = _ask(paths, "DELETE", f"/teamhub/users/{name}/sessions{query}")
    if asked is None:
        # accounts.sessions imports JupyterHub's ORM (~0.5 s): deferred to where it is needed.
        from .accounts.sessions import end_sessions_in_db

        ended = end_sessions_in_db(paths.hub_db, name, api_tokens=api_tokens)
        return ("none", dict(NO_SESSIONS)) if ended is None else ("database", ended.as_dict())
    reply = asked[1]
    if reply.status == 200 and isinstance(reply.body, dict):
        return "hub", {k: int(v) for k, v in reply.body.items()}
    if reply.status == 404:
        return "none", dict(NO_SESSIONS)
    raise TeamhubError(f"the running hub refused to end {name}'s sessions (HTTP "
                       f"{reply.status})",
                       "restart it with `teamhub up` and run "
                       f"`teamhub user logout {name}`")
