"""Small statistics and formatting helpers for the benchmark (no numpy needed)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) with linear interpolation between ranks (numpy's default).

    None for an empty sample: a figure that could not be measured is reported as such, not as 0.
    """
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float | None:
    return percentile(values, 50.0)


def ms(seconds: float | None) -> float | None:
    """Seconds to milliseconds, keeping None."""
    return None if seconds is None else seconds * 1000.0


def fmt(value: float | None, digits: int = 1, unit: str = "") -> str:
    """A number for the report table; an unmeasured figure shows as 'n/a'."""
    if value is None:
        return "n/a"
    return f"{value:.{digits}f}{unit}"


def mib(value: float | None) -> float | None:
    return None if value is None else value / (1024 * 1024)


def peak_rss_bytes(pid: int) -> int | None:
    """The kernel's high-water mark of resident memory (VmHWM) of a process, if readable."""
    return status_bytes(pid, "VmHWM")


def status_bytes(pid: int, key: str) -> int | None:
    """A size field of /proc/PID/status (VmRSS, VmHWM, RssAnon, RssFile) in bytes, if readable."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) * 1024
    return None
