"""A private PostgreSQL cluster for the db.url tests: Debian's server, run as `postgres`.

initdb in a temp folder owned by `postgres`, listening on 127.0.0.1 only at a free port
(and a Unix socket in that folder, for the superuser's own setup work), password logins
over TCP. `kill()` and `start()` let a test take the server away under a running hub;
`remove()` stops it and deletes the folder.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from .hub import free_port


def _bin(tool: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"))
    if not found:
        raise RuntimeError("PostgreSQL is not installed: run-tests.sh installs Debian's "
                           "`postgresql` (apt-get install postgresql)")
    return found[-1]


class PostgresCluster:
    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="teamhub-pg-"))
        os.chmod(self.folder, 0o755)
        shutil.chown(self.folder, "postgres", "postgres")
        self.data = self.folder / "data"
        self.port = free_port()
        self.password = secrets.token_urlsafe(16)
        self.user = "teamhub_test"
        self._as_postgres([_bin("initdb"), "-D", str(self.data), "-U", "postgres",
                           "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8"])
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                       f"unix_socket_directories = '{self.folder}'\nfsync = off\n")
        self.start()
        self.psql(f"CREATE ROLE {self.user} LOGIN PASSWORD '{self.password}'")

    def _as_postgres(self, argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["runuser", "-u", "postgres", "--", *argv], check=True,
                              capture_output=True, text=True, cwd=self.folder,
                              **kwargs)  # type: ignore[call-overload]

    def start(self) -> None:
        self._as_postgres([_bin("pg_ctl"), "-D", str(self.data), "-l",
                           str(self.folder / "server.log"), "-w", "-t", "120", "start"])

    def pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def kill(self) -> None:
        """Take the server away at once (SIGKILL to the postmaster and its children)."""
        pid = self.pid()
        children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True,
                                  text=True).stdout.split()
        os.kill(pid, signal.SIGKILL)
        for child in children:
            try:
                os.kill(int(child), signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.1)

    def psql(self, sql: str, database: str = "postgres") -> str:
        return self._as_postgres([_bin("psql"), "-h", str(self.folder), "-p", str(self.port),
                                  "-d", database, "-v", "ON_ERROR_STOP=1", "-At", "-c",
                                  sql]).stdout

    def new_database(self, owner: str | None = None) -> str:
        """A fresh database (owned by the test role unless OWNER); its URL for that role."""
        name = "t_" + secrets.token_hex(6)
        self.psql(f"CREATE DATABASE {name} OWNER {owner or self.user}")
        return self.url(name)

    def url(self, database: str, password: str | None = None) -> str:
        return (f"postgresql://{self.user}:{password or self.password}@127.0.0.1:"
                f"{self.port}/{database}")

    def remove(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(["runuser", "-u", "postgres", "--", _bin("pg_ctl"), "-D",
                            str(self.data), "-m", "immediate", "-w", "stop"],
                           capture_output=True, cwd=self.folder)
        shutil.rmtree(self.folder, ignore_errors=True)


def db_toml(url: str) -> str:
    """The teamhub.toml lines that set db.url (none for sqlite)."""
    return f'[db]\nurl = "{url}"\n' if url else ""
