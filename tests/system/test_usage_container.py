"""teamhub.system.usage on a real container of the real Docker engine: the docker backend's
servers are counted from their container's own cgroup, found through the engine."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator

import pytest
from support.hub import runtime_dir, unique

from teamhub.system import usage
from teamhub.system.docker import Engine

pytestmark = [
    pytest.mark.system,
    pytest.mark.docker,
    pytest.mark.skipif(os.geteuid() != 0, reason="reads every process's files: needs root"),
]

TEST_IMAGE = "teamhub-test"


@pytest.fixture(scope="module")
def image(engine: Engine) -> str:
    """The docker tests' image (`teamhub image build`, cached by its recipe)."""
    done = subprocess.run([str(runtime_dir() / "bin" / "teamhub"), "image", "build", TEST_IMAGE],
                          capture_output=True, text=True, timeout=2400,
                          env={k: v for k, v in os.environ.items()
                               if not k.startswith("TEAMHUB_")})
    assert done.returncode == 0, done.stderr[-3000:]
    return f"teamhub/{TEST_IMAGE}:latest"


@pytest.fixture
def busy_container(engine: Engine, image: str) -> Iterator[str]:
    """A running container whose only process burns CPU, as nobody."""
    ident = engine.create(unique("thus"), {
        "Image": image, "Entrypoint": ["/bin/sh", "-c", "while :; do :; done"], "Cmd": [],
        "User": "65534:65534",
        "HostConfig": {"NetworkMode": "host", "CapDrop": ["ALL"], "PidsLimit": 16,
                       "Memory": 64 * 1024**2, "SecurityOpt": ["no-new-privileges"]},
    })
    try:
        engine.start(ident)
        yield ident
    finally:
        engine.remove(ident)


def test_a_containers_cpu_time_and_memory_come_from_its_cgroup(busy_container: str) -> None:
    target = usage.Target(container=busy_container, marker=busy_container, account="nobody")
    first = usage.read_target(target)
    assert first.source == usage.CGROUP
    assert [k for k in first.counters if busy_container in k]
    assert first.memory > 0
    end = time.monotonic() + 60
    later = first
    while sum(later.counters.values()) <= sum(first.counters.values()) \
            and time.monotonic() < end:
        time.sleep(0.2)
        later = usage.read_target(target)
    assert sum(later.counters.values()) > sum(first.counters.values())


def test_a_container_that_is_gone_reads_as_nothing(engine: Engine) -> None:
    reading = usage.read_target(usage.Target(container="0" * 64, marker="0" * 64))
    assert (reading.memory, reading.counters) == (0, {})
