"""`make bench SIZE=8b`: llm-node, raw gpt4all and llama.cpp side by side at Llama 3 8B's size.

Run on the 8B-shaped stand-in (`make model-8b`: Llama 3 8B's exact shape, the real Llama 3
tokenizer and chat template, random Q4_0 weights: gibberish at the real speed). At this size a
1,000-token prompt takes minutes per engine on 2 cores, so the run is sized to about half an
hour: few repetitions, short replies, a small-turn chat. One table (`describe_table`):

- decode tokens/s and, per engine, that rate as a fraction of the memory-bandwidth limit
  (bandwidth.py: weight bytes read per token vs a copy bandwidth measured in the same run);
- prompt tokens/s and time to first token (TTFT) of a ~100- and a ~1,000-token prompt: real
  Llama 3 chat-template prompts (`messages` rendered by the node's own template code, counted
  with the node's tokenizer), each evaluated from scratch (the node's prompt cache can reuse
  only the first few template tokens; the count it reports is shown and left out of the rate);
- raw gpt4all also at n_batch 128 next to the node's default (the prompt rate's dependence on
  n_batch, for choosing the default);
- a 6-turn chat with small turns: the node with its prompt cache (the default) vs a second node
  without it (LLM_PROMPT_CACHE=false; only the turns in UNCACHED_TURNS, to keep the run short:
  its turn N costs the whole history), and llama.cpp with its own prefix reuse;
- resident memory (RSS, the kernel's peak VmHWM, and the anonymous part RssAnon: the weights
  are a file mapping shared by every process that maps the file), time to `/ready` vs raw load.

The engines run one at a time: after a node request the bench waits until the node's process
is idle (its refill of the last reply runs after the answer), so no engine's figure includes
another one's work. Times are medians where there are several repetitions.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import peer
from bandwidth import bytes_per_token, copy_bandwidth, tensor_bytes
from conversation import environ, user_message
from engines_8b import memory_of, node_chat, prompt_rate, raw_generate, wait_idle
from phase import Phase, Run
from processes import Node
from shape_8b import (
    CHAT_REPLY_TOKENS,
    CHAT_SYSTEM,
    CHAT_TURNS,
    CHAT_WORDS,
    LONG_MAX_TOKENS,
    LONG_REPS,
    LONG_TOKENS,
    MAX_TOKENS,
    N_BATCH_LARGE,
    PEER_WAIT_S,
    RUN_BUDGET_S,
    SHORT_REPS,
    SHORT_TOKENS,
    UNCACHED_TURNS,
)
from stats import median
from table_8b import describe_table

log = logging.getLogger("bench")

STARTED = time.perf_counter()  # bench.py imports this module when it starts


async def phase_bandwidth(run: Run) -> dict[str, Any]:
    sizes = await asyncio.to_thread(tensor_bytes, run.opts.model)
    copy = await asyncio.to_thread(copy_bandwidth, run.opts.threads)
    return {**bytes_per_token(sizes), "tensors": len(sizes), "copy": copy}


def build_prompts(model: Path) -> dict[str, Any]:
    """Chat prompts of about SHORT_TOKENS and LONG_TOKENS tokens, rendered with the node's chat
    template code and counted with its tokenizer, plus the chat's messages."""
    from llm_node.chat_template import load_chat_format
    from llm_node.tokenizer import Tokenizer

    tokenizer = Tokenizer(model)
    try:
        chat_format = load_chat_format(model)

        def entry(messages: list[dict[str, str]]) -> dict[str, Any]:
            text = chat_format.render(messages)
            tokens = tokenizer.tokenize(text.encode(), special=True)
            return {"messages": messages, "text": text, "tokens": tokens, "n_tokens": len(tokens)}

        def fitted(k: int, target: int) -> dict[str, Any]:
            """The first filler length whose prompt reaches `target` tokens (a distinct system
            prompt per k, so no prompt is a prefix of another)."""

            def messages(words: int) -> list[dict[str, str]]:
                system = f"Session {k}. You are a concise assistant."
                return [
                    {"role": "system", "content": system},
                    {"role": "user", "content": user_message(k, words)},
                ]

            low, high = 1, 2 * target
            while low < high:
                mid = (low + high) // 2
                if entry(messages(mid))["n_tokens"] < target:
                    low = mid + 1
                else:
                    high = mid
            return entry(messages(low))

        return {
            "warmup": entry([{"role": "user", "content": "Hello."}]),
            "short": [fitted(k, SHORT_TOKENS) for k in range(SHORT_REPS)],
            "long": [fitted(SHORT_REPS + k, LONG_TOKENS) for k in range(LONG_REPS)],
            "chat_system": CHAT_SYSTEM,
            "chat_users": [user_message(i, CHAT_WORDS) for i in range(CHAT_TURNS)],
            "template_source": chat_format.source,
        }
    finally:
        tokenizer.close()


