"""Overload, cancellation and liveness with the real model on a real uvicorn socket."""

from __future__ import annotations

import concurrent.futures
import json
import socket
import threading

import httpx
from node_harness import LiveServer, metric

from tests.support import COUNTING, wait_until

LONG = 400  # tokens: seconds of generation, far longer than any of these tests needs


def test_sixteen_concurrent_requests_get_200_or_503(server: LiveServer) -> None:
    barrier = threading.Barrier(16)

    def call(_: int) -> httpx.Response:
        with httpx.Client(base_url=server.url, timeout=300) as c:
            barrier.wait()
            return c.post("/v1/completions", json={**COUNTING, "max_tokens": 6})

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(call, range(16)))
    statuses = sorted({r.status_code for r in responses})
    # One runs, two wait (queue_size=2): the rest are refused at once, not queued without bound.
    assert statuses == [200, 503]


def test_overload_answer_has_retry_after_and_openai_error(server: LiveServer) -> None:
    barrier = threading.Barrier(8)

    def call(_: int) -> httpx.Response:
        with httpx.Client(base_url=server.url, timeout=300) as c:
            barrier.wait()
            return c.post("/v1/completions", json={**COUNTING, "max_tokens": 6})

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        refused = [r for r in pool.map(call, range(8)) if r.status_code == 503]
    # Retry-After is the expected wait in whole seconds (test_llm_node_retry_after.py).
    assert (refused[0].headers["retry-after"].isdigit(), refused[0].json()["error"]["code"]) == (
        True,
        "queue_full",
    )


def test_process_serves_after_overload(client: httpx.Client) -> None:
    before = metric(client, "llm_rejections_total", reason="queue_full")
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(
            pool.map(
                lambda _: client.post("/generate", json={"prompt": "Hi", "max_tokens": 4}),
                range(16),
            )
        )
    assert metric(client, "llm_rejections_total", reason="queue_full") > before
    assert client.post("/generate", json={"prompt": "Hi", "max_tokens": 2}).status_code == 200


def test_health_answers_while_generating(server: LiveServer, client: httpx.Client) -> None:
    request = {**COUNTING, "max_tokens": LONG, "stream": True}
    with (
        httpx.Client(base_url=server.url, timeout=120) as streamer,
        streamer.stream("POST", "/v1/completions", json=request) as response,
    ):
        assert next(response.iter_lines()).startswith("data: ")  # generation has started
        health = client.get("/health")
        still_generating = metric(client, "llm_inflight_requests")
    assert (health.status_code, health.json(), still_generating) == (200, {"status": "ok"}, 1.0)


def test_stream_disconnect_cancels_and_worker_moves_on(
    server: LiveServer, client: httpx.Client
) -> None:
    cancelled = metric(client, "llm_cancellations_total")
    generated = metric(client, "llm_generated_tokens_total")
    request = {**COUNTING, "max_tokens": LONG, "stream": True}
    with (
        httpx.Client(base_url=server.url, timeout=120) as streamer,
        streamer.stream("POST", "/v1/completions", json=request) as response,
    ):
        assert next(response.iter_lines()).startswith("data: ")
    # The connection is closed: the generation stops at its next token.
    wait_until(lambda: metric(client, "llm_cancellations_total") == cancelled + 1, what="cancel")
    wait_until(lambda: metric(client, "llm_inflight_requests") == 0, what="worker idle")
    assert metric(client, "llm_generated_tokens_total") - generated < LONG
    assert client.post("/generate", json={"prompt": "Hi", "max_tokens": 2}).status_code == 200


def test_non_streaming_disconnect_cancels(server: LiveServer, client: httpx.Client) -> None:
    cancelled = metric(client, "llm_cancellations_total")
    body = json.dumps({**COUNTING, "max_tokens": LONG}).encode()
    with socket.create_connection(("127.0.0.1", server.port)) as raw:
        raw.sendall(
            b"POST /v1/completions HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        wait_until(lambda: metric(client, "llm_inflight_requests") == 1, what="generation start")
    wait_until(lambda: metric(client, "llm_cancellations_total") == cancelled + 1, what="cancel")
    wait_until(lambda: metric(client, "llm_inflight_requests") == 0, what="worker idle")
    wait_until(
        lambda: metric(client, "llm_requests_total", endpoint="/v1/completions", status="499") >= 1,
        what="the request to be counted as 499 (client closed)",
    )
