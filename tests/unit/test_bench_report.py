"""make bench's verdict on each target of issue #4 (bench/report.py), from made-up cells."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from report import Cell, target_lines  # bench/report.py


def cell(mode: str, conc: int, round: int, latency_ms: float, count: int) -> Cell:
    """``count`` requests of ``latency_ms`` each in a 1 s window."""
    return Cell(mode, conc, 1.0, round, latencies=[latency_ms / 1000] * count)


def test_each_target_is_judged_on_the_median_round() -> None:
    cells = [
        cell("direct", 1, 0, 1.0, 900),
        cell("gw-sync", 1, 0, 1.8, 500),  # +0.8 ms
        cell("direct", 1, 1, 1.2, 800),
        cell("gw-sync", 1, 1, 3.5, 300),  # +2.3 ms
        cell("direct", 1, 2, 1.0, 900),
        cell("gw-sync", 1, 2, 1.9, 500),  # +0.9 ms: the median round
        cell("direct", 16, 0, 10.0, 1000),
        cell("gw-sync", 16, 0, 20.0, 550),  # 0.55x
    ]
    lines = target_lines(cells, direct_cold=[0.30, 0.32], gateway_cold=[0.45, 0.47])
    assert lines[0].startswith("this run's Cog direct p50 at c=1: 1.00 ms")
    by_name = {line.split()[0] + " " + line.split()[1]: line for line in lines[1:]}
    assert by_name["c=16 gw-sync/direct"].endswith("0.55x  MISSED")
    assert by_name["c=1 added"].endswith("+0.90 ms  held")
    assert by_name["cold start"].endswith("+150 ms  MISSED")


def test_missing_cells_leave_their_targets_out() -> None:
    lines = target_lines([cell("direct", 16, 0, 10.0, 100)], [], [])
    assert lines == []
