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
6. long prompts and conversations, the prompt cache on and off: ``conversation.py``;
   with ``--peer PYTHON`` (``make bench PEER=1``) also llama.cpp itself: ``peer.py``.

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

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import conversation
import httpx
import peer
import psutil
from cpuload import QUIET_CORES, CpuMeter, main_thread_cpu_seconds
from rawhttp import Connection, iter_lines
from stats import fmt, median, mib, ms, peak_rss_bytes, percentile

log = logging.getLogger("bench")

HERE = Path(__file__).resolve().parent
LLM_NODE_DIR = HERE.parent  # llm-node/, the directory that holds the llm_node package

# One fixed prompt that the tiny model continues well past max_tokens without an end token.
PROMPT = "Once upon a time, in a small village by the sea,"
SHORT_PROMPT = "Hello,"

# Greedy decoding with the node's own defaults for everything else; the raw side gets the very
# same values, so both run the same computation (the outputs are compared to prove it).
SAMPLING: dict[str, Any] = {
    "temperature": 0.0,
    "top_p": 0.95,
    "top_k": 40,
    "repeat_penalty": 1.1,
    "repeat_last_n": 64,
}

TARGETS = {
    "decode_ratio": ">= 0.97",
    "ttft_overhead_ms": "<= 15",
    "overload_503_p99_ms": "< 50",
    "worker_free_ms": "<= 250",
    "rss_overhead_mib": "<= 80",
}


@dataclass
class Options:
    model: Path
    threads: int
    out: Path
    reps: int = 9
    raw_budget_s: float = 60.0
    phase_timeout_s: float = 600.0  # a hung node fails the run instead of blocking it
    max_tokens: int = 96
    sweep_levels: tuple[int, ...] = (1, 4, 16)
    sweep_requests: int = 8
    sweep_max_tokens: int = 32
    queue_size: int = 8
    burst_clients: int = 50
    bursts: int = 3
    disconnect_trials: int = 5
    n_batch: int | None = None
    peer: Path | None = None  # the peer's Python (llama-cpp-python), see peer.py


# --------------------------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def tree_rss(pid: int) -> int:
    """Resident memory of a process and its children (uvicorn runs in one process, but be sure)."""
    proc = psutil.Process(pid)
    total: int = proc.memory_info().rss
    for child in proc.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            total += child.memory_info().rss
    return total


