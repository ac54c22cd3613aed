"""Kernel websockets send each message at once (teamhub.kernel_ws): TCP_NODELAY is set
when the websocket opens, and only jupyter_server's own connection class is replaced."""

from __future__ import annotations

from typing import Any

import pytest
from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection

from teamhub import kernel_ws


def test_only_jupyter_servers_own_class_is_replaced() -> None:
    settings: dict[str, Any] = {"kernel_websocket_connection_class":
                                ZMQChannelsWebsocketConnection}
    assert kernel_ws.install(settings)
    assert settings["kernel_websocket_connection_class"] is kernel_ws.PromptKernelConnection
    gateway = type("GatewayConnection", (ZMQChannelsWebsocketConnection,), {})
    configured: dict[str, Any] = {"kernel_websocket_connection_class": gateway}
    assert not kernel_ws.install(configured)
    assert configured["kernel_websocket_connection_class"] is gateway


def test_nodelay_is_set_before_the_connection_talks(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []
    monkeypatch.setattr(ZMQChannelsWebsocketConnection, "connect",
                        lambda self: calls.append("connect"))

    class Handler:
        def set_nodelay(self, value: bool) -> None:
            calls.append(("nodelay", value))

    conn = kernel_ws.PromptKernelConnection.__new__(kernel_ws.PromptKernelConnection)
    # The websocket handler trait wants a real tornado handler; only set_nodelay matters.
    conn._trait_values["websocket_handler"] = Handler()
    conn.connect()
    assert calls == [("nodelay", True), "connect"]
