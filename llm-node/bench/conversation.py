"""Bench phases for long prompts: what the prompt cache buys, measured (figures, not tests).

1. long prompt: one prompt of about 1,000 tokens, node (HTTP streaming) vs raw gpt4all, same
   n_batch, alternating one at a time: time to first token (TTFT) and prompt tokens per second
   (prompt tokens / TTFT). Each repetition starts with a different word, so the node's prompt
   cache cannot help (its reported cached tokens are checked to be 0).
2. conversation: a 6-turn chat reaching about 1,000 tokens, re-sent whole at every turn as a
   chat client does, against three nodes: the default (prompt cache and refill on), the cache
   without refill (LLM_PROMPT_CACHE_REFILL=false) and no cache (LLM_PROMPT_CACHE=false),
   alternating turn by turn: TTFT per turn, the ratio turn 6 / turn 1, whether the nodes gave
   the same replies, and the node's own planning time (tokenize + prefix match) per request.
   The next turn is sent to the default node once its refill is done, as a user who reads the
   answer before replying would (at most REFILL_WAIT_S later).

Each function takes what it needs and returns rows of figures; `markdown` renders them. The
targets (turn 6 / turn 1 with the cache on, same replies, planning time) are rows of
targets.py's TARGETS, judged with every other target in bench.md's summary table.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import httpx
import peer
from stats import fmt, median, ms

TURNS = 6
CONVERSATION_RUNS = 3
LONG_PROMPT_REPS = 3
REPLY_TOKENS = 48
REFILL_WAIT_S = 10.0
# name -> LLM_* settings of each conversation node; "refill" is the default configuration.
VARIANTS: dict[str, dict[str, str]] = {
    "refill": {"LLM_PROMPT_CACHE": "true", "LLM_PROMPT_CACHE_REFILL": "true"},
    "on": {"LLM_PROMPT_CACHE": "true", "LLM_PROMPT_CACHE_REFILL": "false"},
    "off": {"LLM_PROMPT_CACHE": "false", "LLM_PROMPT_CACHE_REFILL": "false"},
}
GREEDY: dict[str, Any] = {"temperature": 0.0, "repeat_penalty": 1.0}


TOPICS = (
    "the water cycle",
    "how bees make honey",
    "the history of the bicycle",
    "why the sky is blue",
    "how a compiler works",
    "the rules of chess",
)


class NodeLike(Protocol):
    url: str

    def wait_ready(self, timeout: float = 120.0) -> float: ...

    def stop(self) -> None: ...


def user_message(i: int, words: int = 110) -> str:
    topic = TOPICS[i % len(TOPICS)]
    filler = (
        f"I am writing notes about {topic} for a class of curious students, and I want every "
        "sentence to be clear, short and correct. Please think about what matters most, "
        "leave out what does not, and use plain words. "
    ).split()
    return f"Question {i}: tell me about {topic}. " + " ".join(
        (filler * (words // len(filler) + 1))[:words]
    )


def stream(client: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """One streaming request: TTFT (to the first text chunk), the text and the usage."""
    body = {**body, "stream": True, "stream_options": {"include_usage": True}}
    t0 = time.perf_counter()
    first: float | None = None
    text, usage = "", dict[str, Any]()
    with client.stream("POST", path, json=body) as response:
        if response.status_code != 200:
            raise RuntimeError(f"{path}: status {response.status_code}: {response.read()!r}")
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            for choice in event.get("choices") or []:
                piece = choice.get("text") or (choice.get("delta") or {}).get("content") or ""
                if piece and first is None:
                    first = time.perf_counter()
                text += piece
            usage = event.get("usage") or usage
    details = usage.get("prompt_tokens_details") or {}
    return {
        "ttft_s": None if first is None else first - t0,
        "text": text,
        "prompt_tokens": usage.get("prompt_tokens"),
        "cached_tokens": details.get("cached_tokens", 0),
    }


def long_prompt(
    node_url: str, raw_call: Callable[..., dict[str, Any]], n_batch: int
) -> dict[str, Any]:
    """~1,000-token prompt: TTFT and prompt tokens/s, node vs raw gpt4all."""
    words = " ".join(user_message(i, 150) for i in range(5))
    rows: list[dict[str, Any]] = []
    with httpx.Client(base_url=node_url, timeout=600) as client:
        for rep in range(LONG_PROMPT_REPS + 1):  # the first pair is a warm-up
            prompt = f"{TOPICS[rep % len(TOPICS)].split()[-1].title()} notes. {words}"
            node = stream(client, "/v1/completions", {"prompt": prompt, "max_tokens": 4, **GREEDY})
            raw = raw_call(
                cmd="generate",
                prompt=prompt,
                max_tokens=4,
                temp=0.0,
                top_k=40,
                top_p=0.95,
                min_p=0.0,
                repeat_penalty=1.0,
                repeat_last_n=64,
                n_batch=n_batch,
            )
            raw_ttft = None if raw["first"] is None else raw["first"] - raw["t0"]
            if rep:
                rows.append(
                    {"node": node, "raw_ttft_s": raw_ttft, "same": raw["text"] == node["text"]}
                )
    tokens = rows[0]["node"]["prompt_tokens"]
    node_ttft = median([r["node"]["ttft_s"] for r in rows if r["node"]["ttft_s"] is not None])
    raw_ttft = median([r["raw_ttft_s"] for r in rows if r["raw_ttft_s"] is not None])
    return {
        "prompt_tokens": tokens,
        "node_ttft_ms": ms(node_ttft),
        "raw_ttft_ms": ms(raw_ttft),
        "node_prompt_tps": tokens / node_ttft if node_ttft else None,
        "raw_prompt_tps": tokens / raw_ttft if raw_ttft else None,
        "node_cached_tokens_max": max(r["node"]["cached_tokens"] for r in rows),
        "same_text": all(r["same"] for r in rows),
        "reps": len(rows),
    }


@contextlib.contextmanager
def environ(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration (the node copies os.environ when started)."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def histogram(client: httpx.Client, name: str) -> tuple[float, float]:
    """(sum, count) of a histogram on a node."""
    total = count = 0.0
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f"{name}_sum"):
            total = float(line.split()[-1])
        elif line.startswith(f"{name}_count"):
            count = float(line.split()[-1])
    return total, count


def wait_refill(client: httpx.Client, before: float) -> None:
    deadline = time.monotonic() + REFILL_WAIT_S
    while histogram(client, "llm_prompt_refill_seconds")[1] <= before:
        if time.monotonic() > deadline:
            return
        time.sleep(0.02)


def quotient(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def conversation(start_node: Callable[[str], NodeLike]) -> dict[str, Any]:
    """A 6-turn chat on each variant, CONVERSATION_RUNS times; per-turn medians."""
    nodes: dict[str, NodeLike] = {}
    try:
        for name, env in VARIANTS.items():
            with environ(env):
                nodes[name] = start_node(name)
        for node in nodes.values():
            node.wait_ready()
        clients = {name: httpx.Client(base_url=n.url, timeout=600) for name, n in nodes.items()}
        plan_before = histogram(clients["refill"], "llm_prompt_planning_seconds")
        runs = [conversation_run(clients, run) for run in range(CONVERSATION_RUNS)]
        plan_after = histogram(clients["refill"], "llm_prompt_planning_seconds")
        refill = histogram(clients["refill"], "llm_prompt_refill_seconds")
        for client in clients.values():
            client.close()
    finally:
        for node in nodes.values():
            node.stop()
    turns = []
    for i in range(TURNS):
        row: dict[str, Any] = {"turn": i + 1, "prompt_tokens": runs[0][i]["off"]["prompt_tokens"]}
        for name in VARIANTS:
            ttfts = [run[i][name]["ttft_s"] for run in runs]  # None: a reply without text
            row[f"{name}_ttft_ms"] = ms(median([t for t in ttfts if t is not None]))
            row[f"{name}_cached_tokens"] = runs[0][i][name]["cached_tokens"]
        row["same"] = all(
            run[i][name]["text"] == run[i]["off"]["text"] for run in runs for name in VARIANTS
        )
        turns.append(row)
    requests = plan_after[1] - plan_before[1]
    ratio = {
        name: quotient(turns[-1][f"{name}_ttft_ms"], turns[0][f"{name}_ttft_ms"])
        for name in VARIANTS
    }
    return {
        "runs": CONVERSATION_RUNS,
        "turns": turns,
        "ratio": ratio,
        "same_replies": all(t["same"] for t in turns),
        "planning_ms_per_request": ms((plan_after[0] - plan_before[0]) / requests)
        if requests
        else None,
        "refill_ms_per_turn": ms(refill[0] / refill[1]) if refill[1] else None,
    }


def conversation_run(clients: dict[str, httpx.Client], run: int) -> list[dict[str, Any]]:
    # A different system prompt per run, so a run does not reuse the previous run's turns.
    history = [{"role": "system", "content": f"Run {run}. You are a patient teacher."}]
    results = []
    for i in range(TURNS):
        messages = [*history, {"role": "user", "content": user_message(i)}]
        body = {"messages": messages, "max_tokens": REPLY_TOKENS, **GREEDY}
        result = {}
        for name, client in clients.items():
            refills = histogram(client, "llm_prompt_refill_seconds")[1]
            result[name] = stream(client, "/v1/chat/completions", body)
            if name == "refill":
                wait_refill(client, refills)  # the user reads the answer meanwhile
        results.append(result)
        history = [*messages, {"role": "assistant", "content": result["off"]["text"]}]
    return results


def run(
    node_url: str,
    raw_call: Callable[..., dict[str, Any]],
    n_batch: int,
    start_node: Callable[[str], NodeLike],
) -> dict[str, Any]:
    """Both phases: `raw_call` sends one command to the raw worker, `start_node(variant)` starts
    one more node (it reads LLM_* from os.environ); returns their figures."""
    return {
        "long_prompt": long_prompt(node_url, raw_call, n_batch),
        "conversation": conversation(start_node),
    }


def markdown(result: dict[str, Any]) -> str:
    long = result.get("long_prompt") or {}
    conv = result.get("conversation") or {}
    lines = ["## Long prompts and conversations (prompt cache)", ""]
    if long:
        lines += [
            "| ~1,000-token prompt | Raw gpt4all | llm-node (HTTP) |",
            "|---|---|---|",
            f"| Time to first token (ms) | {fmt(long['raw_ttft_ms'], 0)} "
            f"| {fmt(long['node_ttft_ms'], 0)} |",
            f"| Prompt tokens/s | {fmt(long['raw_prompt_tps'])} | {fmt(long['node_prompt_tps'])} |",
            "",
            f"{long['prompt_tokens']} prompt tokens, medians of {long['reps']} alternating pairs "
            f"after a warm-up; node cached tokens (must be 0): {long['node_cached_tokens_max']}; "
            f"same text: {'yes' if long['same_text'] else 'NO'}.",
            "",
        ]
    if conv:
        lines += [
            "| Turn | Prompt tokens | Reused: default / no refill | TTFT default (ms) "
            "| TTFT no refill (ms) | TTFT no cache (ms) | Same reply |",
            "|---|---|---|---|---|---|---|",
        ]
        for t in conv["turns"]:
            lines.append(
                f"| {t['turn']} | {t['prompt_tokens']} "
                f"| {t['refill_cached_tokens']} / {t['on_cached_tokens']} "
                f"| {fmt(t['refill_ttft_ms'], 0)} | {fmt(t['on_ttft_ms'], 0)} "
                f"| {fmt(t['off_ttft_ms'], 0)} | {'yes' if t['same'] else 'NO'} |"
            )
        ratio = conv["ratio"]
        lines += [
            "",
            f"Turn 6 / turn 1: default (cache + refill) {fmt(ratio['refill'], 2)}, cache without "
            f"refill {fmt(ratio['on'], 2)}, no cache {fmt(ratio['off'], 2)} (medians of "
            f"{conv['runs']} runs, greedy, {REPLY_TOKENS}-token replies, the nodes alternating "
            f"turn by turn); planning {fmt(conv['planning_ms_per_request'], 2)} ms per request; "
            f"refill {fmt(conv['refill_ms_per_turn'], 0)} ms per turn, after the answer.",
            "",
        ]
    lines += peer.markdown(result)
    return "\n".join(lines)
