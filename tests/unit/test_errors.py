"""Errors live in teamhub.errors and carry the fix beside the message."""

from __future__ import annotations

import ast
from pathlib import Path

from click.testing import CliRunner

from teamhub import doctor
from teamhub.cli import cli
from teamhub.errors import AccountError, TeamhubError, TlsError
from teamhub.paths import Paths
from teamhub.settings import load

SRC = Path(__file__).resolve().parents[2] / "src" / "teamhub"
# JupyterHub's SpawnException: teamhub.errors (imported by the CLI) stays free of JupyterHub.
ELSEWHERE = {"spawners/local.py": {"SpawnFailed"}}


def _exception_classes(path: Path) -> set[str]:
    """Classes in PATH that derive from an exception (by the base's name)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ClassDef):
            bases = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "")
                     for b in node.bases}
            if any(b.endswith(("Error", "Exception", "Unavailable", "Link", "Failed"))
                   for b in bases):
                found.add(node.name)
    return found


def test_every_error_class_is_in_errors_py() -> None:
    stray = {}
    for path in SRC.rglob("*.py"):
        rel = str(path.relative_to(SRC))
        if rel == "errors.py":
            continue
        extra = _exception_classes(path) - ELSEWHERE.get(rel, set())
        if extra:
            stray[rel] = sorted(extra)
    assert stray == {}
    assert {"TeamhubError", "TlsError", "ProjectError", "SandboxError"} <= _exception_classes(
        SRC / "errors.py")


def test_an_error_carries_message_and_hint_and_reads_as_one_line() -> None:
    exc = AccountError("user 'x' does not exist", "see `teamhub user list`")
    assert (exc.message, exc.hint) == ("user 'x' does not exist", "see `teamhub user list`")
    assert str(exc) == "user 'x' does not exist; see `teamhub user list`"
    plain = TeamhubError("just a message")
    assert (str(plain), plain.hint) == ("just a message", "")


def test_the_cli_prints_message_and_hint_as_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--config", str(tmp_path / "t.toml"), "tls",
                                      "self-signed", "--days", "0"])
    assert result.exit_code == TlsError.exit_code
    assert result.output == "teamhub: error: --days 0 is out of range; use 1 to 3650\n"


def test_doctor_shows_the_hint_as_the_fix(tmp_path: Path) -> None:
    cfg = tmp_path / "teamhub.toml"
    cfg.write_text(f'[tls]\ncert = "{tmp_path}/none.pem"\nkey = "{tmp_path}/none.key"\n')
    settings = load(cfg, environ={})
    result = doctor.tls_certificate(doctor.Probe(settings, Paths.from_settings(settings)))
    assert result.ok is False
    assert result.detail == f"TLS certificate {tmp_path}/none.pem does not exist"
    assert result.fix.startswith("fix tls.cert (`teamhub config set tls.cert PATH`)")


def test_spawn_failures_are_jupyterhubs_spawn_exception_with_the_users_message() -> None:
    from jupyterhub.spawner import SpawnException

    from teamhub.spawners.local import SpawnFailed

    exc = SpawnFailed("Your server stopped while starting", reason="exited")
    assert isinstance(exc, SpawnException)
    assert exc.reason == "exited" and exc.status_code == 500
    # What the spawn page and the progress events show: the message as it is.
    assert str(exc) == exc.message == exc.jupyterhub_message == (
        "Your server stopped while starting")
