"""How `make bench SIZE=8b` drives and observes each engine: page cache, idleness, memory,
one node chat request, one raw gpt4all generation (phase_8b.py runs the phases with them)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
from processes import RawWorker
from shape_8b import (
    IDLE_TIMEOUT_S,
)
from stats import mib, status_bytes

log = logging.getLogger("bench")

# Greedy, no repeat penalty, the same on every engine.
SAMPLING: dict[str, Any] = {
    "temp": 0.0,
    "top_k": 40,
    "top_p": 0.95,
    "min_p": 0.0,
    "repeat_penalty": 1.0,
    "repeat_last_n": 64,
}


def warm_page_cache(model: Path) -> float:
    """Read the model file once, so every engine starts with it in the page cache (the
    deployment's steady state); the seconds it took."""
    started = time.perf_counter()
    with model.open("rb") as handle:
        while handle.read(1 << 24):
            pass
    return time.perf_counter() - started


def wait_idle(pid: int, timeout: float = IDLE_TIMEOUT_S) -> float:
    """Wait until a process uses (almost) no CPU: 0.5 s in which it used under 25 ms."""
    proc = psutil.Process(pid)
    started = time.perf_counter()

    def cpu() -> float:
        times = proc.cpu_times()
        return float(times.user + times.system)

    last = cpu()
    while time.perf_counter() - started < timeout:
        time.sleep(0.5)
        now = cpu()
        if now - last < 0.025:
            break
        last = now
    return time.perf_counter() - started


def memory_of(pid: int) -> dict[str, float | None]:
    return {
        "rss_mib": mib(status_bytes(pid, "VmRSS")),
        "peak_rss_mib": mib(status_bytes(pid, "VmHWM")),
        "anon_mib": mib(status_bytes(pid, "RssAnon")),
    }


def node_chat(
    client: httpx.Client, messages: list[dict[str, str]], max_tokens: int
) -> dict[str, Any]:
    """One streaming /v1/chat/completions: TTFT and decode rate as the caller sees them."""
    body = {
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "repeat_penalty": 1.0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    t0 = time.perf_counter()
    first = last = None
    text, usage = "", dict[str, Any]()
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            raise RuntimeError(f"chat request: status {response.status_code}: {response.read()!r}")
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            for choice in event.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content") or ""
                if piece:
                    last = time.perf_counter()
                    first = first or last
                    text += piece
            usage = event.get("usage") or usage
    tokens = int(usage.get("completion_tokens") or 0)
    prompt_tokens = int(usage.get("prompt_tokens") or 0)
    cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
    return {
        "ttft_s": None if first is None else first - t0,
        "decode_tps": (tokens - 1) / (last - first) if first and last and last > first else None,
        "tokens": tokens,
        "prompt_tokens": prompt_tokens,
        "cached_tokens": cached,
        "text": text,
    }


def raw_generate(raw: RawWorker, text: str, max_tokens: int, n_batch: int) -> dict[str, Any]:
    """One generation in the raw worker from a rendered chat prompt (special tokens parsed)."""
    reply = raw.call(
        cmd="generate",
        prompt=text,
        max_tokens=max_tokens,
        n_batch=n_batch,
        special=True,
        **SAMPLING,
    )
    first, last = reply["first_token"], reply["last_token"]
    tokens = int(reply["tokens"])
    return {
        "ttft_s": None if first is None else first - reply["t0"],
        "decode_tps": (tokens - 1) / (last - first) if first and last and last > first else None,
        "tokens": tokens,
        "text": reply["text"],
    }


def prompt_rate(sample: dict[str, Any], tokens: int) -> float | None:
    """Evaluated prompt tokens / TTFT (the first token's own decode included)."""
    evaluated = tokens - int(sample.get("cached_tokens") or 0)
    return evaluated / sample["ttft_s"] if sample.get("ttft_s") else None


# --- phases -------------------------------------------------------------------------------
