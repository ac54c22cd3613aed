"""Every error class teamhub defines, but one (SpawnFailed, see below).

Deep code raises a TeamhubError with a message that names the bad value and a
hint that says how to fix it; the CLI prints both as one line and exits
non-zero; doctor shows them as problem and fix; web handlers turn them into an
HTTP error. The one error class that lives elsewhere is spawners.local.SpawnFailed:
it is JupyterHub's SpawnException (so the hub counts and reports failed starts),
and this module, which the CLI imports, stays free of JupyterHub.
"""

from __future__ import annotations


class TeamhubError(Exception):
    """A problem the admin or user can fix: MESSAGE says what is wrong, HINT how to fix it.

    str() is both, "message; hint", as one line (what the CLI prints)."""

    exit_code = 1

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message, hint)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message


class SettingsError(TeamhubError):
    """teamhub.toml or a TEAMHUB_* variable holds an unknown key or a bad value."""

    exit_code = 2


class PreflightError(TeamhubError):
    """`teamhub up` found something that would stop the hub or its users from working."""

    exit_code = 3


class AccountError(TeamhubError):
    """An account operation cannot be done (unknown user, duplicate, bad name or password)."""

    exit_code = 4


class SystemUserError(TeamhubError):
    """A Linux account cannot be created, used or removed safely."""

    exit_code = 5


class HubNotRunning(TeamhubError):
    """No hub runs: no live process in its pid file and nothing listens on its channel.

    Only then may the CLI change the hub's database itself.
    """

    exit_code = 7


class HubError(TeamhubError):
    """A hub runs (or something answers in its place) but the CLI cannot use it now:
    it did not answer in time, or what answers is not the hub. Nothing was sent
    to an impostor, and the hub's database was left alone."""

    exit_code = 7


class HubNotAnswering(HubError):
    """The hub's process is alive but gave no (complete) answer in time."""


class HubImpostor(HubError):
    """Something other than the hub listens on the hub's channel."""


class EnvError(TeamhubError):
    """A shared or personal environment cannot be built, changed or found."""

    exit_code = 6


class TakeoverError(EnvError):
    """A tree built by an unprivileged builder holds what root will not take over (a fifo,
    a file of another owner, a hard link): the build fails, its tree is deleted."""


class LabExtensionError(TeamhubError):
    """A JupyterLab extension cannot be added to or removed from the runtime."""

    exit_code = 6


class LockError(TeamhubError):
    """A root-only lock was held by another process longer than we wait, or its file is odd."""

    exit_code = 6


class DockerError(TeamhubError):
    """The Docker engine is missing, unreachable, or refused a request (docker backend, images)."""

    exit_code = 8


class ImageError(TeamhubError):
    """A container image cannot be built, found or removed."""

    exit_code = 8


class ExportError(TeamhubError):
    """`teamhub export` cannot write what was asked: the folder exists, or settings the
    target cannot express were met without --allow-loss."""

    exit_code = 10


class LossError(ExportError):
    """Settings the chart cannot express, met without --allow-loss; `losses` lists them."""

    def __init__(self, losses: list[str]) -> None:
        super().__init__(f"{len(losses)} setting(s) above cannot be expressed in the chart",
                         "change them, or export anyway with --allow-loss (nothing was "
                         "written)")
        self.losses = losses


class GpuError(TeamhubError):
    """The `[gpus]` settings cannot be honoured here (no driver, a GPU that does not exist,
    more GPUs than the machine has, a group or user that does not exist)."""

    exit_code = 9


class GpusBusy(GpuError):
    """Not enough free GPUs for a server's start; nothing was taken. HOLDERS maps each
    device's UUID to whoever holds it (for admins); users are told the counts only."""

    def __init__(self, message: str, *, needed: int = 0, free: int = 0,
                 holders: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.needed, self.free = needed, free
        self.holders = holders or {}


class PrivateFolderError(TeamhubError):
    """A folder or file root makes for one account's server is not safe to make there."""


class HelperRefused(TeamhubError):
    """The root helper will not do what a peer asked (teamhub.spawners.rootdoor); the
    reason goes to the helper's log, with the peer's pid, and back to the peer."""


class ContainerEnterError(TeamhubError):
    """A server could not be started inside its running container the fast way (docker
    backend); the spawner starts it as the container's own command instead."""

    exit_code = 8


class ProjectError(TeamhubError):
    """A project operation cannot be done (unknown project, bad name, not empty...)."""

    exit_code = 7


class BackupError(TeamhubError):
    """A backup cannot be made, or an archive cannot be restored."""


class DatabaseMoveError(TeamhubError):
    """`teamhub db migrate` cannot copy the sqlite files into the database it was given."""

    exit_code = 11


class RootFilesError(TeamhubError):
    """Root's own folder beside the state folder (Paths.root_dir: the account registry, the
    root helper's log) is not one only root can change; the hint says how to make it so."""


class TlsError(TeamhubError):
    """A TLS certificate or key cannot be made or used."""


class AclError(TeamhubError):
    """setfacl/getfacl/chown failed, or the filesystem does not support ACLs."""

    exit_code = 6


class SystemdError(TeamhubError):
    """systemd is missing or refused a request; the message says what to do."""


class NamespaceError(TeamhubError):
    """A private /tmp or /dev/shm could not be set up."""


class NoFreePort(TeamhubError):
    """No TCP port outside the ephemeral range was free for a user's server."""


class InvalidLink(AccountError):
    """The reset link is unknown, used or expired (deliberately not saying which)."""


class PasswordPolicyError(AccountError):
    """A password breaks one rule of the policy (the message names it, never the password)."""


# Not teamhub errors: no one but the code that raises them sees them.


class SandboxError(RuntimeError):
    """The process could not be made into the user's server; nothing of it may run."""


class ForkServerUnavailable(Exception):
    """The fork server could not start this server; the caller starts it normally."""
