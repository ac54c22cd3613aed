"""Build output streamed into a console page as it comes (env builds take minutes: the
page shows uv's progress lines, not a frozen spinner).

The answer is newline-delimited JSON, one object per line, flushed one by one:
`{"line": TEXT}` for each line of output, then one `{"done": true, "ok": true,
"message": TEXT}` or `{"done": true, "ok": false, "error": TEXT}` (a `TeamhubError`'s
"message; hint"). `static/console.js`'s `streamLines` reads it line by line.

The build runs on a thread of its own pool (builds last minutes, or wait minutes for the
envs lock: on the loop's default executor a few of them would starve the hub's other
off-loop work); its lines cross to the event loop through a queue.
If the browser goes away the build still runs to its end (builds are all-or-nothing:
stopping one half-way would gain nothing).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tornado import web
from tornado.iostream import StreamClosedError

from ..errors import TeamhubError
from .base import ConsoleData

Echo = Callable[[str], None]
MAX_BODY = 64 * 1024
_builds = ThreadPoolExecutor(max_workers=4, thread_name_prefix="console-build")


class StreamingData(ConsoleData):
    """A ConsoleData endpoint whose POST streams a blocking job's output."""

    def body_json(self) -> dict[str, Any]:
        """The request's JSON object; 400 if it is not one."""
        if len(self.request.body) > MAX_BODY:
            raise web.HTTPError(400, "the request is too large")
        try:
            data = json.loads(self.request.body or b"{}")
        except ValueError:
            raise web.HTTPError(400, "the request is not JSON") from None
        if not isinstance(data, dict):
            raise web.HTTPError(400, "the request is not a JSON object")
        return data

    async def stream(self, job: Callable[[Echo], str]) -> None:
        """Run JOB(echo) off the event loop; send each echoed line, then how it ended
        (JOB's return value is the closing message)."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str] = asyncio.Queue()

        def echo(line: str) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, line)

        self.set_header("Content-Type", "application/x-ndjson; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Accel-Buffering", "no")  # no proxy holds the lines back
        work = loop.run_in_executor(_builds, job, echo)
        connected = True
        while True:
            getter = asyncio.ensure_future(queue.get())
            await asyncio.wait({getter, work}, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                connected = await self._send({"line": getter.result()}, connected)
                continue
            getter.cancel()
            break
        while not queue.empty():  # lines echoed just before the job returned
            connected = await self._send({"line": queue.get_nowait()}, connected)
        try:
            end: dict[str, Any] = {"done": True, "ok": True, "message": work.result()}
        except TeamhubError as exc:
            end = {"done": True, "ok": False, "error": str(exc)}
        except Exception as exc:  # shown, not hidden: the admin needs to know
            self.log.exception("console build failed")
            end = {"done": True, "ok": False, "error": f"unexpected error: {exc!r}"}
        await self._send(end, connected)
        if connected:
            self.finish()

    async def _send(self, data: dict[str, Any], connected: bool) -> bool:
        if not connected:
            return False
        try:
            self.write(json.dumps(data) + "\n")
            await self.flush()
        except StreamClosedError:
            return False
        return True
