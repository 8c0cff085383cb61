"""Test harness for llm-node: a real uvicorn server on a free loopback port, metric scraping."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn
from llm_node.config import Settings
from llm_node.main import create_app

from tests.support import COUNTING, Samples, parse_metrics, sample, wait_until

START_TIMEOUT = 120.0  # loading is a few seconds; generous for a busy shared CI machine

# Every setting a test depends on, given explicitly so that LLM_* variables exported in the
# developer's shell (LLM_API_KEYS, LLM_LOG_PROMPTS, ...) cannot change what the tests see.
BASELINE: dict[str, Any] = {
    "model_name": "",
    "n_threads": 1,  # one thread has no barriers: robust when other jobs share the CPU
    "n_ctx": 1024,
    "n_batch": 8,
    "prompt_cache": True,
    "prompt_cache_refill": True,
    "prompt_cache_mib": 512,
    "queue_size": 8,
    "worker_nice": 10,
    "request_timeout_seconds": 120.0,
    "max_tokens_limit": 512,
    "default_max_tokens": 12,
    "max_body_bytes": 64 * 1024,
    "api_keys": "",
    "log_prompts": False,
    "log_level": "info",
}


def make_settings(**overrides: Any) -> Settings:
    return Settings(**{**BASELINE, **overrides})


class LiveServer:
    """create_app(settings) served by uvicorn on a thread, on a free 127.0.0.1 port."""

    def __init__(self, settings: Settings) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = create_app(settings)
        config = uvicorn.Config(self.app, log_config=None, access_log=False, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        with httpx.Client(base_url=self.url) as client:
            while client.get("/ready").status_code != 200:
                if time.monotonic() > deadline:
                    raise RuntimeError(client.get("/ready").text)
                time.sleep(0.1)

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(60)
        self.sock.close()


def scrape(client: httpx.Client) -> Samples:
    """Every sample of the server's /metrics, keyed by (name, sorted labels)."""
    return parse_metrics(client.get("/metrics").text)


def metric(client: httpx.Client, name: str, **labels: str) -> float:
    return sample(scrape(client), name, **labels)


def raw_post(path: str, body: dict[str, Any]) -> bytes:
    """A whole HTTP/1.1 POST with a JSON body, for a raw socket."""
    raw = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(raw)}\r\n\r\n"
    )
    return head.encode() + raw


@contextmanager
def queue_filled(
    live: LiveServer, queue_size: int, body: dict[str, Any] | None = None
) -> Iterator[None]:
    """One generation running and `queue_size` waiting, held by raw sockets for the block.

    The sockets are closed after it: the running job stops at its next token and the queued
    ones are skipped, so the next test finds an idle worker.
    """
    job = body or {**COUNTING, "max_tokens": 400}
    holders = [socket.create_connection(("127.0.0.1", live.port)) for _ in range(queue_size + 1)]
    with httpx.Client(base_url=live.url, timeout=60) as client:
        try:
            for sock in holders:
                sock.sendall(raw_post("/v1/completions", job))
            wait_until(
                lambda: (
                    (metric(client, "llm_inflight_requests"), metric(client, "llm_queue_depth"))
                    == (1.0, float(queue_size))
                ),
                what="a full queue",
            )
            yield
        finally:
            for sock in holders:
                sock.close()
            wait_until(
                lambda: (
                    (metric(client, "llm_inflight_requests"), metric(client, "llm_queue_depth"))
                    == (0.0, 0.0)
                ),
                what="the worker to be idle again",
            )
