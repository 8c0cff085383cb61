"""The official `openai` Python SDK works against llm-node unchanged (real socket, real model)."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
from node_harness import LiveServer

HELLO = [{"role": "user", "content": "Say hello."}]


@pytest.fixture
def sdk(server: LiveServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0) as c:
        yield c


def test_sdk_chat_completion(sdk: openai.OpenAI) -> None:
    completion = sdk.chat.completions.create(model="tiny", messages=HELLO, max_tokens=5)
    choice = completion.choices[0]
    assert (
        bool(choice.message.content),
        choice.finish_reason,
        completion.usage.completion_tokens,
    ) == (
        True,
        "length",
        5,
    )


def test_sdk_chat_completion_stream(sdk: openai.OpenAI) -> None:
    stream = sdk.chat.completions.create(
        model="tiny",
        messages=HELLO,
        max_tokens=5,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert (bool(text), finishes[-1], chunks[-1].usage.completion_tokens) == (True, "length", 5)


def test_sdk_completion(sdk: openai.OpenAI) -> None:
    completion = sdk.completions.create(
        model="tiny", prompt="1, 2, 3,", max_tokens=3, temperature=0
    )
    assert (completion.choices[0].finish_reason, completion.usage.completion_tokens) == (
        "length",
        3,
    )


def test_sdk_completion_stream(sdk: openai.OpenAI) -> None:
    stream = sdk.completions.create(model="tiny", prompt="1, 2, 3,", max_tokens=3, stream=True)
    assert "".join(c.choices[0].text for c in stream if c.choices).strip()


def test_sdk_lists_models(sdk: openai.OpenAI) -> None:
    assert [m.id for m in sdk.models.list()] == ["tiny"]


def test_sdk_raises_on_bad_request(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.UnprocessableEntityError):
        sdk.chat.completions.create(model="tiny", messages=[], max_tokens=5)
