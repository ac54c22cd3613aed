"""A browser-like client: HTML login form, cookies, _xsrf, and kernel websockets."""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

import requests
import websocket


class Browser:
    def __init__(self, base_url: str) -> None:
        self.base = base_url
        self.http = requests.Session()
        # name → the token a server's Lab page carries (page config), which JupyterLab
        # puts on its websockets; browsers' cookie-only websockets are refused.
        self.lab_tokens: dict[str, str] = {}

    def get(self, path: str, **kw: Any) -> requests.Response:
        kw.setdefault("timeout", 30)
        return self.http.get(self.base + path, **kw)

    def login(self, name: str, password: str) -> requests.Response:
        page = self.get("/hub/login")
        page.raise_for_status()
        match = re.search(r'name="_xsrf"\s+value="([^"]+)"', page.text)
        assert match, "login form has no _xsrf field"
        return self.http.post(
            self.base + "/hub/login",
            data={"username": name, "password": password, "_xsrf": match.group(1)},
            allow_redirects=False, timeout=30,
        )

    def logged_in(self) -> bool:
        return self.get("/hub/api/user").status_code == 200

    def _xsrf(self, path: str) -> str:
        for cookie in self.http.cookies:
            if cookie.name == "_xsrf" and cookie.path.rstrip("/") == path.rstrip("/"):
                return cookie.value
        raise AssertionError(f"no _xsrf cookie for {path}")

    def start_server(self, name: str, timeout: float = 90) -> dict[str, Any]:
        resp = self.http.post(f"{self.base}/hub/api/users/{name}/server",
                              headers={"X-XSRFToken": self._xsrf("/hub/")}, timeout=60)
        assert resp.status_code in (201, 202, 400), resp.text  # 400: already running
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = self.get(f"/hub/api/users/{name}").json()
            server = model.get("servers", {}).get("")
            if server and server.get("ready"):
                return server
            time.sleep(0.2)
        raise AssertionError(f"server of {name} not ready after {timeout}s: {model}")

    def open_lab(self, name: str) -> requests.Response:
        """Open the user's Lab as a browser does (follows the OAuth redirects)."""
        resp = self.get(f"/user/{name}/lab")
        match = re.search(r'"token":\s*"([^"]+)"', resp.text)
        if match:
            self.lab_tokens[name] = match.group(1)
        return resp

    def new_kernel(self, name: str, kernel: str = "python3") -> str:
        resp = self.http.post(f"{self.base}/user/{name}/api/kernels", json={"name": kernel},
                              headers={"X-XSRFToken": self._xsrf(f"/user/{name}/")}, timeout=60)
        assert resp.status_code == 201, resp.text
        return resp.json()["id"]

    def wait_kernel(self, name: str, kernel_id: str, tries: int = 5) -> None:
        """Until a fresh kernel's output arrives: its first IOPub messages can be missed
        while the websocket is still subscribing."""
        for _ in range(tries):
            if self.execute(name, kernel_id, "print('ready')")["stdout"] == "ready\n":
                return
            time.sleep(0.5)
        raise AssertionError(f"kernel {kernel_id} never printed anything")

    def kernelspecs(self, name: str) -> dict[str, Any]:
        """{kernel name: spec} as the user's launcher sees them."""
        resp = self.get(f"/user/{name}/api/kernelspecs")
        assert resp.status_code == 200, resp.text[:300]
        return {k: v["spec"] for k, v in resp.json()["kernelspecs"].items()}

    def execute(self, name: str, kernel_id: str, code: str, timeout: float = 60) -> dict[str, str]:
        """Run CODE in the kernel over its websocket; return text/plain result, stdout, error."""
        ws_base = self.base.replace("http", "ws", 1)
        ws_url = f"{ws_base}/user/{name}/api/kernels/{kernel_id}/channels"
        cookie = "; ".join(f"{c.name}={c.value}" for c in self.http.cookies)
        if name in self.lab_tokens:
            ws_url += "?token=" + self.lab_tokens[name]
        ws = websocket.create_connection(ws_url, header=[f"Cookie: {cookie}"], timeout=timeout)
        msg_id = uuid.uuid4().hex
        ws.send(json.dumps({
            "header": {"msg_id": msg_id, "username": name, "session": uuid.uuid4().hex,
                       "msg_type": "execute_request", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell",
            "content": {"code": code, "silent": False, "store_history": True,
                        "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
        }))
        out = {"result": "", "stdout": "", "error": ""}
        replied = idle = False
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                msg = json.loads(ws.recv())
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind, content = msg["msg_type"], msg["content"]
                if kind == "execute_result":
                    out["result"] = content["data"].get("text/plain", "")
                elif kind == "stream" and content.get("name") == "stdout":
                    out["stdout"] += content["text"]
                elif kind == "error":
                    out["error"] = f"{content['ename']}: {content['evalue']}"
                elif kind == "execute_reply":
                    replied = True
                elif kind == "status" and content.get("execution_state") == "idle":
                    idle = True
                # Output comes on iopub, the reply on shell: their order is not fixed, but
                # iopub's "idle" follows every output of the request.
                if replied and idle:
                    return out
        finally:
            ws.close()
        raise AssertionError(f"no execute_reply within {timeout}s: {out}")
