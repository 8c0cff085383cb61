"""Fixtures for llm-node: real uvicorn servers on loopback ports, running the real tiny model
and the Llama 3 stand-in (the real Llama 3 tokenizer and chat template on random weights)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
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
def llama3_model() -> Path:
    value = os.environ.get("LLM_TEST_LLAMA3_MODEL")
    if not value:
        pytest.skip("LLM_TEST_LLAMA3_MODEL is not set (make test sets it to the Llama 3 stand-in)")
    path = Path(value)
    if not path.is_file():
        pytest.skip(f"LLM_TEST_LLAMA3_MODEL={value} does not exist (run `make llama3-model`)")
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
def llama3_server(llama3_model: Path) -> Iterator[LiveServer]:
    """The Llama 3 stand-in, served like the tiny model."""
    settings = make_settings(model_path=llama3_model, model_name="llama3", queue_size=2)
    with LiveServer(settings) as live:
        live.wait_ready()
        yield live


@dataclass(frozen=True)
class Served:
    """One of the test models behind a live server: its name, file and a client."""

    name: str
    model: Path
    client: httpx.Client


@pytest.fixture(params=["tiny", "llama3"])
def served(request: pytest.FixtureRequest) -> Iterator[Served]:
    """Each test that takes it runs on the tiny model and on the Llama 3 stand-in."""
    name = request.param
    model: Path = request.getfixturevalue(f"{name}_model")
    live: LiveServer = request.getfixturevalue("server" if name == "tiny" else "llama3_server")
    with httpx.Client(base_url=live.url, timeout=120) as c:
        yield Served(name, model, c)


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
