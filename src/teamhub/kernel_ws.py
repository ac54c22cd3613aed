"""Kernel websockets whose messages leave at once (installed by teamhub.serverext).

jupyter_server writes a kernel's messages to its websocket as they come (status busy,
the result, status idle, the reply: several small writes per execution) on a TCP
connection with Nagle's algorithm on: after the first small write, the next ones wait
until the proxy acknowledges it, and Linux delays that acknowledgement. Through the
proxy, each new kernel's first `execute_reply` (and every execution's output after its
first message) came ~30 ms late. Tornado leaves TCP_NODELAY to the handler; this
connection class sets it when the websocket opens, and changes nothing else.
"""

from __future__ import annotations

from typing import Any

from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection


class PromptKernelConnection(ZMQChannelsWebsocketConnection):
    """jupyter_server's kernel websocket connection, with TCP_NODELAY on its socket."""

    def connect(self) -> Any:  # jupyter_server's own says Coroutine, returns a Future
        self.websocket_handler.set_nodelay(True)
        return super().connect()


def install(settings: dict[str, Any]) -> bool:
    """Use PromptKernelConnection for this server's kernel websockets (tornado SETTINGS),
    unless another class than jupyter_server's own was configured (a gateway's)."""
    if settings.get("kernel_websocket_connection_class") is not ZMQChannelsWebsocketConnection:
        return False
    settings["kernel_websocket_connection_class"] = PromptKernelConnection
    return True
