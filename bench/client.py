"""A browser-like user of a hub: form login, spawn, Lab page, a kernel over its websocket.

Each `User` is one person with one cookie jar, as hubtraf simulates them. Every
step returns the seconds it took; a step that fails raises `StepFailed` naming
the user, the step and what the hub answered.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from urllib.parse import urlparse

import requests
import websocket

_XSRF_FIELD = re.compile(r'name="_xsrf"\s+value="([^"]+)"')


class StepFailed(Exception):
    pass


class User:
    def __init__(self, base_url: str, name: str, password: str) -> None:
        # `localhost`, not 127.0.0.1: cookie jars drop cookies set by IP-address hosts.
        self.base = base_url.rstrip("/")
        self.name = name
        self.password = password
        self.http = requests.Session()
        # Seconds from the spawn request until the hub said the server is ready (the rest
        # of a spawn is the Lab page itself: OAuth redirects and the page through the proxy).
        self.last_ready_s = 0.0
        self.last_request_at = 0.0  # wall clock of the last spawn request, for timelines
        self.last_spawn_s = 0.0
        self.lab_token = ""

    def close(self) -> None:
        self.http.close()

    def _fail(self, step: str, detail: str) -> StepFailed:
        return StepFailed(f"{self.name}: {step}: {detail[:300]}")

    def _cookie(self, name: str, path: str) -> str:
        for cookie in self.http.cookies:
            if cookie.name == name and cookie.path.rstrip("/") == path.rstrip("/"):
                return cookie.value
        raise self._fail("cookie", f"no {name} cookie for path {path}")

    def login(self) -> float:
        """Seconds the form POST took (the GET of the form is not counted)."""
        form = self.http.get(f"{self.base}/hub/login", timeout=60)
        found = _XSRF_FIELD.search(form.text)
        if form.status_code != 200 or not found:
            raise self._fail("login form", f"HTTP {form.status_code}")
        t0 = time.perf_counter()
        resp = self.http.post(f"{self.base}/hub/login", allow_redirects=False, timeout=60,
                              data={"username": self.name, "password": self.password,
                                    "_xsrf": found.group(1)})
        took = time.perf_counter() - t0
        if resp.status_code != 302:
            raise self._fail("login", f"HTTP {resp.status_code} (wrong password or user?)")
        return took

    def spawn(self, timeout: float) -> float:
        """Seconds from the spawn request until the user's Lab answers 200 through the proxy."""
        self.last_request_at = time.time()
        t0 = time.perf_counter()
        deadline = time.monotonic() + timeout
        resp = self.http.post(f"{self.base}/hub/api/users/{self.name}/server", timeout=timeout,
                              headers={"X-XSRFToken": self._cookie("_xsrf", "/hub/")})
        if resp.status_code not in (201, 202):
            raise self._fail("spawn request", f"HTTP {resp.status_code}: {resp.text}")
        if resp.status_code == 202:
            self._wait_progress(deadline)
        self.last_ready_s = time.perf_counter() - t0
        self._open_lab(deadline)
        self.last_spawn_s = time.perf_counter() - t0
        return self.last_spawn_s

    def list_kernels(self, timeout: float = 60) -> None:
        """GET the kernel specs, as JupyterLab (and Notebook 7) does when it opens."""
        resp = self.http.get(f"{self.base}/user/{self.name}/api/kernelspecs", timeout=timeout)
        if resp.status_code != 200:
            raise self._fail("kernel list", f"HTTP {resp.status_code}")

    def point_at(self, kernel: str, timeout: float = 60) -> None:
        """The pointer rests on KERNEL's launcher card: the hint teamhub's Lab extension
        sends then (vanilla answers 404, which changes nothing)."""
        xsrf = {"X-XSRFToken": self._cookie("_xsrf", f"/user/{self.name}/")}
        self.http.post(f"{self.base}/user/{self.name}/teamhub/api/warm-parents",
                       json={"kernel": kernel}, headers=xsrf, timeout=timeout)

    def follow_link(self, notebook: str, kernel: str, timeout: float = 60) -> None:
        """The user follows a link to NOTEBOOK (made now, through the contents API, naming
        KERNEL): JupyterLab's page at it, `lab/tree/NOTEBOOK`, as a browser asks for it."""
        xsrf = {"X-XSRFToken": self._cookie("_xsrf", f"/user/{self.name}/")}
        body = {"type": "notebook", "content": {
            "cells": [], "nbformat": 4, "nbformat_minor": 5,
            "metadata": {"kernelspec": {"name": kernel, "display_name": kernel}}}}
        resp = self.http.put(f"{self.base}/user/{self.name}/api/contents/{notebook}",
                             json=body, headers=xsrf, timeout=timeout)
        if resp.status_code not in (200, 201):
            raise self._fail("save notebook", f"HTTP {resp.status_code}: {resp.text}")
        resp = self.http.get(f"{self.base}/user/{self.name}/lab/tree/{notebook}",
                             timeout=timeout)
        if resp.status_code != 200:
            raise self._fail("open notebook link", f"HTTP {resp.status_code}")

    def lab_open_for(self, seconds: float) -> None:
        """A JupyterLab page (re)opened and left open SECONDS: the page, the kernel list, and
        every 2 s the kernel list's fingerprint that teamhub's Lab extension asks for (on
        vanilla JupyterHub that URL answers 404, which changes nothing)."""
        until = time.monotonic() + seconds
        self._open_lab(time.monotonic() + 60)
        self.list_kernels()
        stamp = f"{self.base}/user/{self.name}/teamhub/api/kernelspecs-stamp"
        while (left := until - time.monotonic()) > 0:
            time.sleep(min(2.0, left))
            if until - time.monotonic() > 0:
                self.http.get(stamp, timeout=60)

    def _wait_progress(self, deadline: float) -> None:
        """Follow the hub's progress event stream (what the spawn-pending page uses)
        until it says ready: no polling interval adds to what is measured."""
        url = f"{self.base}/hub/api/users/{self.name}/server/progress"
        left = max(deadline - time.monotonic(), 1)
        with self.http.get(url, stream=True, timeout=(10, left)) as resp:
            if resp.status_code != 200:
                raise self._fail("progress", f"HTTP {resp.status_code}")
            for line in resp.iter_lines(decode_unicode=True):
                if not line or not line.startswith("data:"):
                    continue
                event = json.loads(line[5:])
                if event.get("ready"):
                    return
                if event.get("failed"):
                    raise self._fail("spawn", event.get("message", "failed"))
                if time.monotonic() > deadline:
                    break
        raise self._fail("spawn", "progress stream ended without the server being ready")

    def _open_lab(self, deadline: float) -> None:
        """GET /user/NAME/lab as a browser does, OAuth redirects included."""
        want = f"/user/{self.name}/lab"
        last = ""
        while True:
            left = max(deadline - time.monotonic(), 1)
            resp = self.http.get(f"{self.base}{want}", timeout=left)
            if resp.status_code == 200 and urlparse(resp.url).path.startswith(want):
                # JupyterLab's page token, which Lab puts on its websockets (teamhub
                # refuses browsers' cookie-only websockets; vanilla ignores it).
                match = re.search(r'"token":\s*"([^"]+)"', resp.text)
                self.lab_token = match.group(1) if match else ""
                return
            last = f"HTTP {resp.status_code} at {urlparse(resp.url).path}"
            if time.monotonic() > deadline:
                raise self._fail("open Lab", last)
            time.sleep(0.05)

    def stop(self, timeout: float = 60) -> None:
        resp = self.http.delete(f"{self.base}/hub/api/users/{self.name}/server", timeout=timeout,
                                headers={"X-XSRFToken": self._cookie("_xsrf", "/hub/")})
        if resp.status_code not in (202, 204):
            raise self._fail("stop", f"HTTP {resp.status_code}: {resp.text}")

    def kernel_first_exec(self, code: str = "5 * 4", expect: str = "20",
                          timeout: float = 120, kernel: str = "python3") -> float:
        """Seconds from asking for a new kernel to the execute_reply of CODE; the kernel
        is shut down afterwards so that idle memory is measured without kernels."""
        prefix = f"{self.base}/user/{self.name}"
        xsrf = {"X-XSRFToken": self._cookie("_xsrf", f"/user/{self.name}/")}
        t0 = time.perf_counter()
        resp = self.http.post(f"{prefix}/api/kernels", json={"name": kernel}, headers=xsrf,
                              timeout=timeout)
        if resp.status_code != 201:
            raise self._fail("new kernel", f"HTTP {resp.status_code}: {resp.text}")
        kernel_id = resp.json()["id"]
        try:
            took, result = self._execute(kernel_id, code, t0, timeout)
        finally:
            self.http.delete(f"{prefix}/api/kernels/{kernel_id}", headers=xsrf, timeout=60)
        if result is not None and result != expect:
            raise self._fail("execute", f"{code!r} gave {result!r}, not {expect!r}")
        return took

    def _execute(self, kernel_id: str, code: str, t0: float,
                 timeout: float) -> tuple[float, str | None]:
        ws_url = (f"{self.base.replace('http', 'ws', 1)}/user/{self.name}"
                  f"/api/kernels/{kernel_id}/channels")
        if self.lab_token:
            ws_url += "?token=" + self.lab_token
        cookie = "; ".join(f"{c.name}={c.value}" for c in self.http.cookies)
        ws = websocket.create_connection(ws_url, header=[f"Cookie: {cookie}"], timeout=timeout)
        msg_id = uuid.uuid4().hex
        try:
            ws.send(json.dumps({
                "header": {"msg_id": msg_id, "msg_type": "execute_request", "version": "5.3",
                           "username": self.name, "session": uuid.uuid4().hex},
                "parent_header": {}, "metadata": {}, "channel": "shell",
                "content": {"code": code, "silent": False, "store_history": False,
                            "user_expressions": {}, "allow_stdin": False,
                            "stop_on_error": True},
            }))
            took: float | None = None
            result: str | None = None
            idle = False
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                msg = json.loads(ws.recv())
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind, content = msg["msg_type"], msg["content"]
                if kind == "execute_reply":
                    took = time.perf_counter() - t0
                    if content.get("status") != "ok":
                        raise self._fail("execute", f"{content.get('ename')}: "
                                                    f"{content.get('evalue')}")
                elif kind == "execute_result":
                    result = content["data"].get("text/plain")
                elif kind == "status" and content.get("execution_state") == "idle":
                    idle = True
                # The reply (shell) and the result (iopub) come in either order; iopub's
                # idle follows the result. A fresh kernel's first iopub messages can be
                # lost while the websocket subscribes, so a missing result is tolerated
                # (None) but a wrong one is not.
                if took is not None and (idle or result is not None):
                    return took, result
            if took is not None:
                return took, result
            raise self._fail("execute", f"no execute_reply within {timeout}s")
        finally:
            ws.close()
