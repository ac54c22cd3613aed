"""Pure parts of the benchmark: percentiles, options, the table."""

from __future__ import annotations

import pytest

from bench import __main__ as bench_main
from bench.hubs import free_ports
from bench.metrics import percentile


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([3.0], 0.95) == 3.0
    assert percentile([4.0, 1.0, 2.0, 3.0], 0.5) == 2.5
    assert percentile(list(range(1, 11)), 0.95) == pytest.approx(9.55)
    with pytest.raises(ValueError):
        percentile([], 0.5)


def test_quick_trims_sizes_and_options_override() -> None:
    assert bench_main.parse(["--quick"]).sizes == bench_main.QUICK
    sizes = bench_main.parse(["--quick", "--burst", "3", "--users", "1"]).sizes
    assert (sizes.burst, sizes.users, sizes.kernels) == (3, 1, 1)
    default = bench_main.parse([]).sizes
    assert default.users >= 10 and default.burst == 20


def test_sizes_below_one_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        bench_main.parse(["--burst", "0"])
    assert "--burst must be at least 1, not 0" in capsys.readouterr().err


def test_table_has_ratios_and_copes_with_a_skipped_hub() -> None:
    text = bench_main.table({"teamhub": {"spawn_p50_s": 0.5, "burst_failures": 0},
                             "vanilla": {"spawn_p50_s": 4.0, "burst_failures": 0}})
    row = next(line for line in text.splitlines() if line.startswith("spawn, sequential, p50"))
    assert row.split()[-3:] == ["0.5", "4", "0.12"]
    assert "teamhub / vanilla" in text
    assert "-" in bench_main.table({"teamhub": {"spawn_p50_s": 0.5}, "vanilla": {}})


def test_a_hubs_ports_are_all_different() -> None:
    for _ in range(20):
        ports = free_ports(3)
        assert len(set(ports)) == 3 and all(p > 0 for p in ports)
