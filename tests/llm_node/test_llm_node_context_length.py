"""Context-window errors worded as OpenAI words them, which litellm and LangChain match."""

from __future__ import annotations

import re

import httpx
import openai
import pytest
from llm_node.api.errors import context_length
from node_harness import LiveServer

N_CTX = 1024  # the test servers' LLM_N_CTX
CHAT = "/v1/chat/completions"
LONG_TEXT = "hello " * 1100  # over 1024 tokens
# Fits in the window (about 600 tokens), but not with max_tokens=500 (LLM_MAX_TOKENS_LIMIT=512).
MEDIUM_TEXT = "hello " * 600


def test_wording_with_the_token_counts() -> None:
    error = context_length(N_CTX, 100, 1000, "", "messages")
    assert error.message == (
        "This model's maximum context length is 1024 tokens. However, you requested 1100 tokens "
        "(100 in the messages, 1000 in the completion). Please reduce the length of the "
        "messages or completion."
    )


def test_wording_of_a_prompt_alone_over_the_window() -> None:
    # Just under n_ctx: gpt4all keeps 4 tokens of room, so the message must not look like a
    # request that fits.
    error = context_length(N_CTX, 1022, 0, "", "messages")
    assert error.message == (
        "This model's maximum context length is 1024 tokens. However, your messages resulted "
        "in 1022 tokens, and a prompt may use at most 1020 (the rest is room to answer). "
        "Please reduce the length of the messages or completion."
    )


def test_wording_without_the_prompt_size_keeps_the_backend_reason() -> None:
    error = context_length(N_CTX, 0, 0, "The prompt size exceeds the context window.", "prompt")
    assert error.message == (
        "This model's maximum context length is 1024 tokens. However, your prompt resulted in "
        "more tokens than that (The prompt size exceeds the context window). Please reduce the "
        "length of the prompt or completion."
    )


OPENAI_WORDING = re.compile(
    r"^This model's maximum context length is 1024 tokens\. However, .+\. "
    r"Please reduce the length of the (messages|prompt) or completion\.$"
)


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        (CHAT, {"messages": [{"role": "user", "content": LONG_TEXT}], "max_tokens": 2}, "messages"),
        ("/v1/completions", {"prompt": LONG_TEXT, "max_tokens": 2}, "prompt"),
        ("/generate", {"prompt": LONG_TEXT, "max_tokens": 2}, "prompt"),
    ],
)
def test_prompt_over_the_window_is_400_in_openai_words(
    client: httpx.Client, path: str, body: dict[str, object], param: str
) -> None:
    response = client.post(path, json=body)
    error = response.json()["error"]
    assert (response.status_code, error["code"], error["param"], error["type"]) == (
        400,
        "context_length_exceeded",
        param,
        "invalid_request_error",
    )
    assert OPENAI_WORDING.match(error["message"]), error["message"]


@pytest.fixture(scope="module")
def over_the_window(server: LiveServer) -> httpx.Response:
    """One request whose prompt fits but whose prompt + max_tokens does not (evaluated once)."""
    with httpx.Client(base_url=server.url, timeout=120) as c:
        return c.post(
            CHAT, json={"messages": [{"role": "user", "content": MEDIUM_TEXT}], "max_tokens": 500}
        )


def test_prompt_plus_max_tokens_over_the_window_is_400(over_the_window: httpx.Response) -> None:
    error = over_the_window.json()["error"]
    assert (over_the_window.status_code, error["code"], error["param"]) == (
        400,
        "context_length_exceeded",
        "messages",
    )


def test_prompt_plus_max_tokens_error_gives_the_split(over_the_window: httpx.Response) -> None:
    message = over_the_window.json()["error"]["message"]
    match = re.search(r"you requested (\d+) tokens \((\d+) in the messages, 500 in the", message)
    assert match and int(match[1]) == int(match[2]) + 500, message


def test_streamed_request_over_the_window_is_400_before_streaming(client: httpx.Client) -> None:
    body = {"prompt": MEDIUM_TEXT, "max_tokens": 500, "stream": True}
    response = client.post("/v1/completions", json=body)
    assert (response.status_code, response.json()["error"]["code"]) == (
        400,
        "context_length_exceeded",
    )


def test_max_tokens_left_unset_is_cut_short_not_refused(client: httpx.Client) -> None:
    # Without an explicit max_tokens the server default applies and the answer may end early.
    response = client.post("/v1/completions", json={"prompt": MEDIUM_TEXT})
    assert response.status_code == 200


def test_sdk_raises_bad_request_with_the_code(server: LiveServer) -> None:
    with (
        openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0) as sdk,
        pytest.raises(openai.BadRequestError) as raised,
    ):
        sdk.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": LONG_TEXT}], max_tokens=2
        )
    assert raised.value.code == "context_length_exceeded"
