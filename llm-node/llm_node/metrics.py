"""Prometheus metrics of one app instance (its own registry: no import-time global state).

The names are a contract: the Grafana dashboards and the alert rules are built on them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import psutil
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# CPU generation: a short answer takes a fraction of a second, a long one minutes.
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 180, 300)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
PLANNING_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25)
# Copying a saved state in or out: ~2-10 ms for 219 tokens of the tiny model; at 8B size
# (128 KiB per token) a 1,000-token state is 125 MiB.
STATE_COPY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
# Where a reused prefix came from: the context as the last call left it, or a restored state.
CACHE_SOURCES = ("live", "saved")
# How a restore gave the backend its token list: written in place, or in a larger buffer.
TOKEN_LIST_WRITES = ("kept", "regrown")
DECODE_RATE_BUCKETS = (1, 2, 5, 10, 15, 20, 30, 40, 50, 75, 100, 150, 200, 300, 500)
REJECTION_REASONS = ("queue_full", "not_ready", "deadline", "too_large", "invalid", "unauthorized")
# Statuses every generating endpoint answers sooner or later: success, and busy or not ready.
EXPECTED_STATUSES = ("200", "503")


class ProcessCollector(Collector):
    """Resident memory and CPU of this process, read with psutil when Prometheus scrapes."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._process.cpu_percent(None)  # primes the counter: later calls measure since the last

    def collect(self) -> Iterator[Metric]:
        with self._process.oneshot():
            rss = self._process.memory_info().rss
            times = self._process.cpu_times()
            percent = self._process.cpu_percent(None)
        yield GaugeMetricFamily(
            "llm_process_resident_memory_bytes", "Resident memory of the llm-node process.", rss
        )
        yield CounterMetricFamily(
            "llm_process_cpu_seconds",
            "User and system CPU time of the process.",
            times.user + times.system,
        )
        yield GaugeMetricFamily(
            "llm_process_cpu_percent",
            "CPU use of the process since the previous scrape (100 = one core).",
            percent,
        )


class Metrics:
    def __init__(self) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # the *_created series only add noise to the scrape
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "llm_requests",
            "API requests by route and HTTP status.",
            ["endpoint", "status"],
            registry=r,
        )
        self.request_duration = Histogram(
            "llm_request_duration_seconds",
            "Time from request to the end of the response.",
            ["endpoint"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.time_to_first_token = Histogram(
            "llm_time_to_first_token_seconds",
            "Time from request (queue wait included) to the first generated token.",
            ["endpoint"],
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.decode_rate = Histogram(
            "llm_decode_tokens_per_second",
            "Generation speed of each request after its first token.",
            buckets=DECODE_RATE_BUCKETS,
            registry=r,
        )
        self.prompt_tokens = Counter(
            "llm_prompt_tokens",
            "Prompt tokens processed (evaluated plus reused from the prompt cache).",
            registry=r,
        )
        self.prompt_tokens_cached = Counter(
            "llm_prompt_tokens_cached",
            "Prompt tokens reused from the previous prompt's KV cache (part of llm_prompt_tokens).",
            registry=r,
        )
        self.prompt_planning = Histogram(
            "llm_prompt_planning_seconds",
            "Time to tokenize a prompt and find the reusable prefix, per request.",
            buckets=PLANNING_BUCKETS,
            registry=r,
        )
        self.generated_tokens = Counter("llm_generated_tokens", "Tokens generated.", registry=r)
        self.prompt_refill = Histogram(
            "llm_prompt_refill_seconds",
            "Time spent after an answer evaluating its reply for the next turn (prompt cache).",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.prompt_cache_hits = Counter(
            "llm_prompt_cache_hits",
            "Requests that reused a cached prefix, by where it was: the live context or a saved "
            "state restored first.",
            ["source"],
            registry=r,
        )
        for source in CACHE_SOURCES:
            self.prompt_cache_hits.labels(source=source)
        self.prompt_cache_restores = Counter(
            "llm_prompt_cache_restores",
            "Saved states put back into the context, by how the backend's token list took them.",
            ["token_list"],
            registry=r,
        )
        for write in TOKEN_LIST_WRITES:
            self.prompt_cache_restores.labels(token_list=write)
        self.prompt_cache_evictions = Counter(
            "llm_prompt_cache_evictions",
            "Saved states dropped, least recently used first, to stay within LLM_PROMPT_CACHE_MIB.",
            registry=r,
        )
        self.prompt_cache_bytes = Gauge(
            "llm_prompt_cache_bytes", "Bytes of saved states held by the prompt cache.", registry=r
        )
        self.prompt_cache_states = Gauge(
            "llm_prompt_cache_states", "Saved states held by the prompt cache.", registry=r
        )
        self.prompt_cache_restore = Histogram(
            "llm_prompt_cache_restore_seconds",
            "Time to put a saved state back into the context (token list included).",
            buckets=STATE_COPY_BUCKETS,
            registry=r,
        )
        self.prompt_cache_save = Histogram(
            "llm_prompt_cache_save_seconds",
            "Time to copy the context's state out after a call, for later requests.",
            buckets=STATE_COPY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge("llm_queue_depth", "Requests waiting for the model.", registry=r)
        self.queue_capacity = Gauge(
            "llm_queue_capacity", "Requests that may wait before 503 (LLM_QUEUE_SIZE).", registry=r
        )
        self.inflight = Gauge("llm_inflight_requests", "Generations running (0 or 1).", registry=r)
        self.rejections = Counter(
            "llm_rejections", "Requests refused, by reason.", ["reason"], registry=r
        )
        for reason in REJECTION_REASONS:
            self.rejections.labels(reason=reason)
        self.cancellations = Counter(
            "llm_cancellations", "Generations stopped because the client went away.", registry=r
        )
        self.model_loaded = Gauge("llm_model_loaded", "1 when the model is loaded.", registry=r)
        self.model_info = Gauge(
            "llm_model_info",
            "The served model (value 1).",
            ["model", "path", "n_ctx", "n_threads"],
            registry=r,
        )
        r.register(ProcessCollector())

    def create_endpoint_series(self, endpoints: Iterable[str], generating: Iterable[str]) -> None:
        """Export each endpoint's series at 0 from the start.

        A labelled series otherwise appears with its first observation, and Prometheus' rate()
        and increase() need a sample before it: the first request (or the first 503) would not
        count. Every endpoint gets status 200 and its duration histogram; the generating ones
        also status 503 and the time-to-first-token histogram.
        """
        generating = frozenset(generating)
        for endpoint in endpoints:
            self.request_duration.labels(endpoint=endpoint)
            statuses = EXPECTED_STATUSES if endpoint in generating else ("200",)
            for status in statuses:
                self.requests.labels(endpoint=endpoint, status=status)
            if endpoint in generating:
                self.time_to_first_token.labels(endpoint=endpoint)
