"""Without a usable model the service stays up, says so, and refuses generations with 503."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from node_harness import START_TIMEOUT, LiveServer, make_settings, metric

from tests.support import free_port, wait_until

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def down(missing_model_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=missing_model_server.url, timeout=30) as c:
        yield c


def test_health_is_200_without_model(down: httpx.Client) -> None:
    assert down.get("/health").status_code == 200


def test_ready_is_503_and_says_why(down: httpx.Client) -> None:
    response = down.get("/ready")
    assert (response.status_code, "absent.gguf" in response.json()["reason"]) == (503, True)


def test_model_loaded_gauge_is_0(down: httpx.Client) -> None:
    assert metric(down, "llm_model_loaded") == 0.0


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}]}),
        ("/v1/completions", {"prompt": "Hi"}),
        ("/generate", {"prompt": "Hi"}),
    ],
)
def test_generation_is_503_not_ready(down: httpx.Client, endpoint: str, body: object) -> None:
    response = down.post(endpoint, json=body)
    assert (
        response.status_code,
        response.json()["error"]["code"],
        "retry-after" in response.headers,
    ) == (
        503,
        "model_not_ready",
        True,
    )


def test_not_ready_rejections_are_counted(down: httpx.Client) -> None:
    before = metric(down, "llm_rejections_total", reason="not_ready")
    down.post("/generate", json={"prompt": "Hi"})
    assert metric(down, "llm_rejections_total", reason="not_ready") == before + 1


def test_corrupt_model_file_is_not_ready(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"GGUF" + b"\0" * 64)
    with LiveServer(make_settings(model_path=bogus)) as live:
        live.app.state.engine.wait_loaded(START_TIMEOUT)
        with httpx.Client(base_url=live.url) as c:
            assert (c.get("/ready").status_code, c.get("/health").status_code) == (503, 200)


def test_python_m_llm_node_stays_up_without_model(tmp_path: Path) -> None:
    """The real entry point (`make serve`, the container) does not crash-loop on a bad path."""
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO / "llm-node"),
        "LLM_MODEL_PATH": str(tmp_path / "missing.gguf"),
        "LLM_HOST": "127.0.0.1",
        "LLM_PORT": str(port),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "llm_node"], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        url = f"http://127.0.0.1:{port}"

        def answering() -> bool:
            assert proc.poll() is None, "llm-node exited"
            try:
                return httpx.get(f"{url}/ready").status_code == 503
            except httpx.TransportError:
                return False

        wait_until(answering, timeout=START_TIMEOUT, what="llm-node to answer")
        time.sleep(0.5)  # give a crash the chance to happen
        assert (proc.poll(), httpx.get(f"{url}/health").status_code) == (None, 200)
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=30)
    assert '"level": "error"' in stderr and "missing.gguf" in stderr


def test_invalid_setting_exits_with_clear_message() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "llm-node"), "LLM_PORT": "not-a-port"}
    done = subprocess.run(
        [sys.executable, "-m", "llm_node"], env=env, capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, "LLM_PORT" in done.stderr, "Traceback" in done.stderr) == (
        2,
        True,
        False,
    )
