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
import json
import logging
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import peer
import psutil
from bandwidth import bytes_per_token, copy_bandwidth, tensor_bytes
from conversation import environ, user_message
from phase import Phase, Run
from processes import Node, RawWorker
from stats import fmt, median, mib, status_bytes

log = logging.getLogger("bench")

SHORT_TOKENS = 100  # prompt sizes, counted with the node's tokenizer (BOS included)
LONG_TOKENS = 1000
SHORT_REPS = 2
LONG_REPS = 1
MAX_TOKENS = 32  # replies to the ~100-token prompts: the decode rate's sample
LONG_MAX_TOKENS = 4
N_BATCH_LARGE = 128  # raw gpt4all's second n_batch, next to the node's default
CHAT_TURNS = 6
CHAT_WORDS = 30  # words of filler per user message (about 50 tokens a turn)
CHAT_REPLY_TOKENS = 16
UNCACHED_TURNS = (1, 6)
CHAT_SYSTEM = "Chat. You are a patient teacher."
IDLE_TIMEOUT_S = 600.0
RUN_BUDGET_S = 30 * 60  # phase_long_batch runs only if the run is younger
PEER_WAIT_S = 20 * 60
STARTED = time.perf_counter()  # bench.py imports this module when it starts
# Greedy, no repeat penalty, the same on every engine.
SAMPLING: dict[str, Any] = {
    "temp": 0.0,
    "top_k": 40,
    "top_p": 0.95,
    "min_p": 0.0,
    "repeat_penalty": 1.0,
    "repeat_last_n": 64,
}


def warm_page_cache(model: Path) -> float:
    """Read the model file once, so every engine starts with it in the page cache (the
    deployment's steady state); the seconds it took."""
    started = time.perf_counter()
    with model.open("rb") as handle:
        while handle.read(1 << 24):
            pass
    return time.perf_counter() - started


def wait_idle(pid: int, timeout: float = IDLE_TIMEOUT_S) -> float:
    """Wait until a process uses (almost) no CPU: 0.5 s in which it used under 25 ms."""
    proc = psutil.Process(pid)
    started = time.perf_counter()

    def cpu() -> float:
        times = proc.cpu_times()
        return float(times.user + times.system)

    last = cpu()
    while time.perf_counter() - started < timeout:
        time.sleep(0.5)
        now = cpu()
        if now - last < 0.025:
            break
        last = now
    return time.perf_counter() - started


def memory_of(pid: int) -> dict[str, float | None]:
    return {
        "rss_mib": mib(status_bytes(pid, "VmRSS")),
        "peak_rss_mib": mib(status_bytes(pid, "VmHWM")),
        "anon_mib": mib(status_bytes(pid, "RssAnon")),
    }


