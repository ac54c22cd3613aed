"""Every filesystem location teamhub uses, derived from settings in one place.

Tests point settings (and so every path here) at temporary folders.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .settings import Settings


@dataclass(frozen=True)
class Paths:
    config_file: Path
    state_dir: Path
    runtime_dir: Path
    home_root: Path
    projects_root: Path = Path("/srv/teamhub/projects")

    @classmethod
    def from_settings(cls, settings: Settings) -> Paths:
        return cls(
            config_file=Path(settings.config_file),
            state_dir=Path(settings["paths.state_dir"]),
            runtime_dir=Path(settings["paths.runtime_dir"]),
            home_root=Path(settings["paths.home_root"]),
            projects_root=Path(settings["projects.root"]),
        )

    @property
    def config_d(self) -> Path:
        """Raw JupyterHub config files (`*.py`), loaded last: the escape hatch."""
        return self.config_file.parent / "jupyterhub_config.d"

    @property
    def hub_db(self) -> Path:
        return self.state_dir / "jupyterhub.sqlite"

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
        """Where a running hub writes the loopback URL of its REST API for the CLI."""
        return self.state_dir / "hub_api_url"

    @property
    def hub_pid_file(self) -> Path:
        """JupyterHub's pid file: with the state dir's owner, what tells the real hub."""
        return self.state_dir / "jupyterhub.pid"

    @property
    def public_url_file(self) -> Path:
        """Where a running hub writes its public base URL (for `teamhub user reset-link`)."""
        return self.state_dir / "hub_public_url"

    @property
    def accounts_db(self) -> Path:
        return self.state_dir / "accounts.sqlite"

    @property
    def system_users(self) -> Path:
        """Registry of the Linux accounts teamhub created (and may therefore use or remove)."""
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
        return self.state_dir / "logs" / "forkserver.log"

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
