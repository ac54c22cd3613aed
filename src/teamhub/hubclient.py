"""How the CLI tells JupyterHub about account changes, running or not.

A running hub is reached over its REST API on loopback with the token of the
`teamhub-cli` service (root-only file in the state dir). When no hub answers,
the hub database is edited directly, so that the change holds at next start.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from .errors import TeamhubError
from .paths import Paths


def _api(paths: Paths) -> tuple[str, str] | None:
    """(api_url, token) if a hub has announced itself, else None."""
    try:
        url = paths.hub_url_file.read_text().strip()
        token = paths.api_token.read_text().strip()
    except (FileNotFoundError, PermissionError):
        return None
    return (url.rstrip("/"), token) if url and token else None


def _request(url: str, token: str, method: str, path: str) -> int:
    req = urllib.request.Request(f"{url}{path}", method=method,
                                 headers={"Authorization": f"token {token}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _call(url: str, token: str, method: str, path: str,
          body: object | None = None) -> tuple[int, object]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"{url}{path}", method=method, data=data,
                                 headers={"Authorization": f"token {token}",
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw = resp.read()
            return resp.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as exc:
        return exc.code, None


def sync_groups(paths: Paths, groups: dict[str, list[str]]) -> bool:
    """Make a running hub's groups equal GROUPS; False if no hub answered.

    With no hub running nothing is done: `c.JupyterHub.load_groups` (set from
    the store at start) brings the hub up to date then.
    """
    api = _api(paths)
    if api is None:
        return False
    try:
        status, current = _call(*api, "GET", "/groups")
    except (urllib.error.URLError, OSError):
        return False
    if status != 200 or not isinstance(current, list):
        raise TeamhubError(f"the running hub refused to list groups (HTTP {status}); "
                           "restart it with `teamhub up` so it picks up the groups")
    have = {g["name"]: set(g.get("users", [])) for g in current}
    for name in set(have) - set(groups):
        _check(_call(*api, "DELETE", f"/groups/{name}")[0], f"delete group {name}")
    for name, members in groups.items():
        if name not in have:
            _check(_call(*api, "POST", f"/groups/{name}")[0], f"create group {name}")
        old = have.get(name, set())
        for user in sorted(set(members) - old):
            # Group members must be hub users; a user who never logged in may not be yet.
            _check(_call(*api, "POST", f"/users/{user}")[0], f"add user {user}", ok=(201, 409))
        if set(members) - old:
            _check(_call(*api, "POST", f"/groups/{name}/users",
                         {"users": sorted(set(members) - old)})[0], f"fill group {name}")
        if old - set(members):
            _check(_call(*api, "DELETE", f"/groups/{name}/users",
                         {"users": sorted(old - set(members))})[0], f"empty group {name}")
    return True


def _check(status: int, what: str, ok: tuple[int, ...] = (200, 201, 204)) -> None:
    if status not in ok:
        raise TeamhubError(f"the running hub refused to {what} (HTTP {status}); the account "
                           "store is updated and the hub catches up at its next start")


def hub_running(paths: Paths) -> bool:
    api = _api(paths)
    if api is None:
        return False
    try:
        return _request(*api, "GET", "/") == 200
    except (urllib.error.URLError, OSError):
        return False


def delete_user(paths: Paths, name: str) -> str:
    """Stop NAME's servers and remove NAME from the hub; returns how it was done."""
    api = _api(paths)
    if api is not None:
        try:
            status = _request(*api, "DELETE", f"/users/{name}")
        except (urllib.error.URLError, OSError):
            status = None
        if status in (204, 404):
            return "hub"
        if status is not None:
            raise TeamhubError(
                f"the running hub refused to delete user {name!r} (HTTP {status}); "
                "see the hub log (`teamhub up` output) and try again"
            )
    _delete_from_db(paths.hub_db, name)
    return "database"


def _delete_from_db(db: Path, name: str) -> None:
    if not db.exists():
        return
    from jupyterhub import orm

    session = orm.new_session_factory(f"sqlite:///{db}")()
    try:
        user = session.query(orm.User).filter_by(name=name).first()
        if user is not None:
            session.delete(user)
            session.commit()
    finally:
        session.close()


