"""The one table of `make bench SIZE=8b` (phase_8b.py measures, this renders its figures)."""

from __future__ import annotations

from typing import Any

from shape_8b import CHAT_REPLY_TOKENS, CHAT_TURNS, CHAT_WORDS, LONG_REPS, MAX_TOKENS, SHORT_REPS
from stats import fmt, median, mib


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
