"""bench.json and bench.md: the environment, the summary table of the targets, each phase."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cpuload import QUIET_CORES
from phase import Phase
from targets import judge, summary_rows


@dataclass
class Report:
    environment: dict[str, Any] = field(default_factory=dict)
    phases: dict[str, Any] = field(default_factory=dict)  # each phase's figures, by name
    targets: list[dict[str, Any]] = field(default_factory=list)
    node_rss_samples: list[int] = field(default_factory=list)
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The phases at the top level, next to the environment and the targets."""
        return {
            "environment": self.environment,
            **self.phases,
            "targets": self.targets,
            "node_rss_samples": self.node_rss_samples,
            "error": self.error,
        }


def has_targets(report: Report) -> bool:
    """The tiny model's run is judged against targets; the SIZE=8b run has its own table."""
    return bool(report.environment.get("size", "tiny") == "tiny")


def busy_warning(by_phase: dict[str, float]) -> list[str]:
    busy = [name for name, cores in by_phase.items() if cores >= QUIET_CORES]
    if not busy:
        return []
    return [
        f"**Other processes used the CPU during {', '.join(busy)}** (>= {QUIET_CORES} core on "
        "average): those figures are disturbed; rerun on an idle machine to judge the targets.",
        "",
    ]


def markdown(report: Report, phases: Sequence[Phase]) -> str:
    env = report.environment
    by_phase = ", ".join(
        f"{name} {value:.2f}" for name, value in env.get("foreign_cores_by_phase", {}).items()
    )
    lines = [
        "# llm-node benchmark",
        "",
        f"Model `{env.get('model')}`, {env.get('threads')} threads, "
        f"{env.get('cpus')} CPUs, load average {env.get('loadavg_start')} at start, "
        f"{env.get('started')}; CPU used by other processes (cores): {by_phase or 'n/a'}.",
        "",
        *busy_warning(env.get("foreign_cores_by_phase", {})),
    ]
    if has_targets(report):
        lines += [*summary_rows(report.phases, env), ""]
    for phase in phases:
        figures = report.phases.get(phase.name)
        if figures:
            lines += phase.describe(figures, env)
    if report.error:
        lines += [f"**The benchmark did not complete:** {report.error}", ""]
    return "\n".join(lines)


def write_reports(report: Report, phases: Sequence[Phase], out: Path, stem: str = "bench") -> str:
    """OUT/STEM.json and OUT/STEM.md (bench.json; SIZE=8b: bench-8b.json); the Markdown."""
    report.targets = judge(report.phases) if has_targets(report) else []
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(report.as_json(), indent=2) + "\n", "utf-8")
    text = markdown(report, phases)
    (out / f"{stem}.md").write_text(text + "\n", encoding="utf-8")
    return text