def hub_state(paths: Paths, name: str) -> dict | None:
    """The hub's JSON model of user NAME, if a hub is running and knows it."""
    api = _api(paths)
    if api is None:
        return None
    url, token = api
    req = urllib.request.Request(f"{url}/users/{name}",
                                 headers={"Authorization": f"token {token}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.load(resp)
    except (urllib.error.URLError, OSError, ValueError):
        return None


def cut_off_user(paths: Paths, name: str) -> dict[str, int] | None:
    """Stop every server of NAME and revoke its API tokens in a running hub.

    Returns {"servers": n, "tokens": n} (what was stopped and revoked), or None
    if no hub answered. The user stays in the hub (unlike delete_user), so their
    record and named servers' state survive an unblock; the authenticator turns
    their browser sessions away within auth_refresh_age.
    """
    api = _api(paths)
    if api is None:
        return None
    try:
        status, model = _call(*api, "GET", f"/users/{name}")
    except (urllib.error.URLError, OSError):
        return None
    if status == 404:
        return {"servers": 0, "tokens": 0}  # the hub has never seen them: nothing to stop
    if status != 200 or not isinstance(model, dict):
        raise TeamhubError(f"the running hub refused to look up user {name!r} (HTTP {status}); "
                           "see the hub log (`teamhub up` output) and try again")
    servers = sorted(model.get("servers") or {})
    for server in servers:
        path = f"/users/{name}/server" if server == "" else f"/users/{name}/servers/{server}"
        _check(_call(*api, "DELETE", path)[0], f"stop {name}'s server {server!r}",
               ok=(202, 204, 404))
    status, tokens = _call(*api, "GET", f"/users/{name}/tokens")
    if status != 200 or not isinstance(tokens, dict):
        raise TeamhubError(f"the running hub refused to list {name}'s tokens (HTTP {status}); "
                           "restart it with `teamhub up` so the CLI gets the `tokens` scope")
    ids = [t["id"] for t in tokens.get("api_tokens", []) if isinstance(t, dict) and "id" in t]
    for token_id in ids:
        _check(_call(*api, "DELETE", f"/users/{name}/tokens/{token_id}")[0],
               f"revoke a token of {name}", ok=(204, 404))
    return {"servers": len(servers), "tokens": len(ids)}


def set_admin(paths: Paths, name: str, admin: bool) -> bool | None:
    """Set NAME's admin flag in a running hub.

    Returns True if the hub changed it, False if the hub does not know NAME yet
    (it takes the flag from the account store at their first login), and None
    if no hub answered (it reads the store again at start and at each refresh).
    """
    api = _api(paths)
    if api is None:
        return None
    try:
        status, _ = _call(*api, "PATCH", f"/users/{name}", {"admin": admin})
    except (urllib.error.URLError, OSError):
        return None
    if status == 404:
        return False
    _check(status, f"change the admin flag of {name}", ok=(200,))
    return True


def end_sessions(paths: Paths, name: str, *, api_tokens: bool) -> tuple[str, dict[str, int]]:
    """End NAME's sessions in every browser (and with API_TOKENS their API tokens).

    Returns (how, counts): "hub" when a running hub did it (it must, as it caches
    users), "database" when no hub answered and the hub database was changed,
    "none" when the hub has never seen NAME (no session to end).
    """
    from .accounts.sessions import end_sessions_in_db

    api = _api(paths)
    if api is not None:
        query = "?api_tokens=1" if api_tokens else ""
        try:
            status, body = _call(*api, "DELETE", f"/teamhub/users/{name}/sessions{query}")
        except (urllib.error.URLError, OSError):
            status, body = None, None
        if status == 200 and isinstance(body, dict):
            return "hub", {k: int(v) for k, v in body.items()}
        if status == 404:
            return "none", {"oauth_tokens": 0, "api_tokens": 0}
        if status is not None:
            raise TeamhubError(f"the running hub refused to end {name}'s sessions (HTTP "
                               f"{status}); restart it with `teamhub up` and run "
                               f"`teamhub user logout {name}`")
    ended = end_sessions_in_db(paths.hub_db, name, api_tokens=api_tokens)
    if ended is None:
        return "none", {"oauth_tokens": 0, "api_tokens": 0}
    return "database", ended.as_dict()
