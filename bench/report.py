"""What ``bench/gateway.py`` measured, as cells (one mode at one concurrency for one round) and
the report it prints: the table, the gateway/direct ratios, the cold starts, and each of issue
#4's targets with this run's figure beside it."""

from __future__ import annotations

import math
import statistics
from collections import Counter
from dataclasses import dataclass, field

from measure import percentile_ms

# The targets (issue #4, "make bench") and the machine they were set on.
TARGET_THROUGHPUT_C16 = 0.6  # gw-sync/direct at 16 clients, at least
TARGET_ADDED_P50_C1_MS = 1.0  # gw-sync minus direct at 1 client, at most
TARGET_COLD_ADDED_MS = 100.0  # through the gateway minus Cog's own cold start, at most
ANCHOR_DIRECT_P50_C1_MS = 0.91  # Cog direct at 1 client in ../shared/spec/perf-anchors.md
MAX_ERROR_SAMPLES = 3


@dataclass
class Cell:
    mode: str
    concurrency: int
    window_s: float
    round: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    refused: int = 0
    completed_all: int = 0  # successes over the whole cell, warm-up and tail included
    gateway_cpu_s: float = 0.0  # the gateway process's CPU over the whole cell

    @property
    def gateway_cpu_ms(self) -> float:
        """Gateway CPU milliseconds per successful prediction."""
        if not self.completed_all:
            return math.nan
        return self.gateway_cpu_s / self.completed_all * 1000

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.window_s

    @classmethod
    def pooled(cls, cells: list[Cell]) -> Cell:
        """One mode's rounds as one cell: every latency, error and CPU second."""
        first = cells[0]
        pooled = cls(first.mode, first.concurrency, sum(c.window_s for c in cells))
        for c in cells:
            pooled.latencies += c.latencies
            pooled.errors.update(c.errors)
            pooled.refused += c.refused
            pooled.completed_all += c.completed_all
            pooled.gateway_cpu_s += c.gateway_cpu_s
        return pooled

    def p(self, pct: float) -> float:
        return percentile_ms(self.latencies, pct)


@dataclass
class Compared:
    """One gateway mode at one concurrency, each round against that round's direct cell."""

    mode: str
    concurrency: int
    ratios: list[float]  # throughput, gateway/direct
    added_ms: list[float]  # p50, gateway - direct

    def line(self) -> str:
        ratios, added = self.ratios, self.added_ms
        text = (
            f"c={self.concurrency:<3} {self.mode}/direct throughput"
            f" {statistics.median(ratios):.2f}x (rounds {min(ratios):.2f}-{max(ratios):.2f})"
        )
        if self.concurrency == 1:
            text += (
                f", added p50 {statistics.median(added):+.2f} ms"
                f" (rounds {min(added):+.2f} to {max(added):+.2f})"
            )
        return text


def compare(cells: list[Cell]) -> list[Compared]:
    direct = {(c.concurrency, c.round): c for c in cells if c.mode == "direct"}
    out = []
    for conc in sorted({c.concurrency for c in cells}):
        for mode in ("gw-sync", "gw-poll", "hop"):
            pairs = [
                (c, direct[conc, c.round])
                for c in cells
                if c.mode == mode and c.concurrency == conc and (conc, c.round) in direct
            ]
            pairs = [(gw, d) for gw, d in pairs if d.rps > 0]
            if pairs:
                ratios = [gw.rps / d.rps for gw, d in pairs]
                added = [gw.p(50) - d.p(50) for gw, d in pairs]
                out.append(Compared(mode, conc, ratios, added))
    return out


def fmt_ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}"


