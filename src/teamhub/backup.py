"""`teamhub backup` / `teamhub restore`: what makes this teamhub *this* teamhub, in one file.

The archive (a gzipped tar) holds:

    manifest.json                  format, teamhub version, account-store schema, files' sha256
    settings/teamhub.toml          the settings file (if there is one)
    settings/jupyterhub_config.d/  the admin's raw JupyterHub config files
    state/accounts.sqlite          accounts (password hashes), groups, project grants and audit log,
                                   copied with sqlite's backup API (consistent while the hub runs)
    envs/<name>.json               each shared env's definition: base Python, groups, package
                                   lists of its revisions (not the built env)

Not in it: users' files and project contents (back those up with your file backups), built
environments (rebuilt from their definitions), the hub database and cookie secret (sessions
and API tokens start fresh: everyone logs in again).

Restore validates the whole archive before it changes anything, refuses to overwrite a
live install unless forced, then writes the settings, the account store (one sqlite
transaction), recreates project folders with their ACLs, and writes a script that
rebuilds the shared environments.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shlex
import sqlite3
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__, hubclient, rootfiles
from . import settings as settings_mod
from .accounts.store import SCHEMA_VERSION, AccountStore
from .db import snapshot
from .db.upgrade import known_revision
from .envs.store import META, check_name
from .errors import BackupError, TeamhubError
from .paths import Paths
from .preflight import ensure_state_dir
from .projects.apply import Layout, Projects
from .settings import Settings
from .system import listen

FORMAT = "teamhub-backup"
FORMAT_VERSION = 1
MAX_MEMBER = 512 << 20
_MEMBER_RE = re.compile(r"(settings/teamhub\.toml|settings/jupyterhub_config\.d/[A-Za-z0-9_.-]+"
                        r"\.py|state/accounts\.sqlite|state/system_users\.json|envs/[a-z][a-z0-9_-]{0,31}\.json)")



def _sqlite_copy(src: Path) -> bytes:
    """A consistent copy of the sqlite file SRC (sqlite's online backup API)."""
    with tempfile.TemporaryDirectory(prefix="teamhub-backup-") as tmp:
        dst_path = Path(tmp) / "copy.sqlite"
        source = sqlite3.connect(f"file:{src}?mode=ro", uri=True, timeout=30)
        dest = sqlite3.connect(dst_path)
        try:
            source.backup(dest)
        finally:
            dest.close()
            source.close()
        return dst_path.read_bytes()


def collect(settings: Settings) -> dict[str, bytes]:
    """Archive member name → content, for the install SETTINGS describe."""
    paths = Paths.from_settings(settings)
    files: dict[str, bytes] = {}
    if paths.config_file.is_file():
        files["settings/teamhub.toml"] = paths.config_file.read_bytes()
    if paths.config_d.is_dir():
        for f in sorted(paths.config_d.glob("*.py")):
            files[f"settings/jupyterhub_config.d/{f.name}"] = f.read_bytes()
    if not paths.store_exists:
        raise BackupError(f"no account store at {paths.accounts_db}: nothing to back up",
                          "is "
                          "--config (or TEAMHUB_CONFIG) pointing at the right settings?")
    if paths.db_url:
        # Same archive format on both backends: a PostgreSQL store is archived as the
        # sqlite store file it would be, so a backup restores onto either.
        store = AccountStore(paths.accounts_db, paths.db_url)
        files["state/accounts.sqlite"] = snapshot.to_sqlite_bytes(store)
    else:
        try:
            files["state/accounts.sqlite"] = _sqlite_copy(paths.accounts_db)
        except sqlite3.Error as exc:
            raise BackupError(f"cannot copy the account store {paths.accounts_db} ({exc})") \
                from None
    registry = rootfiles.registry_bytes(paths)
    if registry is not None:
        # Which Linux accounts (name and uid) teamhub made: restored on the same machine,
        # users keep their accounts and homes; elsewhere an entry whose uid differs is
        # refused like any foreign account. (Its archive name stays state/system_users.json.)
        files["state/system_users.json"] = registry
    envs_root = Path(settings["envs.root"])
    if envs_root.is_dir():
        for envdir in sorted(envs_root.iterdir()):
            meta = envdir / META
            if meta.is_file():
                check_name(envdir.name)
                files[f"envs/{envdir.name}.json"] = meta.read_bytes()
    return files


@contextlib.contextmanager
def _sqlite_file(data: bytes) -> Iterator[str]:
    """DATA as a sqlite file in a folder of its own, removed afterwards with what sqlite
    made beside it (a database in WAL mode gets -wal and -shm files even when read)."""
    with tempfile.TemporaryDirectory(prefix="teamhub-restore-") as folder:
        path = os.path.join(folder, "copy.sqlite")
        with open(path, "xb") as f:
            f.write(data)
        yield path


def _account_schema(db: bytes) -> str:
    """The archived store's alembic revision, or `legacy-N` for a pre-alembic store."""
    with _sqlite_file(db) as copy:
        conn = sqlite3.connect(f"file:{copy}?mode=ro", uri=True)
        try:
            ok = conn.execute("PRAGMA integrity_check").fetchone()[0]
            if ok != "ok":
                raise BackupError(f"the archive's account store is damaged ({ok})")
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            if "alembic_version" in tables:
                version = conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]
            else:
                legacy = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
                version = f"legacy-{legacy}"
            conn.execute("SELECT name, password_hash, admin FROM accounts LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise BackupError(f"the archive's account store is not a teamhub account store "
                              f"({exc})") from None
        finally:
            conn.close()
    return str(version)


