"""A small client for the local Docker Engine API, over its unix socket.

teamhub talks to the engine itself rather than through the `docker` command or the
Docker SDK: each call opens its own connection, so calls from many threads run side
by side (dockerspawner funnels every call through one thread, which is what makes a
burst of spawns time out), and no extra package is needed. Only what teamhub uses is
here: ping/info, images (inspect, list, import, tag, remove) and containers (create,
start, inspect, list, export, logs, stop, remove) and volumes (create, list, remove).

Plain OS plumbing: nothing here imports JupyterHub.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from collections.abc import Callable, Iterable
from typing import IO, Any
from urllib.parse import quote, urlencode

from ..errors import DockerError

DEFAULT_SOCKET = "/var/run/docker.sock"
START_HINT = ("start the Docker engine (`systemctl start docker`, or `dockerd &` on a machine "
              "without systemd) or install it (`apt-get install docker.io`)")


def socket_path() -> str:
    """The engine's socket: DOCKER_HOST when it names a unix socket, else the default."""
    host = os.environ.get("DOCKER_HOST", "")
    if host.startswith("unix://"):
        return host[len("unix://"):]
    return DEFAULT_SOCKET


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class Engine:
    """The Docker engine at a unix socket. Thread-safe: one connection per call."""

    def __init__(self, path: str | None = None, timeout: float = 60) -> None:
        self.path = path or socket_path()
        self.timeout = timeout

    def request(self, method: str, url: str, *, query: dict[str, Any] | None = None,
                body: Any = None, data: IO[bytes] | None = None,
                content_type: str = "application/json",
                timeout: float | None = None, ok: Iterable[int] = ()) -> tuple[int, bytes]:
        """(status, body); a status >= 400 not in OK raises DockerError with the engine's word."""
        if query:
            url += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        conn = _UnixConnection(self.path, timeout or self.timeout)
        try:
            headers = {"Content-Type": content_type}
            if data is not None:
                # No length known: http.client sends it chunked.
                conn.request(method, url, body=data, headers=headers, encode_chunked=True)
            else:
                payload = json.dumps(body).encode() if body is not None else None
                conn.request(method, url, body=payload, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        except FileNotFoundError:
            raise DockerError(f"the Docker engine is not running (no socket at {self.path})",
                              f"{START_HINT}") from None
        except ConnectionRefusedError:
            raise DockerError(f"the Docker engine is not running (nothing answers on "
                              f"{self.path})", f"{START_HINT}") from None
        except PermissionError:
            raise DockerError(f"no permission to use the Docker engine at {self.path}",
                              "run teamhub as root") from None
        except (OSError, http.client.HTTPException) as exc:
            raise DockerError(f"the Docker engine at {self.path} did not answer "
                              f"{method} {url.split('?')[0]}: {exc}") from None
        finally:
            conn.close()
        if resp.status >= 400 and resp.status not in set(ok):
            raise DockerError(f"Docker refused {method} {url.split('?')[0]}: "
                              f"{_message(raw)} (HTTP {resp.status})")
        return resp.status, raw

    def json(self, method: str, url: str, **kwargs: Any) -> Any:
        _, raw = self.request(method, url, **kwargs)
        return json.loads(raw) if raw.strip() else None

    # Engine

    def ping(self) -> None:
        """Raise DockerError, saying how to fix it, unless the engine answers."""
        self.request("GET", "/_ping", timeout=10)

    def info(self) -> dict[str, Any]:
        return self.json("GET", "/info")

    # Images

    def image(self, ref: str) -> dict[str, Any] | None:
        status, raw = self.request("GET", f"/images/{quote(ref, safe='/:')}/json", ok=(404,))
        return None if status == 404 else json.loads(raw)

    def images(self, label: str | None = None) -> list[dict[str, Any]]:
        filters = {"label": [label]} if label else {}
        return self.json("GET", "/images/json", query={"filters": json.dumps(filters)})

    def import_image(self, data: IO[bytes], repo: str, tag: str,
                     changes: list[str]) -> None:
        """Import a root filesystem tar from DATA as REPO:TAG, with Dockerfile CHANGES."""
        query: list[tuple[str, str]] = [("fromSrc", "-"), ("repo", repo), ("tag", tag)]
        query += [("changes", change) for change in changes]
        url = "/images/create?" + urlencode(query)
        _, raw = self.request("POST", url, data=data, content_type="application/x-tar",
                              timeout=1800)
        # Errors during an import come in the progress stream, with a 200 status.
        for line in raw.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and event.get("error"):
                raise DockerError(f"Docker could not import {repo}:{tag}: {event['error']}")

    def tag(self, ref: str, repo: str, tag: str) -> None:
        self.request("POST", f"/images/{quote(ref, safe='/:')}/tag",
                     query={"repo": repo, "tag": tag})

    def remove_image(self, ref: str) -> bool:
        """Untag/remove REF; False when there was no such image."""
        status, _ = self.request("DELETE", f"/images/{quote(ref, safe='/:')}", ok=(404,))
        return status != 404

    # Containers

    def create(self, name: str, config: dict[str, Any]) -> str:
        return self.json("POST", "/containers/create", query={"name": name}, body=config)["Id"]

    def start(self, ident: str) -> None:
        self.request("POST", f"/containers/{ident}/start")

    def container(self, ident: str) -> dict[str, Any] | None:
        status, raw = self.request("GET", f"/containers/{ident}/json", ok=(404,))
        return None if status == 404 else json.loads(raw)

    def containers(self, label: str | None = None) -> list[dict[str, Any]]:
        filters = {"label": [label]} if label else {}
        return self.json("GET", "/containers/json",
                         query={"all": "1", "filters": json.dumps(filters)})

    def export(self, ident: str, out: IO[bytes], progress: Callable[[int], None] | None = None,
               every: int = 100_000_000) -> int:
        """Write container IDENT's files as a tar to OUT, streamed; how many bytes.
        PROGRESS hears the count after each EVERY bytes."""
        conn = _UnixConnection(self.path, 1800)
        url = f"/containers/{ident}/export"
        try:
            try:
                conn.request("GET", url)
                resp = conn.getresponse()
            except OSError as exc:
                raise DockerError(f"the Docker engine at {self.path} did not answer GET {url}: "
                                  f"{exc}") from None
            if resp.status >= 400:
                raise DockerError(f"Docker refused GET {url}: {_message(resp.read())} "
                                  f"(HTTP {resp.status})")
            total, reported = 0, 0
            while chunk := resp.read(1 << 20):
                out.write(chunk)
                total += len(chunk)
                if progress and total - reported >= every:
                    progress(total)
                    reported = total
            return total
        finally:
            conn.close()

    def logs(self, ident: str, tail: int = 20) -> str:
        """The container's last output lines (stdout and stderr), best effort."""
        try:
            _, raw = self.request("GET", f"/containers/{ident}/logs",
                                  query={"stdout": 1, "stderr": 1, "tail": tail}, ok=(404,))
        except DockerError:
            return ""
        return _demux(raw).decode("utf-8", "replace")

    def stop(self, ident: str, timeout: int = 10) -> None:
        # 304: already stopped; 404: already gone.
        self.request("POST", f"/containers/{ident}/stop", query={"t": timeout},
                     timeout=timeout + 30, ok=(304, 404))

    def remove(self, ident: str) -> None:
        """Remove the container (running or not) and its anonymous volumes; gone is fine."""
        self.request("DELETE", f"/containers/{ident}", query={"force": "1", "v": "1"},
                     ok=(404,))

    # Volumes

    def create_volume(self, name: str, labels: dict[str, str]) -> dict[str, Any]:
        """Volume NAME (made if missing; an existing one is returned as it is)."""
        return self.json("POST", "/volumes/create", body={"Name": name, "Labels": labels})

    def volumes(self, label: str | None = None) -> list[dict[str, Any]]:
        filters = {"label": [label]} if label else {}
        answer = self.json("GET", "/volumes", query={"filters": json.dumps(filters)})
        return answer.get("Volumes") or []

    def remove_volume(self, name: str) -> bool:
        """Remove volume NAME; False when there was none."""
        status, _ = self.request("DELETE", f"/volumes/{quote(name)}", ok=(404,))
        return status != 404


def _message(raw: bytes) -> str:
    try:
        return str(json.loads(raw).get("message", "")).strip() or raw.decode(errors="replace")
    except (ValueError, AttributeError):
        return raw.decode(errors="replace").strip()


def _demux(raw: bytes) -> bytes:
    """Plain bytes from the engine's multiplexed log stream (8-byte frame headers)."""
    out = bytearray()
    i = 0
    while i + 8 <= len(raw) and raw[i] in (0, 1, 2) and raw[i + 1:i + 4] == b"\0\0\0":
        size = int.from_bytes(raw[i + 4:i + 8], "big")
        out += raw[i + 8:i + 8 + size]
        i += 8 + size
    return bytes(out) if i else raw
