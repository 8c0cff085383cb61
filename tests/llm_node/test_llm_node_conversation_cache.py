"""Several conversations on one node: saved states are restored exactly.

As in test_llm_node_prompt_cache, a server with the prompt cache and one without get the same
requests in the same order and must answer token for token alike (greedy). Here the requests
interleave conversations, so every returning turn finds the live context holding another
conversation and must restore its own saved state (LLM_PROMPT_CACHE_MIB); the metrics and
`cached_tokens` show that it did.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from node_harness import metric
from test_llm_node_prompt_cache import (
    CHAT,
    GREEDY,
    Pair,
    cancel_during_prompt,
    chat_body,
    same,
    start_pair,
    user_message,
)

pytestmark = pytest.mark.slow

SYSTEM = {"role": "system", "content": "You are a helpful assistant. Answer briefly."}
USERS = ("ann", "bob", "col")
TURNS = 6
SUBJECTS = ["rivers", "volcanoes", "owls", "glaciers", "tides", "deserts", "comets", "forests"]


def message(user: str, i: int) -> str:
    subject = SUBJECTS[(i * 3 + len(user)) % len(SUBJECTS)]
    return f"This is {user}. Question {i}: what should a child know about {subject}, and why?"


class Chat:
    """One conversation, sent turn by turn to both servers; `usage` of each turn (cache on)."""

    def __init__(self, pair: Pair, user: str) -> None:
        self.pair = pair
        self.user = user
        self.history: list[dict[str, str]] = [SYSTEM]
        self.usage: list[dict[str, Any]] = []

    def turn(self, content: str | None = None) -> None:
        text = content or message(self.user, len(self.usage))
        messages = [*self.history, {"role": "user", "content": text}]
        # repeat_penalty 1.1 reads the backend's token list: a restore must rewrite it too.
        body = chat_body(messages, max_tokens=8, repeat_penalty=1.1)
        responses = self.pair.post(CHAT, body)
        reply, _, _ = same(responses)
        self.usage.append(responses["on"].json()["usage"])
        self.history = [*messages, {"role": "assistant", "content": reply}]

    def cached(self, index: int) -> int:
        cached: int = self.usage[index]["prompt_tokens_details"]["cached_tokens"]
        return cached

    def previous_prompt(self, index: int) -> int:
        tokens: int = self.usage[index - 1]["prompt_tokens"]
        return tokens


@pytest.fixture(scope="module", params=["tiny", "llama3"])
def model(request: pytest.FixtureRequest) -> Path:
    path: Path = request.getfixturevalue(f"{request.param}_model")
    return path


@pytest.fixture(scope="module")
def pair(model: Path) -> Iterator[Pair]:
    yield from start_pair(model, max_tokens_limit=256, prompt_cache_mib=512)


def restores(pair: Pair) -> float:
    """Restores whose token list was long enough (the server's usual case: it never shrinks)."""
    return metric(pair.on, "llm_prompt_cache_restores_total", token_list="kept")


@pytest.fixture(scope="module")
def alternating(pair: Pair) -> dict[str, Any]:
    """Three users take turns, 6 turns each; every answer is compared as it comes."""
    before = restores(pair)
    hits = metric(pair.on, "llm_prompt_cache_hits_total", source="saved")
    chats = {user: Chat(pair, user) for user in USERS}
    for _ in range(TURNS):
        for chat in chats.values():
            chat.turn()
    return {
        "chats": chats,
        "restores": restores(pair) - before,
        "hits": metric(pair.on, "llm_prompt_cache_hits_total", source="saved") - hits,
    }


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("index", range(1, TURNS))
def test_a_returning_user_reuses_their_own_history(
    alternating: dict[str, Any], user: str, index: int
) -> None:
    chat: Chat = alternating["chats"][user]
    # The user's previous prompt is reused, less at most one batch (16) for the lone-token rule;
    # the other user's turn came in between, so it can only have come from a restored state.
    assert chat.cached(index) >= chat.previous_prompt(index) - 16


def test_each_returning_turn_restored_a_state_in_place(alternating: dict[str, Any]) -> None:
    # Every turn after each user's first finds the other user's context live: one restore each.
    assert alternating["restores"] == len(USERS) * (TURNS - 1)


def test_each_restore_counts_as_a_hit_on_a_saved_state(alternating: dict[str, Any]) -> None:
    assert alternating["hits"] == alternating["restores"]


def test_the_restore_time_is_recorded(pair: Pair, alternating: dict[str, Any]) -> None:
    assert metric(pair.on, "llm_prompt_cache_restore_seconds_count") >= alternating["restores"]


def test_saved_states_are_counted_in_bytes(pair: Pair, alternating: dict[str, Any]) -> None:
    assert metric(pair.on, "llm_prompt_cache_bytes") > 0
    assert metric(pair.off, "llm_prompt_cache_bytes") == 0


def test_a_side_request_between_two_turns(pair: Pair) -> None:
    chat = Chat(pair, "cyd")
    chat.turn()
    same(pair.post("/v1/completions", {"prompt": "A title for a chat about owls:", **GREEDY}))
    chat.turn("And what else?")
    assert chat.cached(1) >= chat.previous_prompt(1) - 16


def test_a_request_cancelled_mid_prompt_after_a_save(pair: Pair) -> None:
    chat = Chat(pair, "dee")
    chat.turn()
    long_chat = [SYSTEM, {"role": "user", "content": user_message(8, 300)}]
    body = chat_body(long_chat, stream=True)
    generated = {
        name: cancel_during_prompt(client, pair.servers[name], body)
        for name, client in pair.clients().items()
    }
    assert generated == {"on": 0, "off": 0}  # premise: both stopped before the first token
    chat.turn("Go on.")
    assert chat.cached(1) >= chat.previous_prompt(1) - 16


@pytest.fixture(scope="module")
def tight(tiny_model: Path) -> Iterator[Pair]:
    """A 2 MiB budget: one short conversation's state (~24 KB per token) fits, two do not."""
    yield from start_pair(tiny_model, max_tokens_limit=256, prompt_cache_mib=2)


def test_a_user_returning_after_their_state_was_evicted(tight: Pair) -> None:
    evictions = metric(tight.on, "llm_prompt_cache_evictions_total")
    chats = [Chat(tight, user) for user in ("eve", "fay", "gus")]
    for chat in chats:
        chat.turn(message(chat.user, 0) + " Please be detailed. " * 4)
    assert metric(tight.on, "llm_prompt_cache_evictions_total") > evictions
    chats[0].turn()  # evaluated again (its state is gone), still identical (compared in turn)
    assert metric(tight.on, "llm_prompt_cache_bytes") <= 2 * 1024 * 1024


@pytest.fixture(scope="module")
def small(tiny_model: Path) -> Iterator[Pair]:
    """A 256-token window: a completion without max_tokens fills it cheaply."""
    yield from start_pair(tiny_model, n_ctx=256, default_max_tokens=1024, max_tokens_limit=1024)


def test_a_conversation_restored_after_a_completion_filled_the_context(small: Pair) -> None:
    chat = Chat(small, "hal")
    chat.turn()
    counting = {"prompt": "1, 2, 3, 4, 5, 6, 7, 8,", **GREEDY}
    _, _, finish = same(small.post("/v1/completions", counting))
    assert finish == "length"  # premise: the window was filled
    chat.turn("Go on.")
    assert chat.cached(1) >= chat.previous_prompt(1) - 16
