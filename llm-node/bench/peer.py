"""The peer: llama.cpp itself (llama-cpp-python, built from source) on the same file and threads.

`make bench PEER=1` builds llama-cpp-python in its own virtualenv (.venv-peer: the build takes
minutes, so it is not part of `make bench` by default) and runs this file there as a worker:

    .venv-peer/bin/python llm-node/bench/peer.py --model FILE.gguf --threads N

It measures what bench.py and conversation.py measure on llm-node, in-process (no HTTP): the
decode rate of the raw-vs-node prompt, the time to first token of a ~1,000-token prompt, and a
6-turn chat through `create_chat_completion` (the GGUF's own template) with llama-cpp-python's
own prefix reuse (it keeps the previous call's tokens, prompt and reply, and evaluates only
what differs; llama.cpp documents that this reuse may change outputs). Each figure is the
median of several runs. It prints one JSON line; `run` starts it and returns that.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from stats import fmt

DECODE_PROMPT = "Once upon a time, in a small village by the sea,"
DECODE_TOKENS = 96


def spec() -> dict[str, Any]:
    """The prompts and sizes, the same as conversation.py's (the worker imports nothing of
    ours: the peer's virtualenv has only llama-cpp-python)."""
    import conversation

    words = " ".join(conversation.user_message(i, 150) for i in range(5))
    topics = conversation.TOPICS
    return {
        "long_prompts": [
            f"{topics[rep % len(topics)].split()[-1].title()} notes. {words}"
            for rep in range(conversation.LONG_PROMPT_REPS + 1)
        ],
        "runs": conversation.CONVERSATION_RUNS,
        "user_messages": [conversation.user_message(i) for i in range(conversation.TURNS)],
        "reply_tokens": conversation.REPLY_TOKENS,
    }


