"""Phases 2 to 5 against the node: concurrency sweep, overload burst, disconnect, memory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from client import (
    PlainResult,
    StreamResult,
    completion_body,
    connections,
    metric_sum,
    plain_completion,
    read_stream,
    scrape,
    stream_completion,
)
from options import PROMPT, SHORT_PROMPT
from phase import Run
from rawhttp import Connection, iter_lines
from stats import fmt, median, mib, ms, peak_rss_bytes, percentile

log = logging.getLogger("bench")


async def run_clients(
    conns: list[Connection], total: int, max_tokens: int
) -> tuple[list[PlainResult], float]:
    """One closed-loop client per connection, sharing `total` requests; no retry on 503."""
    remaining = total
    results: list[PlainResult] = []

    async def one_client(conn: Connection) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            results.append(await plain_completion(conn, PROMPT, max_tokens))

    started = time.perf_counter()
    await asyncio.gather(*(one_client(conn) for conn in conns))
    return results, time.perf_counter() - started


async def phase_sweep(run: Run) -> list[dict[str, Any]]:
    """Closed-loop clients at each level, non-streaming, no retry: latency and throughput."""
    opts, node = run.opts, run.node
    rows: list[dict[str, Any]] = []
    for level in opts.sweep_levels:
        log.info("concurrency sweep: %d clients", level)
        conns = await connections(node, level)
        try:
            total = max(opts.sweep_requests, level)
            results, wall = await run_clients(conns, total, opts.sweep_max_tokens)
        finally:
            for conn in conns:
                conn.close()
        ok = [r for r in results if r.status == 200]
        latencies = [r.latency for r in ok]
        tokens = sum(r.tokens for r in ok)
        rows.append(
            {
                "clients": level,
                "requests": len(results),
                "ok": len(ok),
                "rejected_503": sum(r.status == 503 for r in results),
                "other_status": sorted({r.status for r in results} - {200, 503}),
                "p50_ms": ms(percentile(latencies, 50)),
                "p95_ms": ms(percentile(latencies, 95)),
                "wall_s": wall,
                "requests_per_s": len(ok) / wall,
                "tokens_per_s": tokens / wall,
                "max_tokens": opts.sweep_max_tokens,
            }
        )
        run.node_rss_samples.append(node.rss())
    return rows


async def phase_overload(run: Run) -> dict[str, Any]:
    """`burst_clients` requests at once against a queue of `queue_size`; time the 503s."""
    opts, node = run.opts, run.node
    rejected: list[PlainResult] = []
    accepted = 0
    other: set[int] = set()
    conns = await connections(node, opts.burst_clients)
    try:
        for burst in range(opts.bursts):
            log.info("overload burst %d/%d: %d clients", burst + 1, opts.bursts, opts.burst_clients)
            results = await asyncio.gather(
                *(plain_completion(conn, PROMPT, opts.sweep_max_tokens) for conn in conns)
            )
            rejected += [r for r in results if r.status == 503]
            accepted += sum(r.status == 200 for r in results)
            other |= {r.status for r in results} - {200, 503}
    finally:
        for conn in conns:
            conn.close()
    run.node_rss_samples.append(node.rss())
    latencies = [r.latency for r in rejected]
    return {
        "clients": opts.burst_clients,
        "queue_size": opts.queue_size,
        "bursts": opts.bursts,
        "accepted": accepted,
        "rejected_503": len(rejected),
        "other_status": sorted(other),
        "p50_ms": ms(percentile(latencies, 50)),
        "p99_ms": ms(percentile(latencies, 99)),
        "max_ms": ms(max(latencies)) if latencies else None,
        "all_have_retry_after": all(r.retry_after for r in rejected) if rejected else None,
        "all_openai_error_shape": all(r.error_shape for r in rejected) if rejected else None,
    }


async def phase_disconnect(run: Run) -> dict[str, Any]:
    """A streams and drops its connection after a few tokens; B waits in the queue behind it.

    worker free = (B's first token - A's disconnect) - C's TTFT, where C is the same request as
    B sent right afterwards to the idle node: the gap minus the time B itself needs once the
    worker has taken it (prompt processing and its first token).
    """
    opts, node = run.opts, run.node
    b_conn, c_conn = await connections(node, 2)
    before = scrape(node.url)
    trials: list[dict[str, Any]] = []
    try:
        for trial in range(opts.disconnect_trials):
            log.info("disconnect: trial %d/%d", trial + 1, opts.disconnect_trials)
            (a_conn,) = await connections(node, 1)
            body = completion_body(PROMPT, 512, stream=True)
            a = StreamResult(status=0, t0=time.perf_counter())
            await a_conn.send("POST", "/v1/completions", body)
            head = await a_conn.read_head()
            if head.status != 200:
                raise RuntimeError(f"streaming request A: status {head.status}")
            lines = iter_lines(a_conn.iter_body(head))
            await read_stream(a, lines, keep=3)
            b_task = asyncio.create_task(stream_completion(b_conn, SHORT_PROMPT, 4))
            # Keep reading A for a while so that B is surely waiting in the queue.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(read_stream(a, lines, keep=10_000), 0.3)
            disconnect = time.perf_counter()
            a_conn.close()
            b = await b_task
            c = await stream_completion(c_conn, SHORT_PROMPT, 4)
            if b.first is None or c.ttft is None:
                raise RuntimeError(f"requests B/C got no token: status {b.status}/{c.status}")
            gap = b.first - disconnect
            trials.append(
                {
                    "a_chunks_before_disconnect": a.chunks,
                    "a_finished_before_disconnect": a.done,
                    "gap_ms": ms(gap),
                    "idle_ttft_ms": ms(c.ttft),
                    "worker_free_ms": ms(gap - c.ttft),
                }
            )
    finally:
        b_conn.close()
        c_conn.close()
    after = scrape(node.url)
    return {
        "method": "B's first token minus A's disconnect, minus the TTFT of the same request "
        "on the idle node right after",
        "worker_free_ms_median": median([t["worker_free_ms"] for t in trials]),
        "worker_free_ms_max": max(t["worker_free_ms"] for t in trials),
        "gap_ms_median": median([t["gap_ms"] for t in trials]),
        "idle_ttft_ms_median": median([t["idle_ttft_ms"] for t in trials]),
        "cancellations_counted": metric_sum(after, "llm_cancellations_total")
        - metric_sum(before, "llm_cancellations_total"),
        "trials": trials,
    }


async def phase_memory(run: Run) -> dict[str, Any]:
    """Resident memory: the node's highest RSS sample over the run vs the raw process now."""
    raw_mem = run.raw.call(cmd="memory")
    node_now = run.node.rss()
    run.node_rss_samples.append(node_now)
    node_max = max(run.node_rss_samples)
    return {
        "raw_rss_mib": mib(raw_mem["rss_bytes"]),
        "raw_peak_rss_mib": mib(raw_mem["peak_rss_bytes"]),
        "node_rss_mib": mib(node_max),
        "node_rss_now_mib": mib(node_now),
        "node_peak_rss_mib": mib(peak_rss_bytes(run.node.proc.pid)),
        "overhead_mib": mib(node_max - raw_mem["rss_bytes"]),
    }


