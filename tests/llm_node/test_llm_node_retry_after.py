"""Retry-After of a full queue is the expected wait, so a client that honours it gets in."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from llm_node.api.retry_after import expected_wait
from node_harness import LiveServer, make_settings, metric, queue_filled, raw_post

from tests.support import COUNTING, wait_until

JOB = {**COUNTING, "max_tokens": 48}  # every job the same length: the mean predicts the wait


@pytest.mark.parametrize(
    ("ahead", "mean", "seconds"),
    [(0, None, 1), (3, None, 3), (3, 0.1, 1), (3, 0.5, 2), (5, 2.0, 10), (40, 5.0, 60)],
)
def test_expected_wait_formula(ahead: int, mean: float | None, seconds: int) -> None:
    assert expected_wait(ahead, mean, max_seconds=60) == seconds


# At 8B size (a job of ~100 s) the wait is minutes: told as it is, up to the deadline, by
# which every job now in the queue has finished or been stopped.
@pytest.mark.parametrize(
    ("ahead", "mean", "deadline", "seconds"),
    [(4, 100.0, 600, 400), (5, 100.0, 600, 500), (8, 100.0, 600, 600), (3, 0.2, 600, 1)],
)
def test_expected_wait_is_bounded_by_the_deadline(
    ahead: int, mean: float, deadline: float, seconds: int
) -> None:
    assert expected_wait(ahead, mean, max_seconds=deadline) == seconds


@pytest.fixture(scope="module")
def servers(tiny_model: Path) -> Iterator[dict[int, LiveServer]]:
    """Two servers that differ only in LLM_QUEUE_SIZE, each warmed up with two jobs."""
    with (
        LiveServer(make_settings(model_path=tiny_model, queue_size=1)) as small,
        LiveServer(make_settings(model_path=tiny_model, queue_size=4)) as large,
    ):
        for live in (small, large):
            live.wait_ready()
            with httpx.Client(base_url=live.url, timeout=120) as c:
                for _ in range(2):
                    assert c.post("/v1/completions", json=JOB).status_code == 200
        yield {1: small, 4: large}


def refused_retry_after(live: LiveServer, queue_size: int) -> int:
    with httpx.Client(base_url=live.url, timeout=120) as c, queue_filled(live, queue_size, JOB):
        response = c.post("/v1/completions", json=JOB)
        assert response.status_code == 503
        return int(response.headers["retry-after"])


def test_retry_after_grows_with_the_queue(servers: dict[int, LiveServer]) -> None:
    assert refused_retry_after(servers[4], 4) > refused_retry_after(servers[1], 1)


def test_client_that_sleeps_retry_after_gets_an_answer(servers: dict[int, LiveServer]) -> None:
    live = servers[1]
    holders = [socket.create_connection(("127.0.0.1", live.port)) for _ in range(2)]
    with httpx.Client(base_url=live.url, timeout=120) as c:
        try:
            for sock in holders:
                sock.sendall(raw_post("/v1/completions", JOB))
            wait_until(lambda: metric(c, "llm_queue_depth") == 1.0, what="a full queue")
            refused = c.post("/v1/completions", json=JOB)
            assert refused.status_code == 503
            time.sleep(int(refused.headers["retry-after"]))  # what the client was told
            assert c.post("/v1/completions", json=JOB).status_code == 200
        finally:
            for sock in holders:
                sock.close()
