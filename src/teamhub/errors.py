"""The errors teamhub raises across its boundaries.

Deep code raises one of these with a message that names the bad value and
says how to fix it; the CLI prints the message as one line and exits
non-zero; web handlers turn it into an HTTP error.
"""

from __future__ import annotations


class TeamhubError(Exception):
    """A problem the admin or user can fix; the message says how."""

    exit_code = 1


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


class LockError(TeamhubError):
    """A root-only lock was held by another process longer than we wait, or its file is odd."""

    exit_code = 6


class DockerError(TeamhubError):
    """The Docker engine is missing, unreachable, or refused a request (docker backend, images)."""

    exit_code = 8


class ImageError(TeamhubError):
    """A container image cannot be built, found or removed."""

    exit_code = 8


class ContainerEnterError(TeamhubError):
    """A server could not be started inside its running container the fast way (docker
    backend); the spawner starts it as the container's own command instead."""

    exit_code = 8
