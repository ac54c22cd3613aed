"""The one way teamhub talks to JupyterHub over HTTP: `HubClient`.

The CLI reaches a running hub at the URL it announced in the state dir
(`http://127.0.0.1:<port>/hub/api`, or `http+unix://<socket>/hub/api`) with the
token of the `teamhub-cli` service (`HubClient.for_cli`). Any user can listen on
a free port, so before a byte is sent the client checks that the hub is what
took the connection (`HubIdentity.check`): the hub's account is the state dir's
owner, and the hub's process is the live pid in its pid file.

- TCP: the server's end of the connection must belong to the hub's account and
  the listener must be held by the hub's process (system/sockets.py).
- unix socket: the socket and its folder must be the hub's account's (or root's)
  and not writable by others, and the peer (SO_PEERCRED) the hub's account.

Every failure is one of three errors: `HubNotRunning` (provably no hub: no live
process in its pid file and nothing listening, so a caller may fall back to the
hub's database), `HubNotAnswering` (a hub runs but gave no answer in time: retry,
never fall back), `HubImpostor` (something else answers: it was sent nothing).
Other clients (status and doctor probing the public port) send no secret and
skip the identity check; they share the timeouts and error handling.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import stat
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from .errors import HubError, HubImpostor, HubNotAnswering, HubNotRunning, TeamhubError
from .paths import Paths
from .system import sockets

# One timeout policy for every call: a hub that takes longer is busy or stuck.
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 10.0
# Changes may wait for servers to stop.
CHANGE_TIMEOUT = 30.0

RETRY_HINT = ("try again in a moment; if it stays so, restart the hub "
              "(`teamhub restart`; users' servers keep running)")


def answer_timeout(method: str) -> float:
    return READ_TIMEOUT if method in ("GET", "HEAD") else CHANGE_TIMEOUT


@dataclass(frozen=True)
class Endpoint:
    """Where a URL points: TCP host and port or a unix socket, and a path prefix."""

    scheme: str  # "http", "https" or "unix"
    host: str
    port: int
    socket_path: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        parts = urllib.parse.urlsplit(url.strip())
        prefix = parts.path.rstrip("/")
        if parts.scheme in ("http+unix", "unix+http"):
            path = urllib.parse.unquote(parts.netloc)
            if path.startswith("/"):
                return cls("unix", "localhost", 0, path, prefix)
        elif parts.scheme in ("http", "https"):
            try:
                port = parts.port or (443 if parts.scheme == "https" else 80)
            except ValueError:
                port = 0
            if parts.hostname and port:
                return cls(parts.scheme, parts.hostname, port, "", prefix)
        raise TeamhubError(f"cannot use the hub URL {url.strip()[:200]!r}: give "
                           "http://HOST:PORT/PATH or http+unix://<percent-encoded absolute "
                           "socket path>/PATH")

    def __str__(self) -> str:
        if self.scheme == "unix":
            return f"unix socket {self.socket_path}"
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class Reply(NamedTuple):
    status: int
    body: Any  # the JSON answer, or None


@dataclass(frozen=True)
class HubIdentity:
    """What tells the real hub from anything else on its channel."""

    state_dir: Path
    pid_file: Path

    @classmethod
    def of(cls, paths: Paths) -> HubIdentity:
        return cls(paths.state_dir, paths.hub_pid_file)

    def uid(self) -> int:
        """The hub's account: the owner of its root-only state dir."""
        return self.state_dir.stat().st_uid

    def live_pid(self) -> int | None:
        """The hub's pid if its pid file names a live process of the hub's account."""
        try:
            return sockets.pid_file_process(self.pid_file, self.uid())
        except OSError:  # no state dir: no hub ever ran here
            return None

    def nothing_listens(self, where: Endpoint) -> TeamhubError:
        """The error for a refused connection: is the hub provably down, or starting?"""
        pid = self.live_pid()
        if pid is not None:
            return HubNotAnswering(f"the hub (pid {pid}) runs but does not listen on {where} "
                                   "(starting or stopping?)", f"{RETRY_HINT}")
        return HubNotRunning(f"no hub is running (nothing listens on {where}, and "
                             f"{self.pid_file} names no live hub process)")

    def check(self, sock: socket.socket, where: Endpoint) -> None:
        """Raise HubImpostor unless the hub is what SOCK is connected to."""
        uid = self.uid()
        if where.scheme == "unix":
            self._check_unix(sock, where, uid)
        else:
            self._check_tcp(sock, where, uid)

    def _check_tcp(self, sock: socket.socket, where: Endpoint, uid: int) -> None:
        conn = sockets.connection(sock)
        if conn is None:
            raise HubImpostor(f"the hub URL points to {where}, which is not on this machine "
                              "(or the connection vanished): the CLI only sends its token to "
                              "a hub it can verify", "restart the hub with `teamhub up`")
        end, listeners = conn.server_end, conn.listeners
        pid = self.live_pid()
        if end.uid == uid and pid is not None and any(
                sockets.holds(pid, entry.inode) for entry in listeners):
            return
        holders = sorted({p for entry in listeners for p in sockets.holders(entry.inode)})
        who = (", ".join(sockets.describe_process(p) for p in holders) if holders else
               f"a socket of user {sockets.user_name(end.uid)}")
        raise self._impostor(where, who, holders, pid)

    def _check_unix(self, sock: socket.socket, where: Endpoint, uid: int) -> None:
        path = Path(where.socket_path)
        try:
            st = os.lstat(path)
        except OSError as exc:
            raise HubImpostor(f"cannot look at the hub's socket {path}: {exc.strerror}; "
                              "nothing was sent") from None
        if not stat.S_ISSOCK(st.st_mode) or st.st_uid != uid:
            raise HubImpostor(f"{path} is not a socket of the hub's account (owner: user "
                              f"{sockets.user_name(st.st_uid)}); nothing was sent to it",
                              "remove it and restart the hub with `teamhub up`")
        for folder in [path.parent, *path.parent.parents]:
            fst = os.lstat(folder)
            # Writable by others: anyone could have put their own socket there. A
            # sticky folder above is fine (entries can't be replaced by others).
            open_to_others = fst.st_mode & 0o022 and not (
                folder != path.parent and fst.st_mode & stat.S_ISVTX)
            if fst.st_uid not in (uid, 0) or open_to_others:
                raise HubImpostor(
                    f"the hub's socket folder {folder} can be changed by users other than "
                    f"the hub's (owner {sockets.user_name(fst.st_uid)}, mode "
                    f"{stat.S_IMODE(fst.st_mode):o}), so the CLI cannot trust {path}; "
                    "nothing was sent", "make it root's and not writable by others")
        peer = sockets.peer_credentials(sock)
        if peer.uid != uid:
            raise self._impostor(where, sockets.describe_process(peer.pid), [peer.pid],
                                 self.live_pid())

    def _impostor(self, where: Endpoint, who: str, holders: list[int],
                  pid: int | None) -> HubImpostor:
        hub = f"the hub (pid {pid}) does not hold it" if pid else "no hub is running"
        fix = (f"end it (`kill {' '.join(map(str, holders))}`) and " if holders else "") + \
            "start the hub (`teamhub up`)"
        return HubImpostor(f"not the hub but {who} answers on the hub's {where} ({hub}); "
                           "the CLI sent it nothing", f"{fix}")


