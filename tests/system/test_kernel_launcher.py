"""teamhub's kernel launcher with a real ipykernel: nothing from the working folder runs
at start-up, with -P and without it (what an env older than Python 3.11 gets), and
the user's own modules there still import afterwards."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from jupyter_client.manager import KernelManager

from teamhub.envs import kernels

PLANTS = ("ipykernel", "ipykernel_launcher", "traitlets", "zmq", "IPython", "jedi")


@pytest.mark.parametrize("safe_path", [True, False], ids=["-P", "no -P"])
def test_launcher_ignores_the_working_folder_at_start(tmp_path: Path, safe_path: bool) -> None:
    marker = tmp_path / "ran"
    for name in PLANTS:
        (tmp_path / f"{name}.py").write_text(
            f"open({str(marker)!r}, 'a').write({name!r} + '\\n')\n")
    (tmp_path / "helper.py").write_text("VALUE = 42\n")
    argv = kernels.launcher_argv(sys.executable, sys.version_info[:2] if safe_path else None)
    assert ("-P" in argv) == safe_path
    km = KernelManager()
    km.kernel_spec.argv = [*argv, "-f", "{connection_file}"]
    km.start_kernel(cwd=str(tmp_path))
    try:
        client = km.blocking_client()
        client.start_channels()
        client.wait_for_ready(timeout=60)
        msg_id = client.execute("import helper, sys; print(helper.VALUE, sys.path.index(''), "
                                "len(sys.path))")
        out = ""
        while True:
            msg = client.get_iopub_msg(timeout=30)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream":
                out += msg["content"]["text"]
            elif msg["msg_type"] == "error":
                raise AssertionError(msg["content"]["evalue"])
            elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
        client.stop_channels()
    finally:
        km.shutdown_kernel(now=True)
    assert not marker.exists(), marker.read_text()
    value, index, length = out.split()
    assert value == "42" and int(index) == int(length) - 1  # the folder comes last