def describe_sweep(sweep: Any, environment: dict[str, Any]) -> list[str]:
    lines = [
        "| Clients | Requests | 200 | 503 | p50 latency (ms) | p95 latency (ms) "
        "| Requests/s | Tokens/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in sweep:
        lines.append(
            f"| {row['clients']} | {row['requests']} | {row['ok']} | {row['rejected_503']} "
            f"| {fmt(row['p50_ms'], 0)} | {fmt(row['p95_ms'], 0)} "
            f"| {fmt(row['requests_per_s'], 2)} | {fmt(row['tokens_per_s'])} |"
        )
    lines += [
        "",
        f"Sweep: non-streaming /v1/completions, max_tokens "
        f"{sweep[0]['max_tokens']}, closed-loop clients sharing the requests, "
        "no retry after a 503; latency of the 200s.",
        "",
    ]
    return lines


def describe_overload(ov: Any, environment: dict[str, Any]) -> list[str]:
    return [
        f"Overload: {ov['bursts']} bursts of {ov['clients']} simultaneous requests on warm "
        f"keep-alive connections: {ov['accepted']} accepted, {ov['rejected_503']} answered "
        f"503 (max {fmt(ov.get('max_ms'))} ms; Retry-After on all: "
        f"{ov.get('all_have_retry_after')}; OpenAI error shape on all: "
        f"{ov.get('all_openai_error_shape')}).",
        "",
    ]


def describe_disconnect(dc: Any, environment: dict[str, Any]) -> list[str]:
    return [
        f"Disconnect: {dc['method']} (median {fmt(dc['idle_ttft_ms_median'])} ms); gap median "
        f"{fmt(dc['gap_ms_median'])} ms; cancellations counted by the node: "
        f"{dc['cancellations_counted']:.0f} of {len(dc['trials'])}.",
        "",
    ]


def describe_memory(mem: Any, environment: dict[str, Any]) -> list[str]:
    return [
        f"Memory: psutil RSS of the node process (highest sample over the run) vs the raw "
        f"process after the same generations; kernel peaks (VmHWM): node "
        f"{fmt(mem.get('node_peak_rss_mib'))} MiB, raw {fmt(mem.get('raw_peak_rss_mib'))} MiB.",
        "",
    ]
