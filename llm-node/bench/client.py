"""The benchmark's HTTP client side: streaming and plain completions, timed, and /metrics."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from options import SAMPLING
from processes import Node
from prometheus_client.parser import text_string_to_metric_families
from rawhttp import Connection, iter_lines


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


Samples = list[tuple[str, dict[str, str], float]]


def scrape(url: str) -> Samples:
    """Every sample of /metrics as (name, labels, value), read with prometheus_client's parser."""
    text = httpx.get(url + "/metrics", timeout=10.0).text
    return [
        (sample.name, dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def metric_sum(samples: Samples, name: str, **labels: str) -> float:
    """Sum of every sample of `name` whose labels include `labels`."""
    return sum(
        value
        for sample_name, sample_labels, value in samples
        if sample_name == name and labels.items() <= sample_labels.items()
    )