def stop_process(proc: subprocess.Popen[Any], timeout: float = 15.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


class RawWorker:
    """raw_worker.py in a subprocess: one JSON command per line in, one JSON reply per line out."""

    def __init__(self, model: Path, threads: int, stderr: IO[str]) -> None:
        command = [sys.executable, str(HERE / "raw_worker.py"), "--model", str(model)]
        command += ["--threads", str(threads)]
        self.proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            bufsize=1,
        )
        self.hello = self._read()

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"raw worker exited (status {self.proc.wait()}); see its log")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"raw worker: {reply['error']}")
        return reply

    def call(self, **command: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None and self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.proc.stdin.flush()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                stop_process(self.proc)


class Node:
    """`python -m llm_node` on a free loopback port, configured with LLM_* variables."""

    def __init__(self, opts: Options, log_file: IO[str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        env.update(
            {
                "PYTHONPATH": os.pathsep.join(
                    [str(LLM_NODE_DIR), *filter(None, [env.get("PYTHONPATH")])]
                ),
                "LLM_MODEL_PATH": str(opts.model),
                "LLM_HOST": "127.0.0.1",
                "LLM_PORT": str(self.port),
                "LLM_N_THREADS": str(opts.threads),
                "LLM_QUEUE_SIZE": str(opts.queue_size),
                "LLM_LOG_LEVEL": "info",
            }
        )
        if opts.n_batch is not None:
            env["LLM_N_BATCH"] = str(opts.n_batch)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llm_node"],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def wait_ready(self, timeout: float = 120.0) -> float:
        started = time.perf_counter()
        deadline = started + timeout
        with httpx.Client(base_url=self.url, timeout=2.0) as client:
            while time.perf_counter() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"llm-node exited with status {self.proc.returncode} before /ready"
                    )
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/ready").status_code == 200:
                        return time.perf_counter() - started
                time.sleep(0.1)
        raise RuntimeError(f"llm-node not ready after {timeout:.0f} s")

    def rss(self) -> int:
        return tree_rss(self.proc.pid)

    def stop(self) -> None:
        stop_process(self.proc)


# --------------------------------------------------------------------------------------------
# HTTP measurements
# --------------------------------------------------------------------------------------------


@dataclass
class StreamResult:
    status: int
    t0: float
    first: float | None = None
    last: float | None = None
    end: float | None = None
    chunks: int = 0
    tokens: int | None = None  # usage.completion_tokens from the final chunk
    finish_reason: str | None = None
    text: str = ""
    done: bool = False

    @property
    def ttft(self) -> float | None:
        return None if self.first is None else self.first - self.t0

    @property
    def n_tokens(self) -> int:
        return self.tokens if self.tokens is not None else self.chunks

    @property
    def decode_rate(self) -> float | None:
        if self.first is None or self.last is None or self.last <= self.first:
            return None
        return (self.n_tokens - 1) / (self.last - self.first)


def completion_body(prompt: str, max_tokens: int, *, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"prompt": prompt, "max_tokens": max_tokens, "stream": stream}
    body.update(SAMPLING)
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


def parse_event(line: str) -> dict[str, Any] | None:
    """One SSE `data:` line as JSON; None for comments, blank lines and [DONE]."""
    if not line.startswith("data:"):
        return None
    data = line[5:].strip()
    if data == "[DONE]":
        return None
    event: dict[str, Any] = json.loads(data)
    return event


async def read_stream(result: StreamResult, lines: AsyncIterator[str], keep: int | None) -> None:
    """Consume SSE lines into `result`; stop after `keep` text chunks when given.

    `lines` is one `response.aiter_lines()` iterator, so reading can resume where it stopped.
    """
    async for line in lines:
        if line.strip() == "data: [DONE]":
            result.done = True
            break
        event = parse_event(line)
        if event is None:
            continue
        now = time.perf_counter()
        for choice in event.get("choices") or []:
            text = choice.get("text") or ""
            if text:
                if result.first is None:
                    result.first = now
                result.last = now
                result.chunks += 1
                result.text += text
            result.finish_reason = choice.get("finish_reason") or result.finish_reason
        usage = event.get("usage")
        if usage:
            result.tokens = int(usage["completion_tokens"])
        if keep is not None and result.chunks >= keep:
            break


async def stream_completion(conn: Connection, prompt: str, max_tokens: int) -> StreamResult:
    """One streaming /v1/completions on `conn`, read to its end (the connection stays usable)."""
    body = completion_body(prompt, max_tokens, stream=True)
    await conn.open()
    t0 = time.perf_counter()
    await conn.send("POST", "/v1/completions", body)
    head = await conn.read_head()
    result = StreamResult(status=head.status, t0=t0)
    if head.status == 200:
        lines = iter_lines(conn.iter_body(head))
        await read_stream(result, lines, keep=None)
        async for _ in lines:  # the end of the chunked body, after `data: [DONE]`
            pass
    else:
        await conn.read_body(head)
    result.end = time.perf_counter()
    return result


@dataclass
class PlainResult:
    status: int
    latency: float
    tokens: int = 0
    retry_after: str | None = None
    error_shape: bool = False


async def plain_completion(conn: Connection, prompt: str, max_tokens: int) -> PlainResult:
    """One non-streaming /v1/completions; latency from writing the request to the whole answer."""
    body = completion_body(prompt, max_tokens, stream=False)
    await conn.open()
    t0 = time.perf_counter()
    await conn.send("POST", "/v1/completions", body)
    head = await conn.read_head()
    raw = await conn.read_body(head)
    result = PlainResult(status=head.status, latency=time.perf_counter() - t0)
    result.retry_after = head.headers.get("retry-after")
    with contextlib.suppress(ValueError, KeyError, TypeError):
        payload = json.loads(raw)
        if head.status == 200:
            result.tokens = int(payload["usage"]["completion_tokens"])
        else:
            result.error_shape = isinstance(payload.get("error"), dict)
    return result


async def connections(node: Node, count: int) -> list[Connection]:
    """`count` open keep-alive connections (one per simulated client), each used once already,
    so that no figure includes TCP set-up."""
    conns = [Connection("127.0.0.1", node.port) for _ in range(count)]
    for conn in conns:
        await conn.send("GET", "/health")
        await conn.read_body(await conn.read_head())
    return conns


def scrape(url: str) -> dict[str, float]:
    """/metrics as {series: value}, labels kept in the key (e.g. 'x_total{reason="a"}')."""
    text = httpx.get(url + "/metrics", timeout=10.0).text
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        with contextlib.suppress(ValueError):
            samples[name] = float(value)
    return samples


def metric_sum(samples: dict[str, float], name: str, **labels: str) -> float:
    """Sum of every series of `name` whose labels include `labels`."""
    total = 0.0
    wanted = [f'{key}="{value}"' for key, value in labels.items()]
    for series, value in samples.items():
        base = series.split("{", 1)[0]
        if base == name and all(label in series for label in wanted):
            total += value
    return total


# --------------------------------------------------------------------------------------------
# phases
# --------------------------------------------------------------------------------------------


@dataclass
class Report:
    environment: dict[str, Any] = field(default_factory=dict)
    raw_vs_node: dict[str, Any] = field(default_factory=dict)
    sweep: list[dict[str, Any]] = field(default_factory=list)
    overload: dict[str, Any] = field(default_factory=dict)
    disconnect: dict[str, Any] = field(default_factory=dict)
    memory: dict[str, Any] = field(default_factory=dict)
    conversation: dict[str, Any] = field(default_factory=dict)  # conversation.py's phases
    targets: list[dict[str, Any]] = field(default_factory=list)
    node_rss_samples: list[int] = field(default_factory=list)
    error: str | None = None


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


def server_view(before: dict[str, float], after: dict[str, float]) -> dict[str, float | None]:
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


async def phase_raw_vs_node(
    opts: Options, raw: RawWorker, node: Node, n_batch: int, report: Report
) -> None:
    """Alternate raw and node generations (never at the same time); one warm-up each.

    Each pair also records the foreign CPU load (other processes on the machine) while it ran.
    Pairs continue until `reps` pairs were taken on a quiet machine (foreign load below
    QUIET_CORES during both halves), or 3 x reps pairs, or `raw_budget_s` seconds. The verdict
    uses the quiet pairs when there are at least 3 of them, else every pair (and says so).
    """
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
    report.node_rss_samples.append(node.rss())

    use_quiet = len(quiet) >= 3
    chosen = quiet if use_quiet else list(range(len(raw_samples)))
    report.raw_vs_node = {
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


async def phase_sweep(opts: Options, node: Node, report: Report) -> None:
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
        report.sweep.append(
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
        report.node_rss_samples.append(node.rss())


async def phase_overload(opts: Options, node: Node, report: Report) -> None:
    """`burst_clients` requests at once against a queue of `queue_size`; time the 503s."""
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
    report.node_rss_samples.append(node.rss())
    latencies = [r.latency for r in rejected]
    report.overload = {
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


async def phase_disconnect(opts: Options, node: Node, report: Report) -> None:
    """A streams and drops its connection after a few tokens; B waits in the queue behind it.

    worker free = (B's first token - A's disconnect) - C's TTFT, where C is the same request as
    B sent right afterwards to the idle node: the gap minus the time B itself needs once the
    worker has taken it (prompt processing and its first token).
    """
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
    report.disconnect = {
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


def phase_memory(raw: RawWorker, node: Node, report: Report) -> None:
    raw_mem = raw.call(cmd="memory")
    node_now = node.rss()
    report.node_rss_samples.append(node_now)
    node_max = max(report.node_rss_samples)
    report.memory = {
        "raw_rss_mib": mib(raw_mem["rss_bytes"]),
        "raw_peak_rss_mib": mib(raw_mem["peak_rss_bytes"]),
        "node_rss_mib": mib(node_max),
        "node_rss_now_mib": mib(node_now),
        "node_peak_rss_mib": mib(peak_rss_bytes(node.proc.pid)),
        "overhead_mib": mib(node_max - raw_mem["rss_bytes"]),
    }


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------


def judge(report: Report) -> None:
    rv, ov, dc, mem = report.raw_vs_node, report.overload, report.disconnect, report.memory

    def add(name: str, value: float | None, passed: bool | None) -> None:
        report.targets.append(
            {
                "target": name,
                "value": value,
                "goal": TARGETS[name],
                "result": "n/a" if passed is None else ("PASS" if passed else "FAIL"),
            }
        )

    def check(value: float | None, ok: bool) -> bool | None:
        return None if value is None else ok

    ratio = rv.get("decode_ratio")
    add("decode_ratio", ratio, check(ratio, ratio is not None and ratio >= 0.97))
    overhead = rv.get("ttft_overhead_ms")
    add("ttft_overhead_ms", overhead, check(overhead, overhead is not None and overhead <= 15))
    p99 = ov.get("p99_ms")
    add("overload_503_p99_ms", p99, check(p99, p99 is not None and p99 < 50))
    free = dc.get("worker_free_ms_median")
    add("worker_free_ms", free, check(free, free is not None and free <= 250))
    extra = mem.get("overhead_mib")
    add("rss_overhead_mib", extra, check(extra, extra is not None and extra <= 80))


def busy_warning(by_phase: dict[str, float]) -> list[str]:
    busy = [name for name, cores in by_phase.items() if cores >= QUIET_CORES]
    if not busy:
        return []
    return [
        f"**Other processes used the CPU during {', '.join(busy)}** (>= {QUIET_CORES} core on "
        "average): those figures are disturbed; rerun on an idle machine to judge the targets.",
        "",
    ]


def pct(ratio: float | None) -> float | None:
    return None if ratio is None else 100 * ratio


def markdown(report: Report) -> str:
    rv, ov, dc, mem = report.raw_vs_node, report.overload, report.disconnect, report.memory
    raw, node = rv.get("raw", {}), rv.get("node", {})
    result = {t["target"]: t["result"] for t in report.targets}
    percent = pct(rv.get("decode_ratio"))
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
        "| Figure | Raw gpt4all | llm-node (HTTP) | Node vs raw | Target | Result |",
        "|---|---|---|---|---|---|",
        f"| Decode rate (tokens/s) | {fmt(raw.get('decode_tps_median'))} "
        f"| {fmt(node.get('decode_tps_median'))} "
        f"| {fmt(percent, 1, ' %')} "
        f"| >= 97 % | {result.get('decode_ratio', 'n/a')} |",
        f"| Time to first token (ms) | {fmt(raw.get('ttft_ms_median'))} "
        f"| {fmt(node.get('ttft_ms_median'))} | {fmt(rv.get('ttft_overhead_ms'), 1, ' ms')} "
        f"| <= 15 ms | {result.get('ttft_overhead_ms', 'n/a')} |",
        f"| 503 latency, {env.get('burst_clients')} clients vs queue {env.get('queue_size')} "
        "(ms) | "
        f"| p50 {fmt(ov.get('p50_ms'))}, p99 {fmt(ov.get('p99_ms'))} "
        f"| | p99 < 50 ms | {result.get('overload_503_p99_ms', 'n/a')} |",
        f"| Worker free after a disconnect (ms, median) | "
        f"| {fmt(dc.get('worker_free_ms_median'))} (max {fmt(dc.get('worker_free_ms_max'))}) "
        f"| | <= 250 ms | {result.get('worker_free_ms', 'n/a')} |",
        f"| Resident memory, model loaded (MiB) | {fmt(mem.get('raw_rss_mib'))} "
        f"| {fmt(mem.get('node_rss_mib'))} | {fmt(mem.get('overhead_mib'), 1, ' MiB')} "
        f"| <= raw + 80 MiB | {result.get('rss_overhead_mib', 'n/a')} |",
        "",
    ]
    if rv:
        every = rv.get("all_pairs", {})
        lines += [
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
    if report.sweep:
        lines += [
            "| Clients | Requests | 200 | 503 | p50 latency (ms) | p95 latency (ms) "
            "| Requests/s | Tokens/s |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in report.sweep:
            lines.append(
                f"| {row['clients']} | {row['requests']} | {row['ok']} | {row['rejected_503']} "
                f"| {fmt(row['p50_ms'], 0)} | {fmt(row['p95_ms'], 0)} "
                f"| {fmt(row['requests_per_s'], 2)} | {fmt(row['tokens_per_s'])} |"
            )
        lines += [
            "",
            f"Sweep: non-streaming /v1/completions, max_tokens "
            f"{report.sweep[0]['max_tokens']}, closed-loop clients sharing the requests, "
            "no retry after a 503; latency of the 200s.",
            "",
        ]
    if ov:
        lines += [
            f"Overload: {ov['bursts']} bursts of {ov['clients']} simultaneous requests on warm "
            f"keep-alive connections: {ov['accepted']} accepted, {ov['rejected_503']} answered "
            f"503 (max {fmt(ov.get('max_ms'))} ms; Retry-After on all: "
            f"{ov.get('all_have_retry_after')}; OpenAI error shape on all: "
            f"{ov.get('all_openai_error_shape')}).",
            "",
        ]
    if dc:
        lines += [
            f"Disconnect: {dc['method']} (median {fmt(dc['idle_ttft_ms_median'])} ms); gap median "
            f"{fmt(dc['gap_ms_median'])} ms; cancellations counted by the node: "
            f"{dc['cancellations_counted']:.0f} of {len(dc['trials'])}.",
            "",
        ]
    if mem:
        lines += [
            f"Memory: psutil RSS of the node process (highest sample over the run) vs the raw "
            f"process after the same generations; kernel peaks (VmHWM): node "
            f"{fmt(mem.get('node_peak_rss_mib'))} MiB, raw {fmt(mem.get('raw_peak_rss_mib'))} MiB.",
            "",
        ]
    if report.conversation:
        lines.append(conversation.markdown(report.conversation))
    if report.error:
        lines += [f"**The benchmark did not complete:** {report.error}", ""]
    return "\n".join(lines)


def write_reports(report: Report, out: Path) -> str:
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(asdict(report), indent=2) + "\n", encoding="utf-8")
    text = markdown(report)
    (out / "bench.md").write_text(text + "\n", encoding="utf-8")
    return text


def node_n_batch() -> int:
    """The node's default n_batch (LLM_N_BATCH), so the raw side processes prompts alike."""
    try:
        from llm_node.config import Settings
    except ImportError:
        return 8
    info = Settings.model_fields.get("n_batch")
    default = getattr(info, "default", None)
    env = os.environ.get("LLM_N_BATCH")
    return int(env) if env else (default if isinstance(default, int) else 8)


@contextlib.contextmanager
def opened(path: Path) -> Iterator[IO[str]]:
    with path.open("w", encoding="utf-8") as handle:
        yield handle


async def run_node_phases(opts: Options, raw: RawWorker, node: Node, report: Report) -> None:
    n_batch = opts.n_batch or node_n_batch()
    meter = CpuMeter([raw.proc.pid, node.proc.pid])
    load: dict[str, float] = {}
    report.environment["foreign_cores_by_phase"] = load
    phases: list[tuple[str, Callable[[], Awaitable[None]]]] = [
        ("raw_vs_node", lambda: phase_raw_vs_node(opts, raw, node, n_batch, report)),
        ("sweep", lambda: phase_sweep(opts, node, report)),
        ("overload", lambda: phase_overload(opts, node, report)),
        ("disconnect", lambda: phase_disconnect(opts, node, report)),
    ]
    for name, phase in phases:
        start = meter.snapshot()
        try:
            await asyncio.wait_for(phase(), opts.phase_timeout_s)
        except TimeoutError:
            raise RuntimeError(
                f"phase {name} took longer than {opts.phase_timeout_s:.0f} s"
            ) from None
        load[name] = CpuMeter.foreign_cores(start, meter.snapshot())
    phase_memory(raw, node, report)
    with opened(opts.out / "bench-conversation.log") as conversation_log:
        report.conversation = conversation.run(
            node.url, raw.call, n_batch, lambda: Node(opts, conversation_log)
        )
    if opts.peer is not None:
        report.conversation["peer"] = peer.run(opts.peer, opts.model, opts.threads)
        report.conversation["node_decode_tps"] = report.raw_vs_node["node"]["decode_tps_median"]


def run(opts: Options) -> Report:
    report = Report()
    report.environment = {
        "model": str(opts.model),
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
        opened(opts.out / "bench-raw.log") as raw_log,
        opened(opts.out / "bench-node.log") as node_log,
    ):
        raw: RawWorker | None = None
        node: Node | None = None
        try:
            log.info("loading the model in the raw worker")
            raw = RawWorker(opts.model, opts.threads, raw_log)
            log.info("starting llm-node")
            node = Node(opts, node_log)
            report.environment["node_ready_s"] = node.wait_ready()
            report.environment["raw_load_s"] = raw.hello["load_seconds"]
            asyncio.run(run_node_phases(opts, raw, node, report))
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
            judge(report)
            print(write_reports(report, opts.out))
    return report


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(description="Benchmark llm-node against raw gpt4all.")
    parser.add_argument("--model", type=Path, required=True, help="GGUF model file")
    parser.add_argument("--threads", type=int, default=2, help="gpt4all threads (both sides)")
    parser.add_argument("--out", type=Path, default=Path("reports"), help="reports directory")
    parser.add_argument("--reps", type=int, default=9, help="raw vs node pairs (minimum)")
    parser.add_argument("--max-tokens", type=int, default=96, help="tokens per raw/node run")
    parser.add_argument("--n-batch", type=int, default=None, help="default: the node's")
    parser.add_argument("--peer", type=Path, default=None, help="llama-cpp-python's python")
    args = parser.parse_args(argv)
    if not args.model.is_file():
        parser.error(f"no such model file: {args.model} (run `make model`)")
    return Options(
        model=args.model,
        threads=args.threads,
        out=args.out,
        reps=args.reps,
        max_tokens=args.max_tokens,
        n_batch=args.n_batch,
        peer=args.peer,
    )


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
