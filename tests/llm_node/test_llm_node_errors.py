"""Bad input gets a 4xx in OpenAI's error shape, never a 500 or a traceback."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from node_harness import metric

CHAT = "/v1/chat/completions"
HELLO = [{"role": "user", "content": "Hi"}]


@pytest.mark.parametrize(
    ("endpoint", "body", "status", "param"),
    [
        (CHAT, {"messages": []}, 422, "messages"),
        (CHAT, {}, 422, "messages"),
        (CHAT, {"messages": "hi"}, 422, "messages"),
        (CHAT, {"messages": [{"role": "wizard", "content": "hi"}]}, 422, "messages.0.role"),
        (CHAT, {"messages": [{"role": "user"}]}, 422, "messages.0.content"),
        (CHAT, {"messages": [{"role": "user", "content": 5}]}, 422, "messages.0.content"),
        (
            CHAT,
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
            422,
            "messages.0.content",  # not a string, nor a list of text parts
        ),
        (CHAT, {"messages": HELLO, "max_tokens": -1}, 422, "max_tokens"),
        (CHAT, {"messages": HELLO, "max_tokens": 0}, 422, "max_tokens"),
        (CHAT, {"messages": HELLO, "max_tokens": 10**9}, 422, "max_tokens"),
        (CHAT, {"messages": HELLO, "max_tokens": "10"}, 422, "max_tokens"),
        (CHAT, {"messages": HELLO, "temperature": "hot"}, 422, "temperature"),
        (CHAT, {"messages": HELLO, "temperature": 3}, 422, "temperature"),
        (CHAT, {"messages": HELLO, "stream": "yes"}, 422, "stream"),
        (CHAT, {"messages": HELLO, "stop": ["a", "b", "c", "d", "e"]}, 422, "stop"),
        (CHAT, {"messages": HELLO, "n": 2}, 422, "n"),
        (CHAT, {"messages": HELLO, "logprobs": True}, 422, "logprobs"),
        (CHAT, {"messages": HELLO, "tools": [{"type": "function"}]}, 422, "tools"),
        (CHAT, {"messages": HELLO, "logit_bias": {"1": 5}}, 422, "logit_bias"),
        (
            CHAT,
            {"messages": HELLO, "response_format": {"type": "json_object"}},
            422,
            "response_format",
        ),
        ("/v1/completions", {"prompt": 42}, 422, "prompt"),
        ("/v1/completions", {"prompt": ["a", "b"]}, 422, "prompt"),
        ("/v1/completions", {"prompt": "a", "echo": True}, 422, "echo"),
        ("/generate", {"prompt": ""}, 422, "prompt"),
        ("/generate", {"max_tokens": 5}, 422, "prompt"),
        ("/generate", [1, 2], 422, None),
    ],
)
def test_invalid_fields_are_422(
    client: httpx.Client, endpoint: str, body: Any, status: int, param: str | None
) -> None:
    response = client.post(endpoint, json=body)
    error = response.json()["error"]
    assert (response.status_code, error["type"], error["param"]) == (
        status,
        "invalid_request_error",
        param,
    )


@pytest.mark.parametrize("raw", [b"{not json", b"", b'{"messages": [', b"\xff\xfe"])
def test_invalid_json_is_400(client: httpx.Client, raw: bytes) -> None:
    response = client.post(CHAT, content=raw, headers={"content-type": "application/json"})
    assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_json")


def test_error_shape_has_message_type_and_code(client: httpx.Client) -> None:
    error = client.post(CHAT, json={"messages": []}).json()["error"]
    assert sorted(error) == ["code", "message", "param", "type"] and error["message"]


def test_content_as_text_parts_is_accepted(client: httpx.Client) -> None:
    response = client.post(
        CHAT,
        json={
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
            "max_tokens": 1,
        },
    )
    assert response.status_code == 200


def test_oversized_body_is_413(client: httpx.Client) -> None:
    before = metric(client, "llm_rejections_total", reason="too_large")
    big = {"messages": [{"role": "user", "content": "x" * 100_000}]}
    response = client.post(CHAT, json=big)
    assert (response.status_code, response.json()["error"]["code"]) == (413, "request_too_large")
    assert metric(client, "llm_rejections_total", reason="too_large") == before + 1


def test_oversized_chunked_body_is_413(client: httpx.Client) -> None:
    def chunks() -> Any:
        for _ in range(100):
            yield b"x" * 1024

    response = client.post(CHAT, content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_invalid_requests_are_counted(client: httpx.Client) -> None:
    before = metric(client, "llm_rejections_total", reason="invalid")
    client.post(CHAT, json={"messages": []})
    assert metric(client, "llm_rejections_total", reason="invalid") == before + 1


def test_unknown_path_is_404_in_openai_shape(client: httpx.Client) -> None:
    response = client.get("/v1/nothing")
    assert (response.status_code, response.json()["error"]["code"]) == (404, "not_found")


def test_wrong_method_is_405(client: httpx.Client) -> None:
    assert client.get(CHAT).status_code == 405


def test_unknown_fields_are_ignored(client: httpx.Client) -> None:
    body = {"messages": HELLO, "max_tokens": 1, "presence_penalty": 0.5, "some_vendor_field": 1}
    assert client.post(CHAT, json=body).status_code == 200
