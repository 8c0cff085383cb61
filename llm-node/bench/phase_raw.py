"""Phase 1, raw vs node: raw in-process gpt4all against the node over HTTP streaming, in pairs."""

from __future__ import annotations

import logging
import time
from typing import Any

from client import Samples, StreamResult, connections, metric_sum, scrape, stream_completion
from cpuload import QUIET_CORES, CpuMeter, main_thread_cpu_seconds
from options import PROMPT, SAMPLING, Options
from phase import Run
from stats import fmt, median, ms
from targets import pct

log = logging.getLogger("bench")


def raw_request(opts: Options, n_batch: int) -> dict[str, Any]:
    return {
        "cmd": "generate",
        "prompt": PROMPT,
        "max_tokens": opts.max_tokens,
        "temp": SAMPLING["temperature"],
        "top_k": SAMPLING["top_k"],
        "top_p": SAMPLING["top_p"],
        "min_p": 0.0,
        "repeat_penalty": SAMPLING["repeat_penalty"],
        "repeat_last_n": SAMPLING["repeat_last_n"],
        "n_batch": n_batch,
    }


def raw_sample(reply: dict[str, Any]) -> dict[str, Any]:
    first, last, t0 = reply["first"], reply["last"], reply["t0"]
    tokens = int(reply["tokens"])
    rate = (tokens - 1) / (last - first) if first is not None and last > first else None
    return {
        "ttft_s": None if first is None else first - t0,
        "decode_tps": rate,
        "tokens": tokens,
        "total_s": reply["end"] - t0,
        "text": reply["text"],
    }


def node_sample(result: StreamResult) -> dict[str, Any]:
    if result.status != 200 or not result.done:
        raise RuntimeError(f"streaming request failed: status {result.status}")
    return {
        "ttft_s": result.ttft,
        "decode_tps": result.decode_rate,
        "tokens": result.n_tokens,
        "chunks": result.chunks,
        "total_s": None if result.end is None else result.end - result.t0,
        "finish_reason": result.finish_reason,
        "text": result.text,
    }


def summarize(samples: list[dict[str, Any]]) -> dict[str, Any]:
    ttfts = [s["ttft_s"] for s in samples if s["ttft_s"] is not None]
    rates = [s["decode_tps"] for s in samples if s["decode_tps"] is not None]
    return {
        "ttft_ms_median": ms(median(ttfts)),
        "ttft_ms_min": ms(min(ttfts)) if ttfts else None,
        "decode_tps_median": median(rates),
        "decode_tps_max": max(rates) if rates else None,
        "tokens_median": median([float(s["tokens"]) for s in samples]),
    }


def server_view(before: Samples, after: Samples) -> dict[str, float | None]:
    """The node's own figures for the one request between two scrapes (engine, no HTTP)."""
    endpoint = {"endpoint": "/v1/completions"}

    def delta(name: str, **labels: str) -> float:
        return metric_sum(after, name, **labels) - metric_sum(before, name, **labels)

    rates = delta("llm_decode_tokens_per_second_count")
    ttfts = delta("llm_time_to_first_token_seconds_count", **endpoint)
    return {
        "server_decode_tps": delta("llm_decode_tokens_per_second_sum") / rates if rates else None,
        "server_ttft_s": (
            delta("llm_time_to_first_token_seconds_sum", **endpoint) / ttfts if ttfts else None
        ),
    }


def compare(
    raw_samples: list[dict[str, Any]], node_samples: list[dict[str, Any]]
) -> dict[str, Any]:
    """Raw vs node over pairs of samples (pair i = raw sample i, then node sample i)."""
    raw_sum, node_sum = summarize(raw_samples), summarize(node_samples)
    ratio = overhead = None
    if node_sum["decode_tps_median"] and raw_sum["decode_tps_median"]:
        ratio = node_sum["decode_tps_median"] / raw_sum["decode_tps_median"]
    if node_sum["ttft_ms_median"] is not None and raw_sum["ttft_ms_median"] is not None:
        overhead = node_sum["ttft_ms_median"] - raw_sum["ttft_ms_median"]
    pairs = list(zip(raw_samples, node_samples, strict=True))
    paired_ratios = [
        n["decode_tps"] / r["decode_tps"] for r, n in pairs if r["decode_tps"] and n["decode_tps"]
    ]
    paired_overheads = [
        1000 * (n["ttft_s"] - r["ttft_s"])
        for r, n in pairs
        if None not in (r["ttft_s"], n["ttft_s"])
    ]
    server_rates = [n["server_decode_tps"] for n in node_samples if n["server_decode_tps"]]

    def per_token_us(samples: list[dict[str, Any]]) -> float | None:
        tokens = sum(s["tokens"] for s in samples)
        cpu = sum(s.get("main_thread_cpu_s", 0.0) for s in samples)
        return 1e6 * cpu / tokens if tokens else None

    server_ttfts = [n["server_ttft_s"] for n in node_samples if n["server_ttft_s"] is not None]
    return {
        "pairs": len(pairs),
        "raw": raw_sum,
        "node": node_sum,
        # The verdict: medians of the per-pair figures. A pair's two halves run back to back,
        # so the machine's drift (other jobs, the hypervisor) cancels out within a pair.
        "decode_ratio": median(paired_ratios),
        "ttft_overhead_ms": median(paired_overheads),
        "decode_ratio_of_medians": ratio,
        "ttft_overhead_of_medians_ms": overhead,
        "server_decode_tps_median": median(server_rates),
        # CPU the consuming thread spends per token: the node's event loop (SSE path) vs the
        # raw worker's loop over the streaming generator. It is taken from the cores that
        # generate, so it shows where a decode-rate gap comes from.
        "main_thread_cpu_us_per_token_raw": per_token_us(raw_samples),
        "main_thread_cpu_us_per_token_node": per_token_us(node_samples),
        "server_ttft_ms_median": ms(median(server_ttfts)),
    }


