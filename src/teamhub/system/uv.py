"""Run uv: make venvs, install, uninstall, list, freeze and lock packages.

OS plumbing only (nothing here knows about JupyterHub or revisions). Every call
streams uv's own output line by line to a callback (the CLI shows it as build
progress) and appends it to a log file; a failure raises EnvError carrying
uv's last lines, which name the package or version that broke the build.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ..errors import EnvError

# The system CA store, because registries may sit behind a TLS-intercepting proxy.
SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"

Echo = Callable[[str], None]


@dataclass(frozen=True)
class Uv:
    """One uv binary with its cache folder (keep it on the envs' filesystem: hard links).

    UMASK, when set, is uv's umask: what it creates (and the cache files an env
    shares as hard links) then needs no mode fixing afterwards.
    """

    binary: Path
    cache_dir: Path | None = None
    umask: int | None = None
    # Run as another account: this command line before uv's (envs.store.Builder), with
    # HOME the cache folder and package files copied, never hard-linked from the cache.
    prefix: tuple[str, ...] = ()

    def environ(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.cache_dir is not None:
            env["UV_CACHE_DIR"] = str(self.cache_dir)
        if "SSL_CERT_FILE" not in env and os.path.exists(SYSTEM_CA):
            env["SSL_CERT_FILE"] = SYSTEM_CA
        # Only interpreters already on this machine: no downloads, and never a
        # uv-managed Python in root's home that other users could not run.
        env["UV_PYTHON_DOWNLOADS"] = "never"
        env["UV_PYTHON_PREFERENCE"] = "only-system"
        env["UV_NO_PROGRESS"] = "1"
        env.pop("VIRTUAL_ENV", None)
        if self.prefix:
            env["HOME"] = str(self.cache_dir or "/nonexistent")
            env["UV_LINK_MODE"] = "copy"
        return env

    def run(self, args: Sequence[str], *, log: IO[str] | None = None, echo: Echo | None = None,
            stdin: str | None = None, capture: bool = False) -> str:
        """Run `uv ARGS`; return its stdout when CAPTURE, else stream everything to ECHO/LOG."""
        cmd = [*self.prefix, str(self.binary), *args]
        if log is not None:
            log.write("$ " + " ".join(cmd) + "\n")
            log.flush()
        try:
            proc = subprocess.Popen(
                cmd, env=self.environ(), text=True, stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE if capture else subprocess.STDOUT,
                umask=-1 if self.umask is None else self.umask,
            )
        except OSError as exc:
            raise EnvError(f"cannot run uv ({self.binary}): {exc.strerror}") from None
        if stdin is not None:
            proc.stdin.write(stdin)  # type: ignore[union-attr]
        proc.stdin.close()  # type: ignore[union-attr]
        out: list[str] = []
        assert proc.stdout is not None
        for line in proc.stdout:
            out.append(line)
            if not capture:
                if echo is not None:
                    echo(line.rstrip("\n"))
                if log is not None:
                    log.write(line)
                    log.flush()
        err = proc.stderr.read() if capture and proc.stderr else ""
        code = proc.wait()
        if log is not None and err:
            log.write(err)
        if code != 0:
            tail = (err or "".join(out)).strip().splitlines()[-12:]
            raise EnvError(f"uv {args[0]} {args[1] if len(args) > 1 else ''} failed "
                           f"(exit {code}):\n" + "\n".join(tail))
        return "".join(out)

    def venv(self, path: Path, python: str, **kw: object) -> None:
        self.run(["venv", "--python", python, "--no-config", str(path)], **kw)  # type: ignore[arg-type]

    def install(self, python: Path, packages: Sequence[str], requirement_files: Sequence[Path] = (),
                compile_bytecode: bool = True, **kw: object) -> None:
        args = ["pip", "install", "--python", str(python)]
        if compile_bytecode:
            args.append("--compile-bytecode")
        for f in requirement_files:
            args += ["-r", str(f)]
        self.run([*args, *packages], **kw)  # type: ignore[arg-type]

    def uninstall(self, python: Path, packages: Sequence[str], **kw: object) -> None:
        self.run(["pip", "uninstall", "--python", str(python), *packages], **kw)  # type: ignore[arg-type]

    def packages(self, python: Path) -> dict[str, str]:
        """{name: version} of everything installed in the env of PYTHON."""
        text = self.run(["pip", "list", "--python", str(python), "--format", "json"],
                        capture=True)
        return {p["name"]: p["version"] for p in json.loads(text or "[]")}

    def freeze(self, python: Path) -> str:
        return self.run(["pip", "freeze", "--python", str(python)], capture=True)

    def lock_with_hashes(self, python: Path, pinned: str) -> str:
        """PINNED (`name==version` lines) resolved again with every file's hash."""
        return self.run(["pip", "compile", "-", "--python", str(python), "--generate-hashes",
                         "--no-header", "--quiet"], stdin=pinned, capture=True)


def world_usable(path: Path) -> bool:
    """True if every user may run PATH: the real file and each folder above are o+x."""
    real = Path(os.path.realpath(path))
    for part in [real, *real.parents]:
        try:
            mode = part.stat().st_mode
        except OSError:
            return False
        if not mode & 0o001:
            return False
    return True
