"""Generation through the HTTP API with the real tiny model: answers, streams, stops, usage.

The tests that take `served` run on the tiny model and on the Llama 3 stand-in (the real Llama 3
tokenizer, template and special tokens on random weights: its text is gibberish, its token
counts, stops and BOS handling are Llama 3's)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from gguf import GGUFReader
from llm_node.chat_template import load_chat_format
from llm_node.tokenizer import Tokenizer
from node_harness import LiveServer, metric

from tests.support import COUNTING, wait_until

if TYPE_CHECKING:
    from conftest import Served

CHAT = "/v1/chat/completions"
HELLO = [{"role": "user", "content": "Say hello."}]
# A raw completion that greedy decoding continues for a long time (no early end-of-text).


def sse_events(response: httpx.Response) -> list[str]:
    return [line[len("data: ") :] for line in response.iter_lines() if line.startswith("data: ")]


def test_chat_completion_returns_generated_text(served: Served) -> None:
    body = served.client.post(CHAT, json={"messages": HELLO, "max_tokens": 8}).json()
    assert body["choices"][0]["message"]["content"].strip()


def test_chat_completion_has_openai_shape(client: httpx.Client) -> None:
    body = client.post(CHAT, json={"model": "tiny", "messages": HELLO, "max_tokens": 4}).json()
    assert (body["object"], body["model"], body["choices"][0]["message"]["role"]) == (
        "chat.completion",
        "tiny",
        "assistant",
    )


def test_max_tokens_gives_length_finish_and_exact_completion_tokens(served: Served) -> None:
    body = served.client.post("/v1/completions", json={**COUNTING, "max_tokens": 7}).json()
    assert (body["choices"][0]["finish_reason"], body["usage"]["completion_tokens"]) == (
        "length",
        7,
    )


# A chat turn the model ends by itself (greedy), and its end-of-turn token's text. The Llama 3
# stand-in's <|eot_id|> logit is scaled up so that some replies end (scripts/llama3_standin.py).
ENDS_ITS_TURN = {
    "tiny": ("Hi", "<|im_end|>"),
    "llama3": ("Count from one to twenty.", "<|eot_id|>"),
}


def test_end_of_turn_gives_stop_finish(served: Served) -> None:
    content, end_of_turn = ENDS_ITS_TURN[served.name]
    messages = [{"role": "user", "content": content}]
    body = served.client.post(
        CHAT, json={"messages": messages, "max_tokens": 60, "temperature": 0}
    ).json()
    choice, tokens = body["choices"][0], body["usage"]["completion_tokens"]
    assert (choice["finish_reason"], end_of_turn in choice["message"]["content"], tokens > 0) == (
        "stop",
        False,
        True,
    )


def test_end_of_turn_token_as_a_stop_string_changes_nothing(served: Served) -> None:
    # Clients (the openai SDK's Llama 3 examples) often pass the end-of-turn text as a stop.
    content, end_of_turn = ENDS_ITS_TURN[served.name]
    body = {"messages": [{"role": "user", "content": content}], "max_tokens": 60, "temperature": 0}
    plain = served.client.post(CHAT, json=body).json()["choices"][0]
    stopped = served.client.post(CHAT, json={**body, "stop": [end_of_turn]}).json()["choices"][0]
    assert stopped == plain


# A stop string inside the greedy continuation of COUNTING (12 tokens), for each model.
STOP_IN_COUNTING = {"tiny": " 11", "llama3": "Element"}


def test_stop_string_ends_the_answer_and_is_not_returned(served: Served) -> None:
    stop = STOP_IN_COUNTING[served.name]
    full = served.client.post("/v1/completions", json={**COUNTING, "max_tokens": 12}).json()
    text = full["choices"][0]["text"]
    assert stop in text, f"premise: greedy continuation contains {stop!r}, got {text!r}"
    stopped = served.client.post(
        "/v1/completions", json={**COUNTING, "max_tokens": 12, "stop": [stop]}
    ).json()
    assert (stopped["choices"][0]["text"], stopped["choices"][0]["finish_reason"]) == (
        text[: text.index(stop)],
        "stop",
    )


def test_stop_string_is_not_streamed(served: Served) -> None:
    stop = STOP_IN_COUNTING[served.name].strip()
    full = served.client.post("/v1/completions", json={**COUNTING, "max_tokens": 12}).json()
    text = full["choices"][0]["text"]
    request = {**COUNTING, "max_tokens": 12, "stream": True, "stop": stop}
    with served.client.stream("POST", "/v1/completions", json=request) as response:
        events = sse_events(response)
    streamed = "".join(json.loads(e)["choices"][0]["text"] for e in events if e != "[DONE]")
    assert (streamed, stop in streamed) == (text[: text.index(stop)], False)


def test_stream_sends_chunks_then_finish_then_done(served: Served) -> None:
    request = {"messages": HELLO, "max_tokens": 6, "stream": True}
    with served.client.stream("POST", CHAT, json=request) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
    chunks = [json.loads(e) for e in events[:-1]]
    assert (events[-1], chunks[0]["choices"][0]["delta"]["role"]) == ("[DONE]", "assistant")
    assert [c["choices"][0]["finish_reason"] for c in chunks][-2:] == [None, "length"]


def test_stream_text_matches_the_token_count(client: httpx.Client) -> None:
    request = {
        **COUNTING,
        "max_tokens": 9,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with client.stream("POST", "/v1/completions", json=request) as response:
        events = [json.loads(e) for e in sse_events(response) if e != "[DONE]"]
    text_chunks = [e for e in events if e["choices"] and e["choices"][0]["text"]]
    assert (len(text_chunks), events[-1]["usage"]["completion_tokens"]) == (9, 9)


@pytest.fixture(scope="module")
def vocabulary(tiny_model: Path) -> set[str]:
    field = GGUFReader(str(tiny_model), "r").fields["tokenizer.ggml.tokens"]
    return {str(field.contents(i)) for i in range(len(field.data))}


def test_prompt_tokens_are_tokens_not_words(client: httpx.Client, vocabulary: set[str]) -> None:
    # "hello" and " hello" (Ġhello in GPT-2 byte encoding) are single tokens of the vocabulary,
    # so 5 words make 5 tokens; a rare long word is several tokens.
    assert {"hello", "Ġhello"} <= vocabulary and "Ġantidisestablishmentarianism" not in vocabulary
    five = client.post(
        "/v1/completions", json={"prompt": "hello hello hello hello hello", "max_tokens": 1}
    )
    rare = client.post(
        "/v1/completions", json={"prompt": "antidisestablishmentarianism", "max_tokens": 1}
    )
    assert (five.json()["usage"]["prompt_tokens"], rare.json()["usage"]["prompt_tokens"] > 1) == (
        5,
        True,
    )


def test_chat_prompt_tokens_count_the_rendered_template(client: httpx.Client) -> None:
    # Special tokens such as <|im_start|> are parsed as one token each, not spelt out as text:
    # the template's default system prompt plus one user turn is a few dozen tokens, whereas the
    # same text tokenized without special-token parsing is much longer.
    body = client.post(CHAT, json={"messages": HELLO, "max_tokens": 1}).json()
    rendered_chars = len(
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
        "<|im_end|>\n<|im_start|>user\nSay hello.<|im_end|>\n<|im_start|>assistant\n"
    )
    raw = client.post("/v1/completions", json={"prompt": "<|im_start|>user", "max_tokens": 1})
    assert (
        body["usage"]["prompt_tokens"] < rendered_chars / 3,
        raw.json()["usage"]["prompt_tokens"] > 2,
    ) == (True, True)


def test_chat_prompt_tokens_are_the_tokenizers_count(served: Served) -> None:
    # What the engine evaluates: the GGUF template's rendering, tokenized with special tokens
    # parsed (and BOS added when the vocabulary asks for it, as Llama 3's does).
    rendered = load_chat_format(served.model).render(HELLO)
    with Tokenizer(served.model) as tokenizer:
        expected = len(tokenizer.tokenize(rendered.encode(), special=True))
    body = served.client.post(CHAT, json={"messages": HELLO, "max_tokens": 1}).json()
    assert body["usage"]["prompt_tokens"] == expected


def test_llama3_chat_prompt_tokens(llama3_server: LiveServer) -> None:
    # <|begin_of_text|> <|start_header_id|> user <|end_header_id|> \n\n Say Ġhello . <|eot_id|>
    # <|start_header_id|> assistant <|end_header_id|> \n\n: 13 tokens, BOS once.
    with httpx.Client(base_url=llama3_server.url, timeout=120) as client:
        body = client.post(CHAT, json={"messages": HELLO, "max_tokens": 1}).json()
    assert body["usage"]["prompt_tokens"] == 13


def test_usage_totals_add_up(served: Served) -> None:
    usage = served.client.post(CHAT, json={"messages": HELLO, "max_tokens": 3}).json()["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_generate_returns_response_text(client: httpx.Client) -> None:
    body = client.post("/generate", json={"prompt": "Name a colour.", "max_tokens": 6}).json()
    assert isinstance(body["response"], str) and body["response"].strip()


def test_default_max_tokens_applies(client: httpx.Client) -> None:
    body = client.post(
        "/v1/completions", json={"prompt": COUNTING["prompt"], "temperature": 0}
    ).json()
    assert body["usage"]["completion_tokens"] == 12  # the server's default_max_tokens


def test_models_lists_the_served_model(client: httpx.Client) -> None:
    assert [m["id"] for m in client.get("/v1/models").json()["data"]] == ["tiny"]


def test_request_id_is_returned(client: httpx.Client) -> None:
    response = client.get("/v1/models", headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"


def test_token_counters_move_with_usage(served: Served) -> None:
    client = served.client
    before = (
        metric(client, "llm_prompt_tokens_total"),
        metric(client, "llm_generated_tokens_total"),
    )
    usage = client.post(CHAT, json={"messages": HELLO, "max_tokens": 4}).json()["usage"]
    after = (
        metric(client, "llm_prompt_tokens_total"),
        metric(client, "llm_generated_tokens_total"),
    )
    assert (after[0] - before[0], after[1] - before[1]) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
    )


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        ("/v1/chat/completions", {"messages": HELLO, "max_tokens": 2}),
        ("/v1/completions", {"prompt": "Hi", "max_tokens": 2}),
        ("/generate", {"prompt": "Hi", "max_tokens": 2}),
    ],
)
def test_request_metrics_move(client: httpx.Client, endpoint: str, body: dict[str, object]) -> None:
    def counts() -> tuple[float, float, float]:
        return (
            metric(client, "llm_requests_total", endpoint=endpoint, status="200"),
            metric(client, "llm_request_duration_seconds_count", endpoint=endpoint),
            metric(client, "llm_time_to_first_token_seconds_count", endpoint=endpoint),
        )

    before = counts()
    assert client.post(endpoint, json=body).status_code == 200
    # Counted when the response has been sent in full, so just after the client has it.
    wait_until(lambda: counts()[0] > before[0], what="the request to be counted")
    after = counts()
    assert [b - a for a, b in zip(before, after, strict=True)] == [1, 1, 1]


def test_decode_rate_is_observed(client: httpx.Client) -> None:
    before = metric(client, "llm_decode_tokens_per_second_count")
    client.post("/v1/completions", json={**COUNTING, "max_tokens": 5})
    assert metric(client, "llm_decode_tokens_per_second_count") == before + 1


@pytest.mark.parametrize(
    ("name", "labels", "value"),
    [
        ("llm_model_loaded", {}, 1.0),
        ("llm_queue_capacity", {}, 2.0),
        ("llm_queue_depth", {}, 0.0),
        ("llm_inflight_requests", {}, 0.0),
    ],
)
def test_idle_gauges(client: httpx.Client, name: str, labels: dict[str, str], value: float) -> None:
    assert metric(client, name, **labels) == value


def test_model_info_names_the_model(client: httpx.Client, tiny_model: Path) -> None:
    labels = {"model": "tiny", "path": str(tiny_model), "n_ctx": "1024", "n_threads": "1"}
    assert metric(client, "llm_model_info", **labels) == 1.0


@pytest.mark.parametrize(
    "name",
    ["llm_process_resident_memory_bytes", "llm_process_cpu_seconds_total"],
)
def test_process_metrics_are_positive(client: httpx.Client, name: str) -> None:
    assert metric(client, name) > 0


def test_prompt_longer_than_context_is_a_400(client: httpx.Client) -> None:
    response = client.post("/v1/completions", json={"prompt": "hello " * 1100, "max_tokens": 2})
    assert (response.status_code, response.json()["error"]["code"]) == (
        400,
        "context_length_exceeded",
    )
