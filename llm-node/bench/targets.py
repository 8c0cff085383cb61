"""The benchmark's targets, in one table: where each value comes from, its goal, its table row."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stats import fmt

Figures = dict[str, Any]
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "<": operator.lt,
}


def pct(ratio: float | None) -> float | None:
    return None if ratio is None else 100 * ratio


def dig(figures: Figures, key: str) -> Any:
    """A figure by its dotted path ("conversation.ratio.refill"); None where a part is missing."""
    value: Any = figures
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def yes_no(value: Any) -> str:
    return "n/a" if value is None else ("yes" if value else "NO")


@dataclass(frozen=True)
class Target:
    name: str
    phase: str  # the phase whose figures hold the value
    key: str  # the figure judged, a dotted path into the phase's figures
    op: str
    limit: float
    goal: str  # the goal as bench.md shows it
    label: str  # the summary table's row; {placeholders} come from the run's environment
    cells: Callable[[Figures], tuple[str, str, str]]  # raw, llm-node, node vs raw columns

    def value(self, phases: dict[str, Any]) -> float | None:
        value = dig(phases.get(self.phase) or {}, self.key)
        return None if value is None else float(value)  # a bool (same replies) counts as 1/0

    def judge(self, phases: dict[str, Any]) -> dict[str, Any]:
        value = self.value(phases)
        passed = None if value is None else _OPS[self.op](value, self.limit)
        return {
            "target": self.name,
            "value": value,
            "goal": f"{self.op} {self.limit:g}",
            "result": "n/a" if passed is None else ("PASS" if passed else "FAIL"),
        }


TARGETS = (
    Target(
        "decode_ratio",
        "raw_vs_node",
        "decode_ratio",
        ">=",
        0.97,
        ">= 97 %",
        "Decode rate (tokens/s)",
        lambda f: (
            fmt(f.get("raw", {}).get("decode_tps_median")),
            fmt(f.get("node", {}).get("decode_tps_median")),
            fmt(pct(f.get("decode_ratio")), 1, " %"),
        ),
    ),
    Target(
        "ttft_overhead_ms",
        "raw_vs_node",
        "ttft_overhead_ms",
        "<=",
        15,
        "<= 15 ms",
        "Time to first token (ms)",
        lambda f: (
            fmt(f.get("raw", {}).get("ttft_ms_median")),
            fmt(f.get("node", {}).get("ttft_ms_median")),
            fmt(f.get("ttft_overhead_ms"), 1, " ms"),
        ),
    ),
    Target(
        "overload_503_p99_ms",
        "overload",
        "p99_ms",
        "<",
        50,
        "p99 < 50 ms",
        "503 latency, {burst_clients} clients vs queue {queue_size} (ms)",
        lambda f: ("", f"p50 {fmt(f.get('p50_ms'))}, p99 {fmt(f.get('p99_ms'))}", ""),
    ),
    Target(
        "worker_free_ms",
        "disconnect",
        "worker_free_ms_median",
        "<=",
        250,
        "<= 250 ms",
        "Worker free after a disconnect (ms, median)",
        lambda f: (
            "",
            f"{fmt(f.get('worker_free_ms_median'))} (max {fmt(f.get('worker_free_ms_max'))})",
            "",
        ),
    ),
    Target(
        "rss_overhead_mib",
        "memory",
        "overhead_mib",
        "<=",
        80,
        "<= raw + 80 MiB",
        "Resident memory, model loaded (MiB)",
        lambda f: (
            fmt(f.get("raw_rss_mib")),
            fmt(f.get("node_rss_mib")),
            fmt(f.get("overhead_mib"), 1, " MiB"),
        ),
    ),
    # conversation.py: a 6-turn chat re-sent whole each turn, nodes with the cache on and off
    Target(
        "turn6_over_turn1_cache_on",
        "conversation",
        "conversation.ratio.refill",
        "<=",
        1.5,
        "<= 1.5",
        "Conversation: TTFT turn 6 / turn 1, cache on (default)",
        lambda f: (
            "",
            f"{fmt(dig(f, 'conversation.ratio.refill'), 2)} (no refill "
            f"{fmt(dig(f, 'conversation.ratio.on'), 2)}, no cache "
            f"{fmt(dig(f, 'conversation.ratio.off'), 2)})",
            "",
        ),
    ),
    Target(
        "same_replies",
        "conversation",
        "conversation.same_replies",
        ">=",
        1,
        "identical",
        "Conversation: replies the same with and without the cache",
        lambda f: ("", yes_no(dig(f, "conversation.same_replies")), ""),
    ),
    Target(
        "planning_ms_per_request",
        "conversation",
        "conversation.planning_ms_per_request",
        "<=",
        15,
        "<= 15 ms",
        "Prompt planning (tokenize, prefix match) per request (ms)",
        lambda f: ("", fmt(dig(f, "conversation.planning_ms_per_request"), 2), ""),
    ),
)


def judge(phases: dict[str, Any]) -> list[dict[str, Any]]:
    return [target.judge(phases) for target in TARGETS]


def summary_rows(phases: dict[str, Any], environment: dict[str, Any]) -> list[str]:
    """The summary table of bench.md: one row per target."""
    rows = [
        "| Figure | Raw gpt4all | llm-node (HTTP) | Node vs raw | Target | Result |",
        "|---|---|---|---|---|---|",
    ]
    for target in TARGETS:
        raw, node, versus = target.cells(phases.get(target.phase) or {})
        result = target.judge(phases)["result"]
        label = target.label.format_map(environment)
        cells = [label, raw, node, versus, target.goal, result]
        rows.append("|" + "|".join(f" {cell} " if cell else " " for cell in cells) + "|")
    return rows