async def phase_prompts(run: Run) -> dict[str, Any]:
    return await asyncio.to_thread(build_prompts, run.opts.model)


def measure_single(run: Run) -> dict[str, Any]:
    prompts, node, raw = run.phases["prompts"], run.node, run.raw
    pid = node.proc.pid
    figures: dict[str, Any] = {"n_batch": run.n_batch, "n_batch_large": N_BATCH_LARGE}
    samples: dict[str, dict[str, list[dict[str, Any]]]] = {
        name: {"short": [], "long": []} for name in ("node", "raw", "raw_large")
    }
    with httpx.Client(base_url=node.url, timeout=3600) as client:
        log.info("8b: warm-up")
        node_chat(client, prompts["warmup"]["messages"], 2)
        wait_idle(pid)
        raw_generate(raw, prompts["warmup"]["text"], 2, run.n_batch)
        for kind, max_tokens in (("short", MAX_TOKENS), ("long", LONG_MAX_TOKENS)):
            for rep, item in enumerate(prompts[kind]):
                n = item["n_tokens"]
                log.info("8b: %s prompt %d (%d tokens): node", kind, rep + 1, n)
                sample = node_chat(client, item["messages"], max_tokens)
                wait_idle(pid)
                samples["node"][kind].append({**sample, "rate": prompt_rate(sample, n)})
                log.info("8b: %s prompt %d: raw gpt4all, n_batch %d", kind, rep + 1, run.n_batch)
                sample = raw_generate(raw, item["text"], max_tokens, run.n_batch)
                samples["raw"][kind].append({**sample, "rate": prompt_rate(sample, n)})
                if rep == 0 and kind == "short":  # the long one: phase_long_batch, if in time
                    log.info("8b: %s prompt: raw gpt4all, n_batch %d", kind, N_BATCH_LARGE)
                    sample = raw_generate(raw, item["text"], max_tokens, N_BATCH_LARGE)
                    samples["raw_large"][kind].append({**sample, "rate": prompt_rate(sample, n)})
    for name, by_kind in samples.items():
        figures[name] = {kind: summarize(rows) for kind, rows in by_kind.items()}
    figures["samples"] = samples
    figures["prompt_tokens"] = {
        kind: [item["n_tokens"] for item in prompts[kind]] for kind in ("short", "long")
    }
    node_counts = [s["prompt_tokens"] for kind in ("short", "long") for s in samples["node"][kind]]
    figures["node_counts_match"] = node_counts == [
        item["n_tokens"] for kind in ("short", "long") for item in prompts[kind]
    ]
    return figures


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def med(key: str) -> float | None:
        return median([r[key] for r in rows if r.get(key) is not None])

    cached = [int(r.get("cached_tokens") or 0) for r in rows]
    return {
        "ttft_s": med("ttft_s"),
        "decode_tps": med("decode_tps"),
        "prompt_tps": med("rate"),
        "cached_tokens_max": max(cached) if cached else None,
        "reps": len(rows),
    }


async def phase_single(run: Run) -> dict[str, Any]:
    return await asyncio.to_thread(measure_single, run)


def measure_chat(run: Run) -> dict[str, Any]:
    """The chat on the default node (cache on) and on a second node with the cache off; the
    history carries the cache-on node's replies (the off node must give the same ones)."""
    prompts, opts = run.phases["prompts"], run.opts
    with (opts.out / f"{opts.stem}-nocache-node.log").open("w", encoding="utf-8") as log_file:
        with environ({"LLM_PROMPT_CACHE": "false", "LLM_PROMPT_CACHE_REFILL": "false"}):
            off_node = Node(opts, log_file)
        try:
            off_ready = off_node.wait_ready(opts.ready_timeout_s)
            with (
                httpx.Client(base_url=run.node.url, timeout=3600) as on_client,
                httpx.Client(base_url=off_node.url, timeout=3600) as off_client,
            ):
                turns = []
                history = [{"role": "system", "content": prompts["chat_system"]}]
                for i, content in enumerate(prompts["chat_users"], start=1):
                    messages = [*history, {"role": "user", "content": content}]
                    log.info("8b: chat turn %d: node, cache on", i)
                    on = node_chat(on_client, messages, CHAT_REPLY_TOKENS)
                    wait_idle(run.node.proc.pid)  # its refill: the user reads the answer
                    off = None
                    if i in UNCACHED_TURNS:
                        log.info("8b: chat turn %d: node, cache off", i)
                        off = node_chat(off_client, messages, CHAT_REPLY_TOKENS)
                        wait_idle(off_node.proc.pid)
                    turns.append(
                        {
                            "turn": i,
                            "prompt_tokens": on["prompt_tokens"],
                            "on": on,
                            "off": off,
                            "same": None if off is None else off["text"] == on["text"],
                        }
                    )
                    history = [*messages, {"role": "assistant", "content": on["text"]}]
            off_memory = memory_of(off_node.proc.pid)
        finally:
            off_node.stop()
    return {
        "uncached_turns": list(UNCACHED_TURNS),
        "reply_tokens": CHAT_REPLY_TOKENS,
        "turns": turns,
        "nocache_node_ready_s": off_ready,
        "nocache_node_memory": off_memory,
    }


