"""system/ports.py: ports for servers starting at once, outside the ephemeral range."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from teamhub.errors import NoFreePort
from teamhub.system.ports import PortPool, candidate_ranges, ephemeral_range


def test_the_ephemeral_range_is_left_out() -> None:
    assert candidate_ranges((32768, 60999)) == [range(10000, 32768), range(61000, 65536)]
    # A range that covers everything we would pick from: pick from all rather than nothing.
    assert candidate_ranges((1024, 65535)) == [range(10000, 65536)]


def test_unreadable_range_file_means_linux_default(tmp_path: Path) -> None:
    assert ephemeral_range(tmp_path / "missing") == (32768, 60999)
    (tmp_path / "range").write_text("20000\t30000\n")
    assert ephemeral_range(tmp_path / "range") == (20000, 30000)


def test_a_port_is_never_handed_out_twice_while_held() -> None:
    pool = PortPool([range(23410, 23420)])
    taken = {pool.take() for _ in range(10)}
    assert len(taken) == 10
    with pytest.raises(NoFreePort, match="23410-23419"):
        pool.take(tries=50)
    pool.release(23415)
    assert pool.take(tries=500) == 23415


def test_a_port_someone_listens_on_is_skipped() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        busy = squatter.getsockname()[1]
        pool = PortPool([range(busy, busy + 1)])
        with pytest.raises(NoFreePort):
            pool.take(preferred=busy, tries=5)


def test_the_preferred_port_is_used_when_free() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    pool = PortPool([range(23510, 23520)])
    assert pool.take(preferred=free) == free
    # Held now: a second start preferring it gets another.
    assert pool.take(preferred=free) in range(23510, 23520)