class _Connection(http.client.HTTPConnection):
    """http.client over TCP or a unix socket, checked by IDENTITY before use; http.client
    calls connect() for every new socket, so no request can skip the check."""

    def __init__(self, where: Endpoint, answer_in: float, identity: HubIdentity | None) -> None:
        super().__init__(where.host, where.port or None, timeout=CONNECT_TIMEOUT)
        self.where, self.answer_in, self.identity = where, answer_in, identity

    def connect(self) -> None:
        if self.where.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(CONNECT_TIMEOUT)
            try:
                sock.connect(self.where.socket_path)
            except BaseException:
                sock.close()
                raise
        else:
            sock = socket.create_connection((self.where.host, self.where.port), CONNECT_TIMEOUT)
        try:
            if self.identity is not None:
                try:
                    self.identity.check(sock, self.where)
                except OSError as exc:
                    # Never mistaken for "nothing listens": that would allow the fallback.
                    raise HubImpostor(f"cannot tell what answers on {self.where} ({exc}); "
                                      "the CLI sent it nothing") from None
            if self.where.scheme == "https":
                # Reachability, not trust: no secret goes over this (doctor's "tls" check
                # looks at the certificate).
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
                sock = context.wrap_socket(sock, server_hostname=self.where.host)
        except BaseException:
            sock.close()
            raise
        sock.settimeout(self.answer_in)
        self.sock = sock


