"""How much CPU did processes other than ours use while we measured?

The benchmark runs on shared machines (CI, other jobs). gpt4all runs one thread per core, so
any foreign process that takes a core slows a generation down several fold, and that noise
would otherwise be read as a difference between raw gpt4all and the node. `CpuMeter` reads
the machine's busy CPU time and our own processes' CPU time around each measurement; the
difference, divided by the wall time, is the foreign load in cores.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass

import psutil

# Below this foreign load (in cores) a sample counts as taken on a quiet machine.
QUIET_CORES = 0.25


@dataclass(frozen=True)
class Snapshot:
    wall: float
    busy: float  # CPU seconds the whole machine spent not idle
    ours: float  # CPU seconds our processes spent


def machine_busy_seconds() -> float:
    t = psutil.cpu_times()
    busy = t.user + t.nice + t.system
    for name in ("irq", "softirq", "steal"):
        busy += getattr(t, name, 0.0)
    return float(busy)


class CpuMeter:
    """Foreign CPU load between two snapshots, for a fixed set of our own processes."""

    def __init__(self, pids: list[int]) -> None:
        self.procs = [psutil.Process(pid) for pid in [os.getpid(), *pids]]

    def _ours(self) -> float:
        # Children we started and reaped meanwhile count as ours too: the conversation phase's
        # extra nodes and the peer run and exit within their phase (os.times: reaped children).
        reaped = os.times()
        total = reaped.children_user + reaped.children_system
        for proc in self.procs:
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system
        return total

    def snapshot(self) -> Snapshot:
        return Snapshot(time.perf_counter(), machine_busy_seconds(), self._ours())

    @staticmethod
    def foreign_cores(start: Snapshot, end: Snapshot) -> float:
        wall = end.wall - start.wall
        if wall <= 0:
            return 0.0
        foreign = (end.busy - start.busy) - (end.ours - start.ours)
        return max(foreign, 0.0) / wall


def main_thread_cpu_seconds(pid: int) -> float:
    """CPU time of a process's main thread (llm-node's event loop; the raw worker's consumer)."""
    for thread in psutil.Process(pid).threads():
        if thread.id == pid:
            return float(thread.user_time + thread.system_time)
    return 0.0
