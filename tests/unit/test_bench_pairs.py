"""bench's load rule: the (teamhub, vanilla) pair is measured again while the load average
before the two sides differs by more than 1.0; the closest pair is reported."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from bench.__main__ import paired


def sides(loads: list[float]) -> Callable[[], dict]:
    it: Iterator[float] = iter(loads)
    return lambda: {"load_1m_at_start": next(it), "burst_all_ready_s": 1.0}


def test_a_pair_whose_load_held_is_measured_once() -> None:
    results = paired(sides([2.0, 9.0]), sides([2.8, 9.0]), pairs=3)
    assert results["teamhub"]["pairs_measured"] == 1
    assert results["vanilla"]["load_moved"] == 0.8


def test_a_pair_whose_load_moved_is_measured_again_until_it_holds() -> None:
    results = paired(sides([2.0, 4.0, 9.0]), sides([3.5, 4.5, 0.0]), pairs=3)
    assert results["teamhub"]["pairs_measured"] == 2
    assert results["teamhub"]["load_1m_at_start"] == 4.0
    assert results["vanilla"]["load_1m_by_pair"] == [[2.0, 3.5], [4.0, 4.5]]


def test_after_the_last_pair_the_closest_one_is_kept() -> None:
    results = paired(sides([1.0, 5.0, 1.0]), sides([4.0, 6.5, 9.0]), pairs=3)
    assert results["teamhub"]["pairs_measured"] == 3
    assert (results["teamhub"]["load_1m_at_start"], results["vanilla"]["load_1m_at_start"]) \
        == (5.0, 6.5)


def test_one_side_alone_is_never_repeated() -> None:
    results = paired(sides([1.0]), None, pairs=3)
    assert results["vanilla"] == {} and results["teamhub"]["load_1m_at_start"] == 1.0