class HubClient:
    """JSON over HTTP to one URL, with one timeout policy and one set of errors."""

    def __init__(self, url: str, token: str | None = None,
                 identity: HubIdentity | None = None) -> None:
        self.url, self.endpoint = url, Endpoint.parse(url)
        if token is not None and identity is None:
            raise ValueError("a token is only ever sent to a verified hub")
        self.token, self.identity = token, identity

    @classmethod
    def for_cli(cls, paths: Paths) -> HubClient:
        """The CLI's client of the running hub; HubNotRunning if no hub announced itself."""
        identity = HubIdentity.of(paths)
        try:
            url = paths.hub_url_file.read_text().strip()
            token = paths.api_token.read_text().strip()
        except FileNotFoundError:
            url = token = ""
        except PermissionError as exc:
            raise TeamhubError(f"cannot read {exc.filename}: the hub's state is root's",
                               "run "
                               "this as root (sudo teamhub ...)") from None
        if not (url and token):
            pid = identity.live_pid()
            if pid is not None:
                raise HubNotAnswering(f"a hub runs (pid {pid}) but has not announced its API "
                                      f"in {paths.hub_url_file}", f"{RETRY_HINT}")
            raise HubNotRunning("no hub is running (none has announced itself in "
                                f"{paths.state_dir})")
        return cls(url, token, identity)

    def call(self, method: str, path: str, body: object | None = None) -> Reply:
        """METHOD the prefix + PATH; a reply for every HTTP status, errors for no answer."""
        timeout = answer_timeout(method)
        conn = _Connection(self.endpoint, timeout, self.identity)
        headers = {"Accept": "application/json"}
        if self.token is not None:
            headers["Authorization"] = f"token {self.token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, self.endpoint.prefix + path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        except (ConnectionRefusedError, FileNotFoundError):
            raise self._nothing_listens() from None
        except TimeoutError:
            late = "" if method in ("GET", "HEAD") else (
                ": the CLI changed nothing itself, and the hub may still carry out the "
                "request when it wakes")
            raise HubNotAnswering(self._who() + f" did not answer within {timeout:g} s "
                                  f"(busy or stopped){late}", RETRY_HINT) from None
        except (OSError, http.client.HTTPException) as exc:
            raise HubNotAnswering(self._who() + f" broke off its answer ({exc})",
                                  RETRY_HINT) from None
        finally:
            conn.close()
        try:
            return Reply(resp.status, json.loads(raw) if raw else None)
        except ValueError:
            return Reply(resp.status, None)

    def answers(self) -> bool:
        """True if something (for the CLI's client: the verified hub) answers below 500;
        False if provably nothing runs; HubError otherwise."""
        try:
            return self.call("GET", "/").status < 500
        except HubNotRunning:
            return False

    def _who(self) -> str:
        pid = self.identity.live_pid() if self.identity else None
        return (f"the hub (pid {pid})" if pid else "what listens") + f" on {self.endpoint}"

    def _nothing_listens(self) -> TeamhubError:
        if self.identity is not None:
            return self.identity.nothing_listens(self.endpoint)
        return HubNotRunning(f"nothing listens on {self.endpoint}")


def hub_running(paths: Paths) -> bool:
    """Whether the verified hub answers (True) or provably none runs (False); a hub that
    runs but does not answer, or an impostor, raises HubError."""
    try:
        return HubClient.for_cli(paths).answers()
    except HubNotRunning:
        return False


def hub_may_run(paths: Paths) -> bool:
    """False only when no hub runs, provably; for callers that must not touch its state."""
    try:
        return hub_running(paths)
    except HubError:
        return True