def run(
    python: Path,
    model: Path,
    threads: int,
    timeout: float = 1800.0,
    job: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the worker with the peer's interpreter; its JSON result (or {"error": ...}).
    `job`: what to measure (default: `spec()`; `{"kind": "sized", ...}`: `measure_sized`)."""
    if not python.is_file():
        return {"error": f"no peer interpreter at {python} (make bench PEER=1 builds it)"}
    command = [str(python), str(Path(__file__).resolve()), "--model", str(model)]
    command += ["--threads", str(threads)]
    done = subprocess.run(
        command,
        input=json.dumps(job or spec()),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"error": f"peer exited with {done.returncode}: {done.stderr.strip()[-500:]}"}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def first_and_last(chunks: Iterable[dict[str, Any]]) -> tuple[float, float | None, float, int]:
    """(t0, first text time, last text time, text chunks) of a streamed llama-cpp call."""
    t0 = time.perf_counter()
    first: float | None = None
    last = t0
    count = 0
    for chunk in chunks:
        choice = chunk["choices"][0]
        text = choice.get("text") or (choice.get("delta") or {}).get("content") or ""
        if text:
            last = time.perf_counter()
            first = first or last
            count += 1
    return t0, first, last, count


def measure(model: Path, threads: int, job: dict[str, Any]) -> dict[str, Any]:
    from llama_cpp import Llama

    llm = Llama(
        model_path=str(model), n_ctx=2048, n_threads=threads, n_threads_batch=threads, verbose=False
    )
    greedy: dict[str, Any] = {"temperature": 0.0, "top_k": 1, "repeat_penalty": 1.0}
    rates = []
    for _ in range(3):
        llm.reset()
        chunks = llm.create_completion(
            DECODE_PROMPT, max_tokens=DECODE_TOKENS, stream=True, **greedy
        )
        _t0, first, last, count = first_and_last(chunks)
        if first is not None and last > first:
            rates.append((count - 1) / (last - first))
    long_ttfts = []
    long_tokens = 0
    for rep, prompt in enumerate(job["long_prompts"]):
        long_tokens = len(llm.tokenize(prompt.encode(), add_bos=False, special=False))
        chunks = llm.create_completion(prompt, max_tokens=4, stream=True, **greedy)
        t0, first, _last, _count = first_and_last(chunks)
        if rep and first is not None:
            long_ttfts.append(first - t0)
    runs: list[list[float]] = []
    for run_index in range(job["runs"]):
        history = [{"role": "system", "content": f"Run {run_index}. You are a patient teacher."}]
        ttfts = []
        for content in job["user_messages"]:
            messages = [*history, {"role": "user", "content": content}]
            chunks = llm.create_chat_completion(
                messages,
                max_tokens=job["reply_tokens"],
                stream=True,
                **greedy,
            )
            reply = []
            t0 = time.perf_counter()
            arrived: float | None = None
            for chunk in chunks:
                text = chunk["choices"][0]["delta"].get("content") or ""
                if text:
                    arrived = arrived or time.perf_counter()
                    reply.append(text)
            ttfts.append((arrived or time.perf_counter()) - t0)
            history = [*messages, {"role": "assistant", "content": "".join(reply)}]
        runs.append(ttfts)
    turns = [statistics.median(run[i] for run in runs) * 1000 for i in range(len(runs[0]))]
    long_ttft = statistics.median(long_ttfts)
    return {
        "llama_cpp_version": __import__("llama_cpp").__version__,
        "decode_tps": statistics.median(rates) if rates else None,
        "long_prompt_tokens": long_tokens,
        "long_prompt_ttft_ms": long_ttft * 1000,
        "long_prompt_tps": long_tokens / long_ttft,
        "turn_ttft_ms": turns,
        "ratio": turns[-1] / turns[0],
    }


def own_memory() -> dict[str, int | None]:
    """This process's RSS, its peak (VmHWM) and its anonymous part, from /proc/self/status."""
    status = Path("/proc/self/status").read_text(encoding="ascii").splitlines()
    fields = {line.split(":")[0]: line.split()[1:] for line in status}

    def size(key: str) -> int | None:
        value = fields.get(key)
        return int(value[0]) * 1024 if value else None

    return {key: size(key) for key in ("VmRSS", "VmHWM", "RssAnon", "RssFile")}


def measure_sized(model: Path, threads: int, job: dict[str, Any]) -> dict[str, Any]:
    """The 8B-size run (bench SIZE=8b, phase_8b.py): prompts given as token ids (the node's
    tokenizer made them from the chat template), each evaluated from an empty cache (`reset`),
    times from a stopping criterion that llama-cpp-python calls once per sampled token; then a
    chat through `create_chat_completion` with its own prefix reuse."""
    from llama_cpp import Llama, LogitsProcessorList, StoppingCriteriaList

    started = time.perf_counter()
    llm = Llama(
        model_path=str(model), n_ctx=2048, n_threads=threads, n_threads_batch=threads, verbose=False
    )
    load_s = time.perf_counter() - started
    greedy: dict[str, Any] = {"temperature": 0.0, "top_k": 1, "repeat_penalty": 1.0}

    def timed(call: Any, limit: int) -> dict[str, Any]:
        by_length: dict[int, float] = {}

        def stamp(ids: Any, _logits: Any) -> bool:
            # Called for each sampled token, and once more with the same ids when the
            # completion ends (llama.py's _create_completion): one time per context length.
            by_length.setdefault(len(ids), time.perf_counter())
            return False

        t0 = time.perf_counter()
        for _chunk in call(StoppingCriteriaList([stamp])):  # called as one criterion
            pass
        stamps = sorted(by_length.values())[:limit]  # the final call may see one id more
        first, last = (stamps[0], stamps[-1]) if stamps else (None, None)
        rate = None
        if first is not None and last is not None and last > first:
            rate = (len(stamps) - 1) / (last - first)
        return {
            "ttft_s": None if first is None else first - t0,
            "decode_tps": rate,
            "tokens": len(stamps),
        }

    def prompt(tokens: list[int], max_tokens: int) -> dict[str, Any]:
        llm.reset()  # no prefix reuse: every prompt evaluated whole
        result = timed(
            lambda stop: llm.create_completion(
                tokens, max_tokens=max_tokens, stream=True, stopping_criteria=stop, **greedy
            ),
            max_tokens,
        )
        return {**result, "prompt_tokens": len(tokens)}

    prompt(job["warmup"], 2)
    figures: dict[str, Any] = {
        "llama_cpp_version": __import__("llama_cpp").__version__,
        "load_s": load_s,
        "n_batch": llm.n_batch,
        "short": [prompt(tokens, job["max_tokens"]) for tokens in job["short"]],
        "long": [prompt(tokens, job["long_max_tokens"]) for tokens in job["long"]],
    }
    llm.reset()
    history: list[dict[str, str]] = [{"role": "system", "content": job["system"]}]
    turns = []
    for content in job["user_messages"]:
        messages = [*history, {"role": "user", "content": content}]
        pieces: list[str] = []

        def chat(
            stop: Any, messages: list[dict[str, str]] = messages, pieces: list[str] = pieces
        ) -> Any:
            def processor(ids: Any, scores: Any) -> Any:
                stop(ids, scores)  # create_chat_completion takes no stopping criteria
                return scores

            for chunk in llm.create_chat_completion(
                messages,
                max_tokens=job["reply_tokens"],
                stream=True,
                logits_processor=LogitsProcessorList([processor]),
                **greedy,
            ):
                pieces.append(chunk["choices"][0]["delta"].get("content") or "")
                yield chunk

        try:
            turns.append(timed(chat, job["reply_tokens"]))
        except Exception as exc:  # keep the prompt figures measured so far
            figures["chat_error"] = f"{type(exc).__name__}: {exc}"
            break
        history = [*messages, {"role": "assistant", "content": "".join(pieces)}]
    figures["chat"] = turns
    figures["memory"] = own_memory()
    return figures


def markdown(result: dict[str, Any]) -> list[str]:
    """The llama.cpp column (make bench PEER=1), next to the node's figures."""
    peer = result.get("peer")
    if not peer:
        return []
    if "error" in peer:
        return [f"Peer (llama.cpp): not measured: {peer['error']}", ""]
    long = result.get("long_prompt") or {}
    turns = (result.get("conversation") or {}).get("turns") or []
    ratio = (result.get("conversation") or {}).get("ratio") or {}
    lines = [
        "| Figure | llm-node (default) "
        f"| llama.cpp (llama-cpp-python {peer['llama_cpp_version']}) |",
        "|---|---|---|",
        f"| Decode rate (tokens/s) | {fmt(result.get('node_decode_tps'))} "
        f"| {fmt(peer['decode_tps'])} |",
        f"| ~1,000-token prompt: TTFT (ms) | {fmt(long.get('node_ttft_ms'), 0)} "
        f"| {fmt(peer['long_prompt_ttft_ms'], 0)} |",
        f"| ~1,000-token prompt: tokens/s | {fmt(long.get('node_prompt_tps'))} "
        f"| {fmt(peer['long_prompt_tps'])} |",
    ]
    for i, ttft in enumerate(peer["turn_ttft_ms"]):
        node = turns[i]["refill_ttft_ms"] if i < len(turns) else None
        lines.append(f"| Chat turn {i + 1}: TTFT (ms) | {fmt(node, 0)} | {fmt(ttft, 0)} |")
    lines += [
        f"| Turn 6 / turn 1 | {fmt(ratio.get('refill'), 2)} | {fmt(peer['ratio'], 2)} |",
        "",
        "llama.cpp: in-process (no HTTP), its default n_batch, greedy, its own prefix reuse "
        "(prompt and reply); llm-node: over HTTP.",
        "",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="llama-cpp-python figures for the bench.")
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--threads", type=int, required=True)
    args = parser.parse_args(argv)
    job = json.load(sys.stdin)
    measure_job = measure_sized if job.get("kind") == "sized" else measure
    print(json.dumps(measure_job(args.model, args.threads, job)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
