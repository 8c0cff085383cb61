"""Benchmark llm-node against raw gpt4all on the same model, threads, prompt and parameters.

    PYTHONPATH=llm-node python llm-node/bench/bench.py --model FILE.gguf --threads 2 --out reports

(`make bench` runs exactly this on the tiny model; about a minute on 2 idle cores, longer when
other jobs share the CPU). One run measures:

1. raw vs node: raw in-process gpt4all (``raw_worker.py``, a process of its own) against the
   node over HTTP streaming (``/v1/completions``, ``stream: true``), same prompt, greedy, same
   ``max_tokens``, same n_batch and prompt template: time to first token (TTFT) and decode
   tokens/s = (tokens - 1) / (last token - first token), as the caller sees them. Raw and node
   generations alternate, one at a time (never competing for the CPU), in pairs; the verdict
   takes the median of the per-pair ratio (decode) and difference (TTFT), so drift in the
   machine's load cancels out within a pair. Pairs during which other processes used the CPU
   are discarded when enough quiet ones exist (``cpuload.py``).
2. concurrency sweep (1, 4, 16 closed-loop clients, non-streaming, no retry): p50/p95 latency
   of the 200s, requests/s and tokens/s over the wall time, 503 count.
3. overload burst: 50 simultaneous requests (3 bursts) against LLM_QUEUE_SIZE=8 on warm
   keep-alive connections: latency of the 503 answers (p50/p99).
4. disconnect: client A drops its stream after its first tokens while B waits in the queue;
   worker free = (B's first token - A's disconnect) - (TTFT of the same request as B on the
   idle node, sent right after): the time the worker took to notice and move on.
5. resident memory with the model loaded: psutil RSS of the node process (highest sample over
   the run) vs the raw process after the same generations.
6. long prompts and conversations, the prompt cache on and off: ``conversation.py`` (three
   more nodes, logs ``OUT/bench-conversation-VARIANT.log``); with ``--peer PYTHON``
   (``make bench PEER=1``) also llama.cpp itself: ``peer.py``. ``phase_conversation.py``
   makes them one phase; its targets are rows of targets.py's table like the others.

Modules: ``options.py`` (options, prompt, sampling), ``processes.py`` (the raw worker and the
node as processes), ``client.py`` (timed HTTP requests, /metrics with prometheus_client's
parser), ``phase.py`` (what a phase is: ``Phase(name, measure, describe)``), ``phase_raw.py``
and ``phases.py`` (the phases), ``targets.py`` (the one table of targets), ``report.py``
(bench.json and bench.md); this file runs the PHASES in order.

Requests are made with ``rawhttp.py``, a minimal HTTP/1.1 client: httpx's asyncio pool costs
more per request than the server does once 50 requests are in flight (see that module).

It prints a Markdown table with each figure next to its target and PASS/FAIL, and writes
``OUT/bench.json`` (every sample) and ``OUT/bench.md``. It is a benchmark, not a test: a missed
target is reported as FAIL but the exit status is 0; it exits non-zero only when the benchmark
itself could not run (node did not start, a request failed unexpectedly, ...), after writing
what it measured so far. The node (``python -m llm_node`` with LLM_* variables, on a free
loopback port) and the raw worker are stopped at the end, also on errors; their logs go to
``OUT/bench-node.log`` and ``OUT/bench-raw.log``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from cpuload import CpuMeter
from engines_8b import warm_page_cache
from options import Options, parse_args
from phase import Phase, Run
from phase_8b import PHASES_8B
from phase_conversation import describe_conversation, phase_conversation
from phase_raw import describe_raw_vs_node, phase_raw_vs_node
from phases import (
    describe_disconnect,
    describe_memory,
    describe_overload,
    describe_sweep,
    phase_disconnect,
    phase_memory,
    phase_overload,
    phase_sweep,
)
from processes import Node, RawWorker, node_n_batch
from report import Report, write_reports

log = logging.getLogger("bench")

# The phases, in order; each one's figures go to bench.json under its name (targets.py judges).
PHASES: tuple[Phase, ...] = (
    Phase("raw_vs_node", phase_raw_vs_node, describe_raw_vs_node),
    Phase("sweep", phase_sweep, describe_sweep),
    Phase("overload", phase_overload, describe_overload),
    Phase("disconnect", phase_disconnect, describe_disconnect),
    Phase("memory", phase_memory, describe_memory, metered=False),
    # long prompts, a 6-turn conversation with the prompt cache on and off, PEER=1: llama.cpp
    Phase("conversation", phase_conversation, describe_conversation, timeout_s=3600),
)


@contextlib.contextmanager
def opened(path: Path) -> Iterator[IO[str]]:
    with path.open("w", encoding="utf-8") as handle:
        yield handle


def phases_of(opts: Options) -> tuple[Phase, ...]:
    """The phases of this run's size: `--size 8b` (make bench SIZE=8b) runs phase_8b.py's."""
    return PHASES_8B if opts.size == "8b" else PHASES


async def run_phases(run: Run, report: Report) -> None:
    meter = CpuMeter([run.raw.proc.pid, run.node.proc.pid])
    load: dict[str, float] = {}
    report.environment["foreign_cores_by_phase"] = load
    report.node_rss_samples = run.node_rss_samples
    for phase in phases_of(run.opts):
        start = meter.snapshot()
        try:
            timeout = phase.timeout_s or run.opts.phase_timeout_s
            figures = await asyncio.wait_for(phase.measure(run), timeout)
        except TimeoutError:
            raise RuntimeError(f"phase {phase.name} took longer than {timeout:.0f} s") from None
        report.phases[phase.name] = run.phases[phase.name] = figures
        if phase.metered:
            load[phase.name] = CpuMeter.foreign_cores(start, meter.snapshot())


def run(opts: Options) -> Report:
    report = Report()
    report.environment = {
        "model": str(opts.model),
        "size": opts.size,
        "threads": opts.threads,
        "queue_size": opts.queue_size,
        "burst_clients": opts.burst_clients,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "loadavg_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
    opts.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with (
        opened(opts.out / f"{opts.stem}-raw.log") as raw_log,
        opened(opts.out / f"{opts.stem}-node.log") as node_log,
    ):
        raw: RawWorker | None = None
        node: Node | None = None
        try:
            if opts.size != "tiny":  # the same start for both: the file in the page cache
                report.environment["page_cache_read_s"] = warm_page_cache(opts.model)
            log.info("loading the model in the raw worker")
            raw = RawWorker(opts.model, opts.threads, raw_log)
            log.info("starting llm-node")
            node = Node(opts, node_log)
            report.environment["node_ready_s"] = node.wait_ready(opts.ready_timeout_s)
            report.environment["raw_load_s"] = raw.hello["load_seconds"]
            asyncio.run(run_phases(Run(opts, raw, node, opts.n_batch or node_n_batch()), report))
        except Exception as exc:
            report.error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            if node is not None:
                node.stop()
            if raw is not None:
                raw.close()
            report.environment["duration_s"] = time.perf_counter() - started
            report.environment["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
            print(write_reports(report, phases_of(opts), opts.out, opts.stem))
    return report


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s bench: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # no line per request
    opts = parse_args(argv)
    try:
        run(opts)
    except Exception:
        log.exception("the benchmark did not complete (partial report written)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
