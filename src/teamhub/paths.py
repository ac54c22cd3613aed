"""Every filesystem location teamhub uses, derived from settings in one place.

Tests point settings (and so every path here) at temporary folders.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from .settings import Settings

# Set by root `teamhub up` before it drops to hub.account (hub.unprivileged), for the hub
# and a `teamhub up` it re-executes on `teamhub restart`.
ENV_UNPRIVILEGED = "TEAMHUB_UNPRIVILEGED_HUB"


@dataclass(frozen=True)
class Paths:
    config_file: Path
    state_dir: Path
    runtime_dir: Path
    home_root: Path
    projects_root: Path = Path("/srv/teamhub/projects")
    # db.url: empty for the embedded sqlite files (hub_db, accounts_db), else PostgreSQL.
    db_url: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> Paths:
        return cls(
            config_file=Path(settings.config_file),
            state_dir=Path(settings["paths.state_dir"]),
            runtime_dir=Path(settings["paths.runtime_dir"]),
            home_root=Path(settings["paths.home_root"]),
            projects_root=Path(settings["projects.root"]),
            db_url=settings["db.url"],
        )

    @property
    def config_d(self) -> Path:
        """Raw JupyterHub config files (`*.py`), loaded last: the escape hatch."""
        return self.config_file.parent / "jupyterhub_config.d"

    @property
    def hub_db(self) -> Path:
        return self.state_dir / "jupyterhub.sqlite"

    @property
    def hub_db_url(self) -> str:
        """JupyterHub's database: db.url, or the sqlite file hub_db."""
        return self.db_url or f"sqlite:///{self.hub_db}"

    @property
    def cookie_secret(self) -> Path:
        return self.state_dir / "jupyterhub_cookie_secret"

    @property
    def proxy_token(self) -> Path:
        return self.state_dir / "proxy_auth_token"

    @property
    def api_token(self) -> Path:
        """Token of the `teamhub-cli` service, so the CLI can reach a running hub."""
        return self.state_dir / "cli_api_token"

    @property
    def hub_url_file(self) -> Path:
        """Where `teamhub up` writes the URL of the hub's REST API for the CLI:
        `http+unix://<percent-encoded hub_socket>/hub/api`."""
        return self.state_dir / "hub_api_url"

    @property
    def hub_pid_file(self) -> Path:
        """JupyterHub's pid file: with the state dir's owner, what tells the real hub."""
        return self.state_dir / "jupyterhub.pid"

    @property
    def socket_dir(self) -> Path:
        """Folder of the hub's and the proxy's unix sockets: root-owned, 0755, so that users'
        servers reach the hub's socket while nobody else can create anything in it. Named
        after the state folder, so hubs with different state never share one. Without root
        (the single-user trial) it is inside the state folder; a hub that root started and
        that dropped to `hub.account` (ENV_UNPRIVILEGED) keeps root's."""
        if os.geteuid() != 0 and not os.environ.get(ENV_UNPRIVILEGED):
            return self.state_dir / "sockets"
        tag = hashlib.sha256(str(self.state_dir).encode()).hexdigest()[:12]
        return Path("/run/teamhub") / f"hub-{tag}"

    @property
    def hub_socket(self) -> Path:
        """The hub's REST API and pages (mode 0666): proxy, CLI, culler, users' servers."""
        return self.socket_dir / "hub.sock"

    @property
    def proxy_api_socket(self) -> Path:
        """The proxy's route API (mode 0600, root only)."""
        return self.socket_dir / "proxy-api.sock"

    @property
    def proxy_record(self) -> Path:
        """pid, start time and fingerprint of the running proxy, so a restarted hub adopts it."""
        return self.state_dir / "proxy.json"

    @property
    def restart_request(self) -> Path:
        """Written by `teamhub restart` (the pid of a foreground `teamhub up`): that
        process starts itself again when its hub has stopped."""
        return self.state_dir / "restart-requested"

    @property
    def public_url_file(self) -> Path:
        """Where a running hub writes its public base URL (for `teamhub user reset-link`)."""
        return self.state_dir / "hub_public_url"

    @property
    def accounts_db(self) -> Path:
        return self.state_dir / "accounts.sqlite"

    @property
    def store_exists(self) -> bool:
        """Whether there is an account store to read (a server database always counts)."""
        return bool(self.db_url) or self.accounts_db.exists()

    @property
    def root_dir(self) -> Path:
        """Root's own folder beside the state folder (`/var/lib/teamhub-root` for
        `/var/lib/teamhub`): what the root helper trusts and writes (the account registry,
        its lock, the helper's log). Not inside the state folder: with hub.unprivileged that
        is the hub's account's, which could rename, replace or link any name in it; a
        sibling's name is in the state folder's parent, root's (like /var/lib), so only
        root can change it. Root-owned, 0711: the hub's account reaches the registry
        (shared with its group, users.share_with_group) but cannot list or change anything
        (rootfiles.ensure_root_dir). Derived from the state folder, so every install and
        every test's temporary state gets its own."""
        return self.state_dir.with_name(self.state_dir.name + "-root")

    @property
    def system_users(self) -> Path:
        """Registry of the Linux accounts teamhub created (and may therefore use or remove):
        root's, in root_dir (before: `<state>/system_users.json`, moved by
        rootfiles.migrate at a root start)."""
        return self.root_dir / "system_users.json"

    @property
    def old_system_users(self) -> Path:
        """Where the registry was before it moved to root_dir (rootfiles.migrate)."""
        return self.state_dir / "system_users.json"

    @property
    def initial_password(self) -> Path:
        return self.state_dir / "initial-admin-password"

    @property
    def private_runtime(self) -> Path:
        """Per-uid private folders (kernel sockets, connection files) of running servers."""
        return Path("/run/teamhub")

    @property
    def fork_server_socket(self) -> Path:
        """Root-only socket of the fork server that starts users' servers."""
        return self.state_dir / "forkserver.sock"

    @property
    def fork_server_log(self) -> Path:
        """The root helper's (fork server's) log: root's, in root_dir (before:
        `<state>/logs/forkserver.log`, moved by rootfiles.migrate)."""
        return self.root_dir / "forkserver.log"

    @property
    def old_fork_server_log(self) -> Path:
        return self.state_dir / "logs" / "forkserver.log"

    @property
    def proxy_log(self) -> Path:
        """The output of a proxy the root helper started (hub.unprivileged)."""
        return self.state_dir / "logs" / "proxy.log"

    @property
    def gpu_allocations(self) -> Path:
        """Who holds which GPU (teamhub.gpu_allocations); its lock is in `locks/`."""
        return self.state_dir / "gpu-allocations.json"

    @property
    def login_profile(self) -> Path:
        """Login-shell profile of teamhub's accounts (system.login_profile)."""
        return Path("/etc/profile.d/teamhub.sh")

    @property
    def private_tmp_root(self) -> Path:
        """Root-owned folder of the per-server private /tmp folders (`<root>/<uid>`, 0700)."""
        return Path("/var/tmp/teamhub")

    @property
    def runtime_python(self) -> Path:
        return self.runtime_dir / "bin" / "python"

    @property
    def singleuser(self) -> Path:
        return self.runtime_dir / "bin" / "jupyterhub-singleuser"
