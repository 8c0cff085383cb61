"""Request deadline (504) and the per-request JSON log line, on a second real-model server."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from llm_node.logs import JsonFormatter
from node_harness import LiveServer, make_settings, metric

from tests.support import COUNTING, wait_until

# checkov:skip=CKV_SECRET_6 a made-up prompt; the test checks it never reaches the log
SECRET_PROMPT = "my-confidential-prompt-text"


@pytest.fixture(scope="module")
def strict_server(tiny_model: Path) -> Iterator[LiveServer]:
    """A 1 s deadline, and prompt logging switched on."""
    settings = make_settings(
        model_path=tiny_model, request_timeout_seconds=1.0, max_tokens_limit=1000, log_prompts=True
    )
    with LiveServer(settings) as live:
        live.wait_ready()
        yield live


def test_generation_past_the_deadline_is_504(strict_server: LiveServer) -> None:
    with httpx.Client(base_url=strict_server.url, timeout=60) as c:
        before = metric(c, "llm_rejections_total", reason="deadline")
        response = c.post("/v1/completions", json={**COUNTING, "max_tokens": 1000})
        assert (response.status_code, response.json()["error"]["code"]) == (504, "timeout")
        assert metric(c, "llm_rejections_total", reason="deadline") == before + 1


def access_records(caplog: pytest.LogCaptureFixture, request_id: str) -> list[logging.LogRecord]:
    # Other servers of the session may log at the same time: pick this request's line.
    return [
        r
        for r in caplog.records
        if r.name == "llm_node.access" and getattr(r, "request_id", None) == request_id
    ]


def test_one_json_log_line_per_request(
    client: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="llm_node"):
        client.post(
            "/generate",
            json={"prompt": SECRET_PROMPT, "max_tokens": 2},
            headers={"X-Request-ID": "log-line-test"},
        )
        # The line is written once the response has been sent, so it may follow it closely.
        wait_until(lambda: access_records(caplog, "log-line-test"), what="the access log line")
    (record,) = access_records(caplog, "log-line-test")
    line = json.loads(JsonFormatter().format(record))
    assert {"request_id", "status", "duration_ms", "prompt_tokens", "completion_tokens"} <= set(
        line
    )


def test_prompts_are_not_logged_by_default(
    client: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        client.post("/generate", json={"prompt": SECRET_PROMPT, "max_tokens": 2})
    logged = "\n".join(JsonFormatter().format(r) for r in caplog.records)
    assert SECRET_PROMPT not in logged


def test_prompts_are_logged_when_enabled(
    strict_server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        httpx.Client(base_url=strict_server.url, timeout=60) as c,
        caplog.at_level(logging.INFO, logger="llm_node"),
    ):
        c.post(
            "/generate",
            json={"prompt": SECRET_PROMPT, "max_tokens": 2},
            headers={"X-Request-ID": "log-prompts-test"},
        )
        # The line is written once the response has been sent, so it may follow it closely.
        wait_until(lambda: access_records(caplog, "log-prompts-test"), what="the access log line")
    (record,) = access_records(caplog, "log-prompts-test")
    assert SECRET_PROMPT in JsonFormatter().format(record)
