"""What `teamhub project ...` does, as functions: the CLI and the console's Projects page
both call these, so both validate and answer the same way.

Each change writes the grants to the account store first, then re-applies the project's
ACLs from there and refreshes the users' ~/projects links (the store is what counts;
`project repair` can redo the disk part). Each returns the lines to show the person.
The disk part is root's (teamhub.rootwork): ROOT, by default this process; an
unprivileged hub's console passes the root helper's. Blocking: store and OS work.
"""

from __future__ import annotations

from typing import Any

from ..errors import DockerError
from ..paths import Paths
from ..rootwork import Direct, RootWork
from ..settings import Settings
from ..system.containers import running_users
from ..system.docker import Engine
from .apply import Layout, Projects
from .model import Project, ProjectError, check_project_name, parse_principal, parse_principals


def projects_of(settings: Settings, paths: Paths) -> Projects:
    """The projects of this install."""
    return Projects(Layout(root=paths.projects_root, store_path=paths.accounts_db,
                           store_url=paths.db_url, prefix=settings["users.system_prefix"],
                           registry=paths.system_users))


def describe(p: Projects, project: Project) -> dict[str, Any]:
    return {
        "name": project.name,
        "path": str(p.layout.folder(project.name)),
        "description": project.description,
        "archived": project.archived,
        "created": project.created,
        "writers": [str(k) for k, v in project.grants.items() if v == "write"],
        "readers": [str(k) for k, v in project.grants.items() if v == "read"],
        "effective": p.effective(project),
    }


def _change(p: Projects, name: str, before: dict[str, str], root: RootWork | None
            ) -> dict[str, str]:
    """Re-apply project NAME and refresh links of everyone whose access may have changed;
    the effective access after."""
    after = p.effective(p.store.get(name))
    (root or Direct(p)).apply_project(name, sorted(set(before) | set(after)))
    return after


def next_start_note(settings: Settings, name: str, before: dict[str, str],
                    after: dict[str, str]) -> str | None:
    """With the docker backend, a running container's project mounts are fixed at its start:
    new access, or read → write, waits for the next start there (a revoke or write → read
    bites at once: the ACLs decide every open). Who that concerns, or None."""
    if settings["spawner.backend"] != "docker":
        return None
    gained = [u for u, access in after.items()
              if before.get(u) is None or (access == "write" and before[u] != "write")]
    if not gained:
        return None
    try:
        running = running_users(Engine(), gained)
    except DockerError as exc:
        return (f"note: users' containers get the new access to {name} at their next server "
                f"start (could not ask Docker which run now: {exc})")
    if not running:
        return None
    return (f"note: {', '.join(running)} run(s) a server in a container, which gets the new "
            f"access to {name} at its next start (stop and start the server)")


def _with_note(settings: Settings, line: str, name: str, before: dict[str, str],
               after: dict[str, str]) -> list[str]:
    note = next_start_note(settings, name, before, after)
    return [line, note] if note else [line]


def create(settings: Settings, p: Projects, name: str, writers: str | None,
           readers: str | None, description: str, actor: str,
           root: RootWork | None = None) -> list[str]:
    """Create project NAME with WRITERS and READERS (`ada,@team`; write wins)."""
    name = check_project_name(name)
    grants = dict.fromkeys(parse_principals(readers), "read")
    grants.update(dict.fromkeys(parse_principals(writers), "write"))
    if p.layout.folder(name).exists():
        raise ProjectError(f"{p.layout.folder(name)} already exists but is no project",
                           "move it away or choose another name")
    p.store.create(name, description, grants, actor)
    after = _change(p, name, {}, root)
    return _with_note(settings, f"created project {name} at {p.layout.folder(name)}",
                      name, {}, after)


def grant(settings: Settings, p: Projects, name: str, who: str, access: str | None,
          actor: str, root: RootWork | None = None) -> list[str]:
    """Give WHO (a user, or @group) ACCESS ("read" or "write") to project NAME."""
    if access is None:
        raise ProjectError("say which access to grant: --write or --read")
    before = p.effective(p.store.get(name))
    principal = parse_principal(who)
    p.store.grant(name, principal, access, actor)
    after = _change(p, name, before, root)
    return _with_note(settings, f"granted {access} on {name} to {principal}",
                      name, before, after)


def revoke(p: Projects, name: str, who: str, actor: str, root: RootWork | None = None
           ) -> list[str]:
    """Take WHO's grant on NAME away; effective at once, even for running kernels."""
    before = p.effective(p.store.get(name))
    principal = parse_principal(who)
    p.store.revoke(name, principal, actor)
    _change(p, name, before, root)
    return [f"revoked {principal} on {name}"]


def archive(p: Projects, name: str, actor: str, root: RootWork | None = None) -> list[str]:
    before = p.effective(p.store.get(name))
    p.store.archive(name, actor)
    _change(p, name, before, root)
    return [f"archived project {name}: everyone with access can now only read it"]


def delete(p: Projects, name: str, force: bool, actor: str, root: RootWork | None = None
           ) -> list[str]:
    """Delete NAME; refused unless its folder is empty (FORCE: move it to the trash)."""
    project = p.store.get(name)
    before = p.effective(project)
    root = root or Direct(p)
    where = root.remove_folder(project.name, force)
    p.store.delete(project.name, actor, f"moved to {where}" if where else "was empty")
    root.sync_links(sorted(before))
    return [f"deleted project {name}" + (f"; its files are in {where}" if where else "")]
