"""The request bodies are typed models: /openapi.json describes them, null means the default."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from node_harness import LiveServer

CHAT = "/v1/chat/completions"
HELLO = [{"role": "user", "content": "Hi"}]
BODIES = {
    "/generate": "GenerateRequest",
    CHAT: "ChatCompletionRequest",
    "/v1/completions": "CompletionRequest",
}


@pytest.fixture(scope="module")
def openapi(server: LiveServer) -> dict[str, Any]:
    with httpx.Client(base_url=server.url) as c:
        document: dict[str, Any] = c.get("/openapi.json").json()
    return document


def body_schema(openapi: dict[str, Any], path: str) -> dict[str, Any]:
    ref = openapi["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    schema: dict[str, Any] = openapi["components"]["schemas"][ref["$ref"].rsplit("/", 1)[1]]
    return schema


def first_branch(prop: dict[str, Any]) -> dict[str, Any]:
    """The non-null member of a nullable property (`anyOf: [T, null]`)."""
    branches = [b for b in prop.get("anyOf", [prop]) if b.get("type") != "null"]
    return branches[0]


@pytest.mark.parametrize(("path", "model"), sorted(BODIES.items()))
def test_openapi_declares_the_body(openapi: dict[str, Any], path: str, model: str) -> None:
    ref = openapi["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert ref == {"$ref": f"#/components/schemas/{model}"}


@pytest.mark.parametrize("path", sorted(BODIES))
def test_openapi_declares_temperature_range_and_default(openapi: dict[str, Any], path: str) -> None:
    prop = body_schema(openapi, path)["properties"]["temperature"]
    branch = first_branch(prop)
    assert (branch["type"], branch["minimum"], branch["maximum"], prop["default"]) == (
        "number",
        0.0,
        2.0,
        0.8,
    )


def test_openapi_declares_the_role_enum(openapi: dict[str, Any]) -> None:
    message = openapi["components"]["schemas"]["ChatMessage"]["properties"]["role"]
    assert sorted(message["enum"]) == ["assistant", "developer", "system", "user"]


def test_openapi_declares_the_required_fields(openapi: dict[str, Any]) -> None:
    required = {path: body_schema(openapi, path).get("required") for path in BODIES}
    assert required == {"/generate": ["prompt"], CHAT: ["messages"], "/v1/completions": ["prompt"]}


def test_openapi_says_temperature_is_nullable(openapi: dict[str, Any]) -> None:
    prop = body_schema(openapi, CHAT)["properties"]["temperature"]
    assert {"type": "null"} in prop["anyOf"]


def test_docs_page_is_served(client: httpx.Client) -> None:
    response = client.get("/docs")
    assert (response.status_code, "swagger" in response.text.lower()) == (200, True)


NULLABLE = [
    "temperature",
    "top_p",
    "top_k",
    "repeat_penalty",
    "repeat_last_n",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "user",
]
OPENAI_NULLABLE = [
    *NULLABLE,
    "model",
    "n",
    "stream",
    "stream_options",
    "logprobs",
    "top_logprobs",
    "logit_bias",
]
CHAT_NULLABLE = [
    *OPENAI_NULLABLE,
    "max_completion_tokens",
    "tools",
    "tool_choice",
    "functions",
    "function_call",
    "response_format",
]
COMPLETION_NULLABLE = [*OPENAI_NULLABLE, "echo", "suffix", "best_of"]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [(CHAT, {"messages": HELLO}, f) for f in CHAT_NULLABLE]
    + [("/v1/completions", {"prompt": "Hi"}, f) for f in COMPLETION_NULLABLE]
    + [("/generate", {"prompt": "Hi"}, f) for f in [*NULLABLE, "system"]],
)
def test_explicit_null_means_the_default(
    client: httpx.Client, path: str, body: dict[str, Any], field: str
) -> None:
    response = client.post(path, json={**body, "max_tokens": 1, field: None})
    assert response.status_code == 200, response.text


def test_null_max_tokens_means_the_server_default(client: httpx.Client) -> None:
    # The default is LLM_DEFAULT_MAX_TOKENS (12 in these tests); counting never stops sooner.
    body = {"prompt": "1, 2, 3, 4, 5,", "temperature": 0, "repeat_penalty": 1.0}
    response = client.post("/v1/completions", json={**body, "max_tokens": None})
    assert response.json()["usage"]["completion_tokens"] == 12


def test_null_include_usage_means_no_usage_chunk(client: httpx.Client) -> None:
    body = {"messages": HELLO, "max_tokens": 1, "stream": True}
    with client.stream("POST", CHAT, json={**body, "stream_options": {"include_usage": None}}) as r:
        text = r.read().decode()
    assert '"usage"' not in text


@pytest.fixture
def sdk(server: LiveServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0) as c:
        yield c


def test_sdk_passing_none_gets_an_answer(sdk: openai.OpenAI) -> None:
    completion = sdk.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "Hi"}],
        max_tokens=2,
        temperature=None,
        top_p=None,
        n=None,
        stop=None,
        stream=None,
        stream_options=None,
        presence_penalty=None,
        seed=None,
    )
    assert completion.usage is not None and completion.usage.completion_tokens >= 1


def test_sdk_completion_passing_none_gets_an_answer(sdk: openai.OpenAI) -> None:
    completion = sdk.completions.create(
        model="tiny", prompt="Hi", max_tokens=2, temperature=None, echo=None, best_of=None
    )
    assert completion.choices[0].finish_reason in ("stop", "length")


def test_null_for_a_required_field_is_422(client: httpx.Client) -> None:
    response = client.post(CHAT, json={"messages": None})
    assert (response.status_code, response.json()["error"]["param"]) == (422, "messages")


def test_unknown_fields_are_ignored_not_refused(client: httpx.Client) -> None:
    body = {"prompt": "Hi", "max_tokens": 1, "frobnicate": True}
    assert client.post("/v1/completions", json=body).status_code == 200


def test_json_sent_as_text_plain_is_415(client: httpx.Client) -> None:
    # A browser's "simple" cross-site POST (no preflight) can only send text/plain and forms:
    # such bodies are never parsed as JSON.
    response = client.post(
        "/generate", content=b'{"prompt": "Hi"}', headers={"content-type": "text/plain"}
    )
    assert (response.status_code, response.json()["error"]["code"]) == (
        415,
        "unsupported_media_type",
    )


def test_usage_reports_cached_prompt_tokens(sdk: openai.OpenAI) -> None:
    # OpenAI's prompt_tokens_details.cached_tokens: the prompt tokens reused from a cache.
    completion = sdk.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=1
    )
    details = completion.usage.prompt_tokens_details if completion.usage else None
    assert details is not None and isinstance(details.cached_tokens, int)
