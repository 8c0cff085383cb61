"""What a benchmark phase is: a measurement that returns its figures, and how to describe them.

A new phase is one `Phase(name, measure, describe)` in bench.py's PHASES and, if it has a
target, one row in targets.py's TARGETS: its figures land in bench.json under `name`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from options import Options
from processes import Node, RawWorker


@dataclass
class Run:
    """What every phase gets: the options and the two running processes."""

    opts: Options
    raw: RawWorker
    node: Node
    n_batch: int
    node_rss_samples: list[int] = field(default_factory=list)  # psutil RSS, sampled by phases
    phases: dict[str, Any] = field(default_factory=dict)  # the figures of the phases run so far


@dataclass(frozen=True)
class Phase:
    name: str
    measure: Callable[[Run], Awaitable[Any]]  # the figures (JSON-able)
    describe: Callable[[Any, dict[str, Any]], list[str]]  # (figures, environment) -> Markdown
    metered: bool = True  # record the CPU other processes used meanwhile (a disturbed phase)
    timeout_s: float | None = None  # None: the run's phase_timeout_s
