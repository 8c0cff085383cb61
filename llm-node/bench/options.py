"""What one benchmark run does: the options, the prompt and the sampling parameters."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
LLM_NODE_DIR = HERE.parent  # llm-node/, the directory that holds the llm_node package

# One fixed prompt that the tiny model continues well past max_tokens without an end token.
PROMPT = "Once upon a time, in a small village by the sea,"
SHORT_PROMPT = "Hello,"

# Greedy decoding with the node's own defaults for everything else; the raw side gets the very
# same values, so both run the same computation (the outputs are compared to prove it).
SAMPLING: dict[str, Any] = {
    "temperature": 0.0,
    "top_p": 0.95,
    "top_k": 40,
    "repeat_penalty": 1.1,
    "repeat_last_n": 64,
}


@dataclass
class Options:
    model: Path
    threads: int
    out: Path
    reps: int = 9
    raw_budget_s: float = 60.0
    phase_timeout_s: float = 600.0  # a hung node fails the run instead of blocking it
    max_tokens: int = 96
    sweep_levels: tuple[int, ...] = (1, 4, 16)
    sweep_requests: int = 8
    sweep_max_tokens: int = 32
    queue_size: int = 8
    burst_clients: int = 50
    bursts: int = 3
    disconnect_trials: int = 5
    n_batch: int | None = None
    peer: Path | None = None  # the peer's Python (llama-cpp-python), see peer.py


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(description="Benchmark llm-node against raw gpt4all.")
    parser.add_argument("--model", type=Path, required=True, help="GGUF model file")
    parser.add_argument("--threads", type=int, default=2, help="gpt4all threads (both sides)")
    parser.add_argument("--out", type=Path, default=Path("reports"), help="reports directory")
    parser.add_argument("--reps", type=int, default=9, help="raw vs node pairs (minimum)")
    parser.add_argument("--max-tokens", type=int, default=96, help="tokens per raw/node run")
    parser.add_argument("--n-batch", type=int, default=None, help="default: the node's")
    parser.add_argument("--peer", type=Path, default=None, help="llama-cpp-python's python")
    args = parser.parse_args(argv)
    if not args.model.is_file():
        parser.error(f"no such model file: {args.model} (run `make model`)")
    return Options(
        model=args.model,
        threads=args.threads,
        out=args.out,
        reps=args.reps,
        max_tokens=args.max_tokens,
        n_batch=args.n_batch,
        peer=args.peer,
    )
