"""The README's error table tells the truth: each (status, code) row is what the server answers."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from node_harness import LiveServer, make_settings, queue_filled

from tests.support import COUNTING

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
CHAT = "/v1/chat/completions"
HELLO = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
# Rows no request can produce on a healthy test server: a bug, a chat template that raises
# (tests/llm_node/test_llm_node_chat_template.py), a shutdown in progress; a request whose wait
# in the queue left it too little time needs two requests timed against each other
# (tests/llm_node/test_llm_node_admission.py provokes it).
NOT_PROVOKED = {
    (500, "internal_error"),
    (422, "invalid_messages"),
    (503, "shutting_down"),
    (503, "deadline_unreachable"),
}


def readme_error_rows() -> set[tuple[int, str]]:
    table = README.split("**Errors** always have OpenAI's shape", 1)[1].split("\n\n", 2)[1]
    rows = re.findall(r"^\| (\d{3}) \| .+ \| `([a-z_]+)` \|$", table, re.M)
    return {(int(status), code) for status, code in rows}


@pytest.fixture(scope="module")
def short_deadline(tiny_model: Path) -> Iterator[LiveServer]:
    settings = make_settings(model_path=tiny_model, request_timeout_seconds=1.0)
    with LiveServer(settings) as live:
        live.wait_ready()
        yield live


@pytest.fixture(scope="module")
def measured_deadline(tiny_model: Path) -> Iterator[LiveServer]:
    """A 5 s deadline on a server that has measured its speed on one request."""
    settings = make_settings(
        model_path=tiny_model, request_timeout_seconds=5.0, max_tokens_limit=1000
    )
    with LiveServer(settings) as live:
        live.wait_ready()
        with httpx.Client(base_url=live.url, timeout=60) as c:
            assert c.post("/v1/completions", json={**COUNTING, "max_tokens": 4}).status_code == 200
        yield live


Call = Callable[[pytest.FixtureRequest], httpx.Response]


def on(fixture: str, method: str, path: str, **kwargs: object) -> Call:
    def call(request: pytest.FixtureRequest) -> httpx.Response:
        live: LiveServer = request.getfixturevalue(fixture)
        with httpx.Client(base_url=live.url, timeout=120) as c:
            return c.request(method, path, **kwargs)

    return call


def during_full_queue(request: pytest.FixtureRequest) -> httpx.Response:
    live: LiveServer = request.getfixturevalue("server")
    with queue_filled(live, 2), httpx.Client(base_url=live.url, timeout=60) as c:
        return c.post(CHAT, json=HELLO)


JSON = {"content-type": "application/json"}
PROVOKE: dict[tuple[int, str], Call] = {
    (400, "invalid_json"): on("server", "POST", CHAT, content=b"{nope", headers=JSON),
    (400, "context_length_exceeded"): on(
        "server", "POST", "/v1/completions", json={"prompt": "hi " * 1100, "max_tokens": 2}
    ),
    (400, "deadline_unreachable"): on(
        "measured_deadline", "POST", "/v1/completions", json={**COUNTING, "max_tokens": 1000}
    ),
    (401, "invalid_api_key"): on("keyed_server", "GET", "/v1/models"),
    (404, "not_found"): on("server", "GET", "/v1/nothing"),
    (404, "model_not_found"): on("server", "GET", "/v1/models/gpt-4o"),
    (405, "method_not_allowed"): on("server", "GET", CHAT),
    (413, "request_too_large"): on("server", "POST", CHAT, content=b"x" * 100_000, headers=JSON),
    (415, "unsupported_media_type"): on(
        "server", "POST", CHAT, content=b"{}", headers={"content-type": "text/plain"}
    ),
    (422, "invalid_value"): on("server", "POST", CHAT, json={**HELLO, "temperature": 9}),
    (503, "model_not_ready"): on("missing_model_server", "POST", CHAT, json=HELLO),
    (503, "queue_full"): during_full_queue,
    (504, "timeout"): on(
        "short_deadline", "POST", "/v1/completions", json={**COUNTING, "max_tokens": 500}
    ),
}


def test_every_readme_row_is_provoked_or_explained() -> None:
    assert readme_error_rows() == set(PROVOKE) | NOT_PROVOKED


@pytest.mark.parametrize(("status", "code"), sorted(PROVOKE))
def test_the_server_answers_as_the_readme_says(
    request: pytest.FixtureRequest, status: int, code: str
) -> None:
    response = PROVOKE[(status, code)](request)
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)