def print_report(cells: list[Cell], cold_start_s: float | None, problems: Counter[str]) -> None:
    header = (
        f"{'mode':<9} {'conc':>4} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'errors':>6} {'409s':>6} {'gw cpu ms/pred':>14}"
    )
    print()
    print(header)
    print("-" * len(header))
    by_mode: dict[tuple[str, int], list[Cell]] = {}
    for c in cells:
        by_mode.setdefault((c.mode, c.concurrency), []).append(c)
    for rounds in by_mode.values():
        c = Cell.pooled(rounds)
        errors = sum(c.errors.values())
        print(
            f"{c.mode:<9} {c.concurrency:>4} {c.rps:>8.0f} {fmt_ms(c.p(50)):>8} "
            f"{fmt_ms(c.p(99)):>8} {errors:>6} {c.refused:>6} {fmt_ms(c.gateway_cpu_ms):>14}"
        )
    print()
    for compared in compare(cells):
        print(compared.line())
    cold = "not found in the gateway log" if cold_start_s is None else f"{cold_start_s:.3f} s"
    print(f"\ncold start (spawn -> READY, instance_ready.cold_start_s): {cold}")
    for c in cells:
        for message, count in c.errors.most_common(MAX_ERROR_SAMPLES):
            print(f"error {c.mode} c={c.concurrency} x{count}: {message}")
    for message, count in problems.most_common():
        print(f"gateway log: {message} x{count}")


def print_cold(direct: list[float], gateway: list[float]) -> None:
    if not direct or not gateway:
        return
    d, g = statistics.median(direct), statistics.median(gateway)
    print(
        f"cold start to first output, median of {len(direct)}: "
        f"Cog itself (spawn -> READY -> prediction) {d * 1000:.0f} ms; "
        f"through the gateway from zero instances {g * 1000:.0f} ms ({(g - d) * 1000:+.0f} ms)"
    )
    pairs = sorted((gw - cog) * 1000 for cog, gw in zip(direct, gateway, strict=True))
    print(f"  each pair (gateway - Cog, run after run): {pairs[0]:+.0f} to {pairs[-1]:+.0f} ms")


def target_lines(
    cells: list[Cell], direct_cold: list[float], gateway_cold: list[float]
) -> list[str]:
    """Each target of issue #4 with this run's figure (medians over rounds, as above) and
    whether it held; first, how fast this machine ran Cog itself, beside the anchors' figure."""
    by_key = {(c.mode, c.concurrency): c for c in compare(cells)}
    lines = []
    direct_c1 = [c for c in cells if c.mode == "direct" and c.concurrency == 1]
    if direct_c1:
        p50 = statistics.median(c.p(50) for c in direct_c1)
        speed = p50 / ANCHOR_DIRECT_P50_C1_MS
        lines.append(
            f"this run's Cog direct p50 at c=1: {p50:.2f} ms "
            f"(perf-anchors.md: {ANCHOR_DIRECT_P50_C1_MS:.2f} ms; {speed:.2f}x that)"
        )

    judged: list[tuple[str, str, bool]] = []  # (target, this run's figure, held)
    sync16, sync1 = by_key.get(("gw-sync", 16)), by_key.get(("gw-sync", 1))
    if sync16 is not None:
        ratio = statistics.median(sync16.ratios)
        name = f"c=16 gw-sync/direct >= {TARGET_THROUGHPUT_C16}x"
        judged.append((name, f"{ratio:.2f}x", ratio >= TARGET_THROUGHPUT_C16))
    if sync1 is not None:
        added = statistics.median(sync1.added_ms)
        name = f"c=1 added p50 <= {TARGET_ADDED_P50_C1_MS:.0f} ms"
        judged.append((name, f"{added:+.2f} ms", added <= TARGET_ADDED_P50_C1_MS))
    if direct_cold and gateway_cold:
        extra = (statistics.median(gateway_cold) - statistics.median(direct_cold)) * 1000
        name = f"cold start <= Cog's own + {TARGET_COLD_ADDED_MS:.0f} ms"
        judged.append((name, f"{extra:+.0f} ms", extra <= TARGET_COLD_ADDED_MS))
    for name, figure, held in judged:
        lines.append(f"{name:<44} {figure:>10}  {'held' if held else 'MISSED'}")
    return lines
