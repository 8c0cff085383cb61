"""Fixtures for llm-node: real uvicorn servers on loopback ports, running the real tiny model."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from llm_node.config import Settings
from llm_node.main import create_app
from prometheus_client.parser import text_string_to_metric_families

START_TIMEOUT = 120.0  # loading is a few seconds; generous for a busy shared CI machine


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


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    value = os.environ.get("LLM_TEST_MODEL")
    if not value:
        pytest.skip("LLM_TEST_MODEL is not set (make test sets it to the tiny model)")
    path = Path(value)
    if not path.is_file():
        pytest.skip(f"LLM_TEST_MODEL={value} does not exist (run `make model`)")
    return path


@pytest.fixture(scope="session")
def server(tiny_model: Path) -> Iterator[LiveServer]:
    """One server with the real tiny model for the whole session (loading costs seconds)."""
    settings = Settings(
        model_path=tiny_model,
        model_name="tiny",
        n_threads=1,  # no thread barriers: robust when other jobs share the CPU
        n_ctx=1024,
        queue_size=2,
        default_max_tokens=12,
        max_tokens_limit=512,
        max_body_bytes=64 * 1024,
        request_timeout_seconds=120,
    )
    with LiveServer(settings) as live:
        live.wait_ready()
        yield live


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=120) as c:
        yield c


@pytest.fixture(scope="session")
def missing_model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server whose model file does not exist (nothing to load: starts in milliseconds)."""
    missing = tmp_path_factory.mktemp("models") / "absent.gguf"
    with LiveServer(Settings(model_path=missing)) as live:
        live.app.state.engine.wait_loaded(START_TIMEOUT)
        yield live


@pytest.fixture(scope="session")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """API keys configured; no model (authentication is checked before anything else)."""
    missing = tmp_path_factory.mktemp("keyed") / "absent.gguf"
    with LiveServer(Settings(model_path=missing, api_keys="key-one, key-two")) as live:
        live.app.state.engine.wait_loaded(START_TIMEOUT)
        yield live