def write_archive(target: Path, settings: Settings) -> dict[str, Any]:
    """Write the backup of SETTINGS' install to TARGET (root-only, renamed into place)."""
    files = collect(settings)
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "teamhub_version": __version__,
        "accounts_schema": SCHEMA_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()},
    }
    if target.is_dir():
        raise BackupError(f"{target} is a folder",
                          "give a file name such as "
                          f"{target / 'teamhub-backup.tar.gz'}")
    if not target.parent.is_dir():
        raise BackupError(f"folder {target.parent} does not exist", "create it first")
    tmp = target.with_name(f".{target.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            for name, data in [("manifest.json", json.dumps(manifest, indent=2).encode()),
                               *sorted(files.items())]:
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), 0o600, int(time.time())
                tar.addfile(info, io.BytesIO(data))
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return manifest


@dataclass
class Archive:
    manifest: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)

    @property
    def envs(self) -> dict[str, dict[str, Any]]:
        return {Path(n).stem: json.loads(d) for n, d in self.files.items()
                if n.startswith("envs/")}


def read_archive(path: Path) -> Archive:
    """The archive at PATH, fully checked; BackupError naming what is wrong."""
    bad = f"{path} is not a teamhub backup"
    members: dict[str, bytes] = {}
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            for info in tar:
                if not info.isfile() or info.size > MAX_MEMBER:
                    raise BackupError(f"{bad}: unexpected entry {info.name[:80]!r}")
                if info.name != "manifest.json" and not _MEMBER_RE.fullmatch(info.name):
                    raise BackupError(f"{bad}: unexpected entry {info.name[:80]!r}")
                extracted = tar.extractfile(info)
                assert extracted is not None
                members[info.name] = extracted.read()
    except FileNotFoundError:
        raise BackupError(f"{path} does not exist") from None
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        why = " ".join(str(exc).split())[:200]
        raise BackupError(f"{bad} (cannot read it as a tar.gz archive: {why})",
                          "was it "
                          "made by `teamhub backup` and copied completely?") from None
    try:
        manifest = json.loads(members.pop("manifest.json"))
    except (KeyError, ValueError):
        raise BackupError(f"{bad}: it has no readable manifest.json") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{bad}: its manifest does not say format {FORMAT!r}")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BackupError(f"{path} has backup format {manifest.get('format_version')!r}",
                          "this "
                          f"teamhub reads format {FORMAT_VERSION}: use a matching teamhub")
    sums = manifest.get("files")
    if not isinstance(sums, dict) or set(sums) != set(members):
        raise BackupError(f"{path} is incomplete or has extra files: the manifest lists "
                          f"{sorted(sums or [])}, the archive holds {sorted(members)}")
    for name, data in members.items():
        if hashlib.sha256(data).hexdigest() != sums[name]:
            raise BackupError(f"{path}: {name} does not match its checksum (damaged archive)")
    if "state/accounts.sqlite" not in members:
        raise BackupError(f"{bad}: it holds no account store")
    schema = _account_schema(members["state/accounts.sqlite"])
    # Pre-alembic stores (legacy-1..6) are all older than any revision.
    if not schema.startswith("legacy-") and not known_revision(schema):
        raise BackupError(f"{path} comes from a newer teamhub (account store schema {schema}, "
                          f"this one knows {SCHEMA_VERSION})", "upgrade teamhub first")
    if "settings/teamhub.toml" in members:
        with tempfile.NamedTemporaryFile(suffix=".toml") as tmp:
            tmp.write(members["settings/teamhub.toml"])
            tmp.flush()
            try:
                settings_mod.read_file(Path(tmp.name))
            except TeamhubError as exc:
                raise BackupError(f"{path}: its settings file is invalid: {exc}") from None
    archive = Archive(manifest, members)
    if "state/system_users.json" in members:
        try:
            registry = json.loads(members["state/system_users.json"])
        except ValueError:
            registry = None
        if not isinstance(registry, dict):
            raise BackupError(f"{path}: its registry of Linux accounts is malformed")
    for name, meta in archive.envs.items():
        if not isinstance(meta, dict) or not isinstance(meta.get("revisions"), list):
            raise BackupError(f"{path}: the definition of env {name!r} is malformed")
    return archive


