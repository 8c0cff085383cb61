"""Test harness for llm-node: a real uvicorn server on a free loopback port, metric scraping."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import httpx
import uvicorn
from llm_node.config import Settings
from llm_node.main import create_app
from prometheus_client.parser import text_string_to_metric_families

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


def scrape(client: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, keyed by (name, sorted labels)."""
    text = client.get("/metrics").text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def metric(client: httpx.Client, name: str, **labels: str) -> float:
    return scrape(client).get((name, tuple(sorted(labels.items()))), 0.0)


def wait_for(predicate: Any, timeout: float = 60.0, what: str = "condition") -> None:
    """Poll until predicate() is true (a bound on waiting, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
