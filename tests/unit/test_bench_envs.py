"""Pure parts of bench/envs.py: phases from progress lines, load check, ratios."""

from __future__ import annotations

from bench.envs import load_moved, phase_times, ratio


def test_phases_come_from_teamhub_s_progress_lines() -> None:
    stamps = [(1.0, "==> [x rev 1] creating venv from /usr/bin/python3"),
              (1.2, "Using CPython 3.11.2"),
              (1.5, "==> [x rev 1] installing numpy"),
              (1.6, "Resolved 3 packages"),
              (4.0, "==> [x rev 1] compiling bytecode"),
              (9.5, "==> [x rev 1] checking that users can import ipykernel"),
              (10.0, "==> [x] revision 1 is now current")]
    assert phase_times(0.5, stamps, 10.25) == {
        "setup_s": 0.5, "venv_s": 0.5, "install_s": 2.5, "compile_s": 5.5, "check_s": 0.5}


def test_a_build_without_progress_is_all_setup() -> None:
    assert phase_times(0.0, [], 2.0) == {"setup_s": 2.0}


def test_load_moved_and_ratio() -> None:
    assert load_moved(1.0, 2.5) and not load_moved(3.0, 2.2)
    assert ratio(3.0, 2.0) == 1.5 and ratio(1.0, 0.0) == float("inf")