async def phase_chat(run: Run) -> dict[str, Any]:
    return await asyncio.to_thread(measure_chat, run)


def peer_importable(python: Path) -> bool:
    command = [str(python), "-c", "import llama_cpp"]
    return python.is_file() and subprocess.run(command, capture_output=True).returncode == 0


async def phase_peer(run: Run) -> dict[str, Any]:
    opts = run.opts
    if opts.peer is None:
        return {"error": "not measured (make bench SIZE=8b PEER=1 adds llama.cpp)"}
    prompts = run.phases["prompts"]
    job = {
        "kind": "sized",
        "warmup": prompts["warmup"]["tokens"],
        "short": [item["tokens"] for item in prompts["short"]],
        "long": [item["tokens"] for item in prompts["long"]],
        "max_tokens": MAX_TOKENS,
        "long_max_tokens": LONG_MAX_TOKENS,
        "system": prompts["chat_system"],
        "user_messages": prompts["chat_users"],
        "reply_tokens": CHAT_REPLY_TOKENS,
    }
    # The peer's build takes minutes; a run started while it compiles waits for it (a while).
    deadline = time.perf_counter() + PEER_WAIT_S
    while not await asyncio.to_thread(peer_importable, opts.peer):
        if time.perf_counter() > deadline:
            break  # peer.run reports the import error
        log.info("8b: waiting for the peer's build (llama_cpp not importable yet)")
        await asyncio.sleep(30)
    log.info("8b: llama.cpp (peer)")
    return await asyncio.to_thread(peer.run, opts.peer, opts.model, opts.threads, 3600.0, job)


def measure_long_batch(run: Run) -> dict[str, Any]:
    """Raw gpt4all on the ~1,000-token prompt at N_BATCH_LARGE: last, and only when the run is
    still within RUN_BUDGET_S (it costs one more uncached ~1,000-token prompt)."""
    elapsed = time.perf_counter() - STARTED
    if elapsed > RUN_BUDGET_S:
        return {
            "skipped": f"the run had taken {elapsed / 60:.0f} min (budget {RUN_BUDGET_S / 60:.0f})"
        }
    item = run.phases["prompts"]["long"][0]
    log.info("8b: long prompt: raw gpt4all, n_batch %d", N_BATCH_LARGE)
    sample = raw_generate(run.raw, item["text"], LONG_MAX_TOKENS, N_BATCH_LARGE)
    return summarize([{**sample, "rate": prompt_rate(sample, item["n_tokens"])}])


async def phase_long_batch(run: Run) -> dict[str, Any]:
    return await asyncio.to_thread(measure_long_batch, run)


async def phase_memory(run: Run) -> dict[str, Any]:
    return {"node": memory_of(run.node.proc.pid), "raw": memory_of(run.raw.proc.pid)}


async def phase_table(run: Run) -> dict[str, Any]:
    """Everything the table needs, from the phases before (rendered by `describe_table`)."""
    figures = {name: run.phases.get(name) for name in ("bandwidth", "single", "chat", "peer")}
    figures["memory"] = run.phases.get("memory")
    long_batch = run.phases.get("long_batch") or {}
    single = figures.get("single") or {}
    if single and "skipped" not in long_batch:
        single["raw_large"]["long"] = long_batch
    figures["long_batch_skipped"] = long_batch.get("skipped")
    return figures


def nothing(_figures: Any, _env: dict[str, Any]) -> list[str]:
    return []  # shown in the one table


PHASES_8B: tuple[Phase, ...] = (
    Phase("prompts", phase_prompts, nothing, metered=False),
    Phase("single", phase_single, nothing, timeout_s=5400),
    Phase("chat", phase_chat, nothing, timeout_s=3600),
    Phase("memory", phase_memory, nothing, metered=False),
    Phase("long_batch", phase_long_batch, nothing, timeout_s=3600),
    # after gpt4all's engines: a copy of 2 x 1 GiB is not in their way, nor its CPU
    Phase("bandwidth", phase_bandwidth, nothing),
    Phase("peer", phase_peer, nothing, timeout_s=3600),
    Phase("table", phase_table, describe_table, metered=False),
)