def archive_settings(archive: Archive) -> Settings:
    """The settings the archive would give (its file, under this machine's TEAMHUB_* vars)."""
    with tempfile.TemporaryDirectory(prefix="teamhub-restore-") as tmp:
        path = Path(tmp) / "teamhub.toml"
        path.write_bytes(archive.files.get("settings/teamhub.toml", b""))
        return settings_mod.load(path)


def live_reasons(settings: Settings) -> list[str]:
    """Why restoring over SETTINGS' install would clobber something (empty: safe)."""
    paths = Paths.from_settings(settings)
    reasons = []
    if hubclient.hub_may_run(paths) or listen.socket_answers(paths.hub_socket):
        reasons.append(f"a hub is running (it answers on {paths.hub_socket})")
    if paths.store_exists:
        reasons.append(f"an account store exists at {paths.accounts_db}")
    return reasons


def env_rebuild_commands(archive: Archive) -> list[str]:
    lines = []
    for name, meta in sorted(archive.envs.items()):
        current = next((r for r in meta["revisions"] if r.get("rev") == meta.get("current")),
                       None)
        packages = list(current.get("packages", [])) if current else []
        cmd = ["teamhub", "env", "create", name, *packages]
        if meta.get("python"):
            cmd += ["--python", str(meta["python"])]
        if meta.get("groups"):
            cmd += ["--groups", ",".join(meta["groups"])]
        lines.append(shlex.join(cmd))
    return lines


def restore(archive: Archive, config_file: Path) -> dict[str, Any]:
    """Write ARCHIVE's contents into place; call only after read_archive and the live check."""
    if "settings/teamhub.toml" in archive.files:
        # Byte for byte, so the admin's comments come back too.
        config_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = config_file.with_name(f".{config_file.name}.restore")
        tmp.write_bytes(archive.files["settings/teamhub.toml"])
        os.replace(tmp, config_file)
    settings = settings_mod.load(config_file)
    paths = Paths.from_settings(settings)
    config_d = [n for n in archive.files if n.startswith("settings/jupyterhub_config.d/")]
    if config_d:
        paths.config_d.mkdir(parents=True, exist_ok=True)
        for name in config_d:
            target = paths.config_d / Path(name).name
            tmp = target.with_name(f".{target.name}.tmp")
            tmp.write_bytes(archive.files[name])
            os.replace(tmp, target)

    ensure_state_dir(paths.state_dir)
    if "state/system_users.json" in archive.files:
        # Root's folder beside the state folder (an older install's registry moved there
        # first: the archive's then replaces it, as before).
        rootfiles.migrate(paths, rootfiles.hub_group(settings))
        tmp = paths.system_users.with_name(".system_users.json.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(archive.files["state/system_users.json"])
        os.replace(tmp, paths.system_users)
    if paths.db_url:
        snapshot.replace_from_sqlite(AccountStore(paths.accounts_db, paths.db_url),
                                     archive.files["state/accounts.sqlite"])
    else:
        _restore_sqlite(archive.files["state/accounts.sqlite"], paths.accounts_db)
        # Bring an older store's schema up to date (and set its file mode) in one go.
        AccountStore(paths.accounts_db)

    projects = Projects(Layout(root=paths.projects_root, store_path=paths.accounts_db,
                               store_url=paths.db_url,
                               prefix=settings["users.system_prefix"],
                               registry=paths.system_users))
    repaired = projects.repair()
    commands = env_rebuild_commands(archive)
    script = None
    if commands:
        script = paths.state_dir / "restore-envs.sh"
        script.write_text("#!/bin/sh\n# Rebuild the shared environments of the restored "
                          "backup.\nset -e\n" + "\n".join(commands) + "\n")
        script.chmod(0o700)
    return {"settings": str(config_file), "state_dir": str(paths.state_dir),
            "projects": repaired, "env_commands": commands,
            "env_script": str(script) if script else None}


def _restore_sqlite(data: bytes, target: Path) -> None:
    """Replace TARGET's content with DATA in one sqlite transaction (backup API)."""
    with _sqlite_file(data) as copy:
        source = sqlite3.connect(f"file:{copy}?mode=ro", uri=True)
        fd = os.open(target, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        dest = sqlite3.connect(target, timeout=30)
        try:
            source.backup(dest)
        finally:
            dest.close()
            source.close()
    os.chmod(target, 0o600)
