"""Fixtures for llm-node: real uvicorn servers on loopback ports, running the real tiny model."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from node_harness import START_TIMEOUT, LiveServer, make_settings


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
    settings = make_settings(model_path=tiny_model, model_name="tiny", queue_size=2)
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
    with LiveServer(make_settings(model_path=missing)) as live:
        live.app.state.engine.wait_loaded(START_TIMEOUT)
        yield live


@pytest.fixture(scope="session")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """API keys configured; no model (authentication is checked before anything else)."""
    missing = tmp_path_factory.mktemp("keyed") / "absent.gguf"
    with LiveServer(make_settings(model_path=missing, api_keys="key-one, key-two")) as live:
        live.app.state.engine.wait_loaded(START_TIMEOUT)
        yield live