async def phase_raw_vs_node(run: Run) -> dict[str, Any]:
    """Alternate raw and node generations (never at the same time); one warm-up each.

    Each pair also records the foreign CPU load (other processes on the machine) while it ran.
    Pairs continue until `reps` pairs were taken on a quiet machine (foreign load below
    QUIET_CORES during both halves), or 3 x reps pairs, or `raw_budget_s` seconds. The verdict
    uses the quiet pairs when there are at least 3 of them, else every pair (and says so).
    """
    opts, raw, node, n_batch = run.opts, run.raw, run.node, run.n_batch
    request = raw_request(opts, n_batch)
    meter = CpuMeter([raw.proc.pid, node.proc.pid])
    raw_samples: list[dict[str, Any]] = []
    node_samples: list[dict[str, Any]] = []
    quiet: list[int] = []
    started = time.perf_counter()
    (conn,) = await connections(node, 1)
    try:
        raw.call(**request)  # warm-up
        await stream_completion(conn, PROMPT, opts.max_tokens)  # warm-up
        while (
            len(quiet) < opts.reps
            and len(raw_samples) < 3 * opts.reps
            and (len(raw_samples) < opts.reps or time.perf_counter() - started < opts.raw_budget_s)
        ):
            a, raw_main = meter.snapshot(), main_thread_cpu_seconds(raw.proc.pid)
            raw_s = raw_sample(raw.call(**request))
            b, raw_main = meter.snapshot(), main_thread_cpu_seconds(raw.proc.pid) - raw_main
            before = scrape(node.url)
            c, node_main = meter.snapshot(), main_thread_cpu_seconds(node.proc.pid)
            node_s = node_sample(await stream_completion(conn, PROMPT, opts.max_tokens))
            d, node_main = meter.snapshot(), main_thread_cpu_seconds(node.proc.pid) - node_main
            node_s.update(server_view(before, scrape(node.url)))
            raw_s["main_thread_cpu_s"] = raw_main
            node_s["main_thread_cpu_s"] = node_main
            raw_s["foreign_cores"] = CpuMeter.foreign_cores(a, b)
            node_s["foreign_cores"] = CpuMeter.foreign_cores(c, d)
            raw_samples.append(raw_s)
            node_samples.append(node_s)
            if max(raw_s["foreign_cores"], node_s["foreign_cores"]) < QUIET_CORES:
                quiet.append(len(raw_samples) - 1)
            log.info(
                "raw vs node pair %d: raw %.1f, node %.1f tok/s; foreign load %.2f/%.2f cores",
                len(raw_samples),
                raw_s["decode_tps"] or 0.0,
                node_s["decode_tps"] or 0.0,
                raw_s["foreign_cores"],
                node_s["foreign_cores"],
            )
    finally:
        conn.close()
    run.node_rss_samples.append(node.rss())

    use_quiet = len(quiet) >= 3
    chosen = quiet if use_quiet else list(range(len(raw_samples)))
    return {
        "prompt": PROMPT,
        "max_tokens": opts.max_tokens,
        "sampling": SAMPLING,
        "n_batch": n_batch,
        "judged_on": "quiet pairs" if use_quiet else "all pairs (fewer than 3 were quiet)",
        "quiet_pairs": len(quiet),
        "foreign_cores_median": median([s["foreign_cores"] for s in raw_samples + node_samples]),
        **compare([raw_samples[i] for i in chosen], [node_samples[i] for i in chosen]),
        "all_pairs": compare(raw_samples, node_samples),
        "same_text": len({s["text"] for s in raw_samples + node_samples}) == 1,
        "raw_samples": raw_samples,
        "node_samples": node_samples,
    }


def describe_raw_vs_node(rv: dict[str, Any], environment: dict[str, Any]) -> list[str]:
    every = rv.get("all_pairs", {})
    return [
        f"Raw vs node: prompt {rv['prompt']!r}, max_tokens {rv['max_tokens']}, greedy, "
        f"n_batch {rv['n_batch']}; raw and node generations alternate, one at a time, after "
        f"one warm-up each; same text from both: {'yes' if rv['same_text'] else 'NO'}. "
        f"Raw and node columns: medians; 'node vs raw': medians of the per-pair ratio and "
        f"difference (ratio of the medians: "
        f"{fmt(pct(rv.get('decode_ratio_of_medians')), 1, ' %')}, difference of the "
        f"medians: {fmt(rv.get('ttft_overhead_of_medians_ms'), 1, ' ms')}). Judged on "
        f"{rv['judged_on']}: {rv['pairs']} of {every.get('pairs')} pairs (quiet = other "
        f"processes used < {QUIET_CORES} core meanwhile; median foreign load "
        f"{fmt(rv.get('foreign_cores_median'), 2)} cores). Every pair: decode ratio "
        f"{fmt(pct(every.get('decode_ratio')), 1, ' %')}, TTFT overhead "
        f"{fmt(every.get('ttft_overhead_ms'), 1, ' ms')}. The node's own metrics for the "
        f"same requests (engine callbacks, no HTTP): decode "
        f"{fmt(rv.get('server_decode_tps_median'))} tokens/s, TTFT "
        f"{fmt(rv.get('server_ttft_ms_median'))} ms (medians). CPU of the consuming "
        f"thread per token: node event loop "
        f"{fmt(rv.get('main_thread_cpu_us_per_token_node'), 0)} us, raw worker "
        f"{fmt(rv.get('main_thread_cpu_us_per_token_raw'), 0)} us.",
        "",
    ]