def node_chat(
    client: httpx.Client, messages: list[dict[str, str]], max_tokens: int
) -> dict[str, Any]:
    """One streaming /v1/chat/completions: TTFT and decode rate as the caller sees them."""
    body = {
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "repeat_penalty": 1.0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    t0 = time.perf_counter()
    first = last = None
    text, usage = "", dict[str, Any]()
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            raise RuntimeError(f"chat request: status {response.status_code}: {response.read()!r}")
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            for choice in event.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content") or ""
                if piece:
                    last = time.perf_counter()
                    first = first or last
                    text += piece
            usage = event.get("usage") or usage
    tokens = int(usage.get("completion_tokens") or 0)
    prompt_tokens = int(usage.get("prompt_tokens") or 0)
    cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
    return {
        "ttft_s": None if first is None else first - t0,
        "decode_tps": (tokens - 1) / (last - first) if first and last and last > first else None,
        "tokens": tokens,
        "prompt_tokens": prompt_tokens,
        "cached_tokens": cached,
        "text": text,
    }


def raw_generate(raw: RawWorker, text: str, max_tokens: int, n_batch: int) -> dict[str, Any]:
    """One generation in the raw worker from a rendered chat prompt (special tokens parsed)."""
    reply = raw.call(
        cmd="generate",
        prompt=text,
        max_tokens=max_tokens,
        n_batch=n_batch,
        special=True,
        **SAMPLING,
    )
    first, last = reply["first_token"], reply["last_token"]
    tokens = int(reply["tokens"])
    return {
        "ttft_s": None if first is None else first - reply["t0"],
        "decode_tps": (tokens - 1) / (last - first) if first and last and last > first else None,
        "tokens": tokens,
        "text": reply["text"],
    }


def prompt_rate(sample: dict[str, Any], tokens: int) -> float | None:
    """Evaluated prompt tokens / TTFT (the first token's own decode included)."""
    evaluated = tokens - int(sample.get("cached_tokens") or 0)
    return evaluated / sample["ttft_s"] if sample.get("ttft_s") else None


# --- phases -------------------------------------------------------------------------------


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


# --- the table ----------------------------------------------------------------------------


def secs(value: float | None) -> str:
    return fmt(value, 1)


def describe_table(figures: dict[str, Any], env: dict[str, Any]) -> list[str]:
    bw = figures.get("bandwidth") or {}
    single = figures.get("single") or {}
    chat = figures.get("chat") or {}
    peer_f = figures.get("peer") or {}
    memory = figures.get("memory") or {}
    has_peer = bool(peer_f) and "error" not in peer_f
    peer_short = summarize_peer(peer_f.get("short") or [])
    peer_long = summarize_peer(peer_f.get("long") or [])
    limit = None
    if bw.get("tensor_bytes") and bw.get("copy"):
        limit = bw["copy"]["bytes_per_s"] / bw["tensor_bytes"]

    def get(engine: str, kind: str, key: str) -> float | None:
        value = ((single.get(engine) or {}).get(kind) or {}).get(key)
        return None if value is None else float(value)

    def of_limit(rate: float | None) -> str:
        if rate is None or not limit:
            return fmt(rate, 2)
        return f"{fmt(rate, 2)} ({100 * rate / limit:.0f} %)"

    def peer_cell(value: str) -> str:
        return value if has_peer else "n/a"

    short_n = "/".join(str(n) for n in (single.get("prompt_tokens") or {}).get("short", []))
    long_n = "/".join(str(n) for n in (single.get("prompt_tokens") or {}).get("long", []))
    n_batch, large = single.get("n_batch"), single.get("n_batch_large")
    lines = [
        "## Llama 3 8B size (make bench SIZE=8b)",
        "",
        f"| Figure | llm-node (HTTP, n_batch {n_batch}) | raw gpt4all (n_batch {n_batch}) "
        f"| raw gpt4all (n_batch {large}) "
        "| llama.cpp"
        + (f" {peer_f['llama_cpp_version']} (n_batch {peer_f['n_batch']}) |" if has_peer else " |"),
        "|---|---|---|---|---|",
        f"| Start: time to `/ready` / load (s) | {secs(env.get('node_ready_s'))} "
        f"| {secs(env.get('raw_load_s'))} | | {peer_cell(secs(peer_f.get('load_s')))} |",
        "| Decode (tokens/s; % of the bandwidth limit) "
        f"| {of_limit(get('node', 'short', 'decode_tps'))} "
        f"| {of_limit(get('raw', 'short', 'decode_tps'))} "
        f"| {of_limit(get('raw_large', 'short', 'decode_tps'))} "
        f"| {peer_cell(of_limit(peer_short['decode_tps']))} |",
    ]
    for kind, label in (
        ("short", f"~100-token prompt ({short_n})"),
        ("long", f"~1,000-token prompt ({long_n})"),
    ):
        peer_kind = peer_short if kind == "short" else peer_long
        lines += [
            f"| {label}: prompt tokens/s | {fmt(get('node', kind, 'prompt_tps'), 2)} "
            f"| {fmt(get('raw', kind, 'prompt_tps'), 2)} "
            f"| {fmt(get('raw_large', kind, 'prompt_tps'), 2)} "
            f"| {peer_cell(fmt(peer_kind['prompt_tps'], 2))} |",
            f"| {label}: time to first token (s) | {secs(get('node', kind, 'ttft_s'))} "
            f"| {secs(get('raw', kind, 'ttft_s'))} | {secs(get('raw_large', kind, 'ttft_s'))} "
            f"| {peer_cell(secs(peer_kind['ttft_s']))} |",
        ]
    peer_turns = peer_f.get("chat") or []
    for t in chat.get("turns") or []:
        on, off = t["on"], t["off"]
        off_cell = "" if off is None else f"; cache off {secs(off['ttft_s'])}"
        same = "" if t["same"] is None else f" (same reply: {'yes' if t['same'] else 'NO'})"
        i = t["turn"] - 1
        peer_ttft = peer_turns[i]["ttft_s"] if i < len(peer_turns) else None
        lines.append(
            f"| Chat turn {t['turn']} ({t['prompt_tokens']} tokens): time to first token (s) "
            f"| cache on {secs(on['ttft_s'])} (reused {on['cached_tokens']}){off_cell}{same} "
            f"| | | {peer_cell(secs(peer_ttft))} |"
        )
    peer_mem = peer_f.get("memory") or {}

    def mem_row(label: str, key: str, peer_key: str) -> str:
        node = (memory.get("node") or {}).get(key)
        raw = (memory.get("raw") or {}).get(key)
        return (
            f"| {label} (MiB) | {fmt(node, 0)} | {fmt(raw, 0)} | "
            f"| {peer_cell(fmt(mib(peer_mem.get(peer_key)), 0))} |"
        )

    lines += [
        mem_row("Resident memory, RSS", "rss_mib", "VmRSS"),
        mem_row("Peak resident memory, VmHWM", "peak_rss_mib", "VmHWM"),
        mem_row("Anonymous resident memory, RssAnon", "anon_mib", "RssAnon"),
        "",
    ]
    copy = bw.get("copy") or {}
    if limit:
        lines += [
            f"Bandwidth limit: {fmt(copy['bytes_per_s'] / 1e9, 1)} GB/s copy bandwidth "
            f"({copy['method']}; 1 thread {fmt(copy['bytes_per_s_1_thread'] / 1e9, 1)} GB/s) / "
            f"{fmt(bw['tensor_bytes'] / 1e9, 2)} GB of tensors read per token = "
            f"{fmt(limit, 2)} tokens/s (without the token embedding, of which a token reads one "
            f"row: {fmt(bw['tensor_bytes_without_embedding'] / 1e9, 2)} GB, "
            f"{fmt(copy['bytes_per_s'] / bw['tensor_bytes_without_embedding'], 2)} tokens/s).",
            "",
        ]
    lines += [
        f"Prompt tokens/s = prompt tokens evaluated / time to first token; decode = (tokens - 1) "
        f"/ (last - first token), {MAX_TOKENS}-token replies to the ~100-token prompts; medians "
        f"of {SHORT_REPS} (~100) and {LONG_REPS} (~1,000) prompts per engine, raw at n_batch "
        f"{large}: 1 each. Greedy, repeat penalty 1.0. The node's prompt cache reused at most "
        f"{fmt(get('node', 'short', 'cached_tokens_max'), 0)} / "
        f"{fmt(get('node', 'long', 'cached_tokens_max'), 0)} template tokens of these prompts "
        f"(left out of its rate); its token counts equal the bench's: "
        f"{'yes' if single.get('node_counts_match') else 'NO'}. Chat: {CHAT_TURNS} turns of "
        f"{CHAT_WORDS}-word questions and {CHAT_REPLY_TOKENS}-token replies; the node without "
        f"cache (a second node, ready in {secs(chat.get('nocache_node_ready_s'))} s) ran turns "
        f"{', '.join(str(t) for t in chat.get('uncached_turns') or [])} only; llama.cpp reuses "
        f"its previous prompt and reply. Memory: the weights are a shared file mapping (RSS "
        f"counts them in every process that maps the file; RssAnon is the process's own). "
        f"Model file read into the page cache first: {secs(env.get('page_cache_read_s'))} s.",
        "",
    ]
    if figures.get("long_batch_skipped"):
        lines += [
            f"Raw gpt4all at n_batch {large} on the ~1,000-token prompt: skipped: "
            f"{figures['long_batch_skipped']}.",
            "",
        ]
    if peer_f and not has_peer:
        lines += [f"llama.cpp: {peer_f.get('error')}", ""]
    return lines


def summarize_peer(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    def med(key: str) -> float | None:
        return median([r[key] for r in rows if r.get(key) is not None])

    rates = [
        r["prompt_tokens"] / r["ttft_s"] for r in rows if r.get("ttft_s") and r.get("prompt_tokens")
    ]
    return {"ttft_s": med("ttft_s"), "decode_tps": med("decode_tps"), "prompt_tps": median(rates)}


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
