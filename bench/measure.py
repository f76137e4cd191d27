"""Measurement helpers shared by the benchmark scripts in this folder."""

import json
import math
import os
import subprocess
from collections import Counter
from pathlib import Path


def percentile_ms(samples: list[float], pct: float) -> float:
    """Nearest-rank percentile of ``samples`` (seconds), in milliseconds; NaN when empty."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1] * 1000


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (``/proc/<pid>/stat``)."""
    stat = (Path("/proc") / str(pid) / "stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def log_problems(log_path: Path) -> Counter[str]:
    """Gateway log lines at warning level or above, counted by level and event."""
    found: Counter[str] = Counter()
    for line in log_path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if "Traceback" in line or "Error" in line:
                found[f"non-JSON: {line[:100]}"] += 1
            continue
        if isinstance(record, dict) and record.get("level") in {"warning", "error", "critical"}:
            found[f"{record.get('level')} {record.get('event')}"] += 1
    return found


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
