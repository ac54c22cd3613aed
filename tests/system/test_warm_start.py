"""A kernel forked from a warm parent (teamhub.envs.warm_kernels), outside any hub, as a
user's server starts one (jupyter_client's AsyncKernelManager, teamhub's kernel specs, ipc
sockets in a private runtime folder).

The provisioner returns only once the kernel listens on its sockets: the server connects
its activity watcher right then, and a watcher that connects to a socket not bound yet
is retried by ZeroMQ only after 100 ms, missing the kernel's first status messages; the
websocket's nudge then waits for the next status, 0.5 s later (each new kernel's first
`execute_reply` took ~0.6 s through the hub instead of ~0.1 s).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.provisioning import KernelProvisionerFactory

from teamhub.envs import warm_kernels
from teamhub.envs.kernels import TeamhubKernelSpecManager

pytestmark = pytest.mark.system


@pytest.fixture
def runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private runtime folder, this test's own warm parents, the warm provisioner."""
    # Short: unix socket paths are at most 107 bytes (pytest's tmp_path is longer).
    folder = Path(tempfile.mkdtemp(prefix="th-ws-"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(folder))
    parents = warm_kernels.WarmParents(str(folder))
    monkeypatch.setattr(warm_kernels, "_parents", parents)
    monkeypatch.setattr(KernelProvisionerFactory.instance(), "default_provisioner_name",
                        warm_kernels.WARM_PROVISIONER)
    yield folder
    for parent in parents.parents.values():
        parent.retire()  # it exits once its kernels have (they are shut down by now)
        try:
            parent.proc.wait(timeout=60)
        except Exception:
            parent.proc.kill()
            parent.proc.wait(timeout=60)
    shutil.rmtree(folder, ignore_errors=True)


async def _start(runtime: Path, n: int) -> tuple[bool, list[bool]]:
    """Kernel N: whether it was forked, and which of its ipc sockets existed when
    start_kernel returned."""
    km = AsyncKernelManager(kernel_name="python3", transport="ipc",
                            connection_file=str(runtime / f"kernel-{n}.json"))
    km.kernel_spec_manager = TeamhubKernelSpecManager()
    await km.start_kernel()
    try:
        bound = [os.path.exists(f"{km.ip}-{port}") for port in km.ports]
        forked = isinstance(km.provisioner.process, warm_kernels.WarmProcess)  # type: ignore[union-attr]
    finally:
        await km.shutdown_kernel(now=True)
    return forked, bound


def test_a_forked_kernel_listens_when_its_start_returns(runtime: Path) -> None:
    async def three() -> list[tuple[bool, list[bool]]]:
        return [await _start(runtime, n) for n in range(3)]

    started = asyncio.run(three())
    # The first kernel starts its environment's parent; the next ones are its forks.
    assert [forked for forked, _ in started[1:]] == [True, True], started
    assert [bound for _, bound in started] == [[True] * 5] * 3, started
