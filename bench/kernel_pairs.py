"""Kernel starts, warm against normal, interleaved so that the machine's load hits both alike.

    <runtime>/bin/python bench/kernel_pairs.py [--pairs 10] [--kernel python3] [--json]

Outside any hub: one process starts kernels the way a user's server does (jupyter_client's
AsyncKernelManager with teamhub's kernel specs, ipc transport, connection files and sockets
in a private runtime folder), alternating teamhub's warm provisioner (envs.warm_kernels)
and jupyter_client's own, and times each from `start_kernel` to the `execute_reply` of
`5 * 4`. Like the server before it lets a websocket talk to a new kernel (its "nudge"),
the client first sends `kernel_info` requests, again every 0.5 s, until one is answered and
an iopub message came (without that, the kernel's output can be published before the
subscription reaches it, and the run waited for it forever: "Timeout waiting for output";
jupyter_client's `wait_for_ready` would add 0.2 s to each start, waiting for iopub to go
quiet). The first warm kernel (the one
that starts the parent) is not counted. `bench/run` times the same through the hub and
proxy against vanilla JupyterHub; this isolates the start itself on a busy machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from typing import Any

WARM, NORMAL = "teamhub-warm", "local-provisioner"


async def until_ready(client: Any, timeout: float) -> None:
    """What jupyter_server does before a websocket may talk to a new kernel (its nudge):
    kernel_info requests, again every 0.5 s, until one is answered and iopub delivers."""
    import zmq
    import zmq.asyncio

    shell, iopub = client.shell_channel.socket, client.iopub_channel.socket
    poller = zmq.asyncio.Poller()
    for sock in (shell, iopub):
        poller.register(sock, zmq.POLLIN)
    heard: set[Any] = set()
    deadline = time.monotonic() + timeout
    while len(heard) < 2:
        if time.monotonic() > deadline:
            raise SystemExit(f"kernel_pairs: no kernel_info reply within {timeout}s")
        client.kernel_info()
        nudge_at = time.monotonic() + 0.5
        while len(heard) < 2 and (left := nudge_at - time.monotonic()) > 0:
            for sock, _ in await poller.poll(left * 1000):
                await sock.recv_multipart()  # what it says does not matter, only that it came
                heard.add(sock)


async def first_reply_s(provisioner: str, kernel: str, runtime: str) -> float:
    from jupyter_client.manager import AsyncKernelManager
    from jupyter_client.provisioning import KernelProvisionerFactory

    from teamhub.envs.kernels import TeamhubKernelSpecManager

    KernelProvisionerFactory.instance().default_provisioner_name = provisioner
    # As jupyter_server names them: the ipc sockets go next to the connection file.
    km = AsyncKernelManager(kernel_name=kernel, transport="ipc", connection_file=os.path.join(
        runtime, f"kernel-{uuid.uuid4()}.json"))
    km.kernel_spec_manager = TeamhubKernelSpecManager()
    t0 = time.perf_counter()
    await km.start_kernel()
    client = km.client()
    client.start_channels()
    try:
        await until_ready(client, timeout=120)
        reply = await client.execute_interactive("5 * 4", timeout=120,
                                                 output_hook=lambda msg: None)
        took = time.perf_counter() - t0
        if reply["content"]["status"] != "ok":
            raise SystemExit(f"kernel_pairs: 5 * 4 failed: {reply['content']}")
    finally:
        client.stop_channels()
        await km.shutdown_kernel(now=True)
    return took


async def pairs(count: int, kernel: str, runtime: str) -> dict[str, object]:
    await first_reply_s(WARM, kernel, runtime)  # starts the warm parent
    took: dict[str, list[float]] = {WARM: [], NORMAL: []}
    load_before = os.getloadavg()[0]
    for _ in range(count):
        for provisioner in took:
            took[provisioner].append(await first_reply_s(provisioner, kernel, runtime))
    warm, normal = statistics.median(took[WARM]), statistics.median(took[NORMAL])
    return {"kernel": kernel, "pairs": count, "warm_p50_s": round(warm, 3),
            "normal_p50_s": round(normal, 3), "ratio": round(warm / normal, 3),
            "load_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--kernel", default="python3")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="teamhub-kernel-pairs-") as runtime:
        os.chmod(runtime, 0o700)
        os.environ["JUPYTER_RUNTIME_DIR"] = runtime
        result = asyncio.run(pairs(args.pairs, args.kernel, runtime))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['kernel']}: warm p50 {result['warm_p50_s']}s, normal p50 "
              f"{result['normal_p50_s']}s, ratio {result['ratio']} over {result['pairs']} "
              f"pairs; 1-min load {result['load_1m'][0]} → {result['load_1m'][1]}",
              file=sys.stdout)


if __name__ == "__main__":
    main()
