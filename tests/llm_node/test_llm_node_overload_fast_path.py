"""A full queue is refused before the body is read; generation yields the CPU to the API."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator

import httpx
import pytest
from node_harness import LiveServer, metric, queue_filled

from tests.support import COUNTING, wait_until

LONG = 400  # tokens: seconds of generation, far longer than these tests need


def post_head(path: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


@pytest.fixture
def full_queue(server: LiveServer) -> Iterator[None]:
    """One generation running and both queue slots (queue_size=2) taken; all cancelled after."""
    with queue_filled(server, 2, {**COUNTING, "max_tokens": LONG}):
        yield


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    while len(body) < int(headers.get("content-length", "0")):
        body += sock.recv(65536)
    return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize("path", ["/v1/completions", "/v1/chat/completions", "/generate"])
@pytest.mark.usefixtures("full_queue")
def test_full_queue_is_refused_without_waiting_for_the_body(server: LiveServer, path: str) -> None:
    # Only the head is sent: a server that read the body first would wait for it (and the
    # recv below would time out), one that checks the queue first answers at once.
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        sock.sendall(post_head(path, 100))
        status, headers, body = read_response(sock)
    assert (
        status,
        headers.get("retry-after", "").isdigit(),
        json.loads(body)["error"]["code"],
    ) == (
        503,
        True,
        "queue_full",
    )


@pytest.mark.usefixtures("full_queue")
def test_fast_refusal_is_counted(client: httpx.Client) -> None:
    def counts() -> tuple[float, float]:
        return (
            metric(client, "llm_rejections_total", reason="queue_full"),
            metric(client, "llm_requests_total", endpoint="/generate", status="503"),
        )

    before = counts()
    assert client.post("/generate", json={"prompt": "Hi"}).status_code == 503
    wait_until(lambda: counts()[1] > before[1], what="the request to be counted")
    assert [b - a for a, b in zip(before, counts(), strict=True)] == [1, 1]


def nice_of(thread_id: int | None) -> int:
    assert thread_id is not None  # the thread has started
    return os.getpriority(os.PRIO_PROCESS, thread_id)


LINUX_ONLY = pytest.mark.skipif(
    not hasattr(os, "setpriority"), reason="per-thread nice values are Linux-only"
)


@LINUX_ONLY
def test_worker_thread_runs_at_lower_priority(server: LiveServer) -> None:
    # The worker starts from the event loop thread's nice value and adds LLM_WORKER_NICE (10).
    api = nice_of(server.thread.native_id)
    assert nice_of(server.app.state.engine.thread_id) == min(api + 10, 19)


@LINUX_ONLY
def test_event_loop_keeps_its_priority(server: LiveServer) -> None:
    assert nice_of(server.thread.native_id) == nice_of(threading.get_native_id())
