"""What one benchmark run does: the options, the prompt and the sampling parameters."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
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
    size: str = "tiny"  # "tiny": the phases of bench.py; "8b": phase_8b.py's (bench SIZE=8b)
    ready_timeout_s: float = 120.0  # how long a node may take to answer /ready
    node_env: dict[str, str] = field(default_factory=dict)  # more LLM_* settings of every node

    @property
    def stem(self) -> str:
        """Name of the reports and logs: bench.md, bench-node.log; SIZE=8b: bench-8b.md, ..."""
        return "bench" if self.size == "tiny" else f"bench-{self.size}"


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(description="Benchmark llm-node against raw gpt4all.")
    parser.add_argument("--model", type=Path, required=True, help="GGUF model file")
    parser.add_argument("--threads", type=int, default=2, help="gpt4all threads (both sides)")
    parser.add_argument("--out", type=Path, default=Path("reports"), help="reports directory")
    parser.add_argument("--reps", type=int, default=9, help="raw vs node pairs (minimum)")
    parser.add_argument("--max-tokens", type=int, default=96, help="tokens per raw/node run")
    parser.add_argument("--n-batch", type=int, default=None, help="default: the node's")
    parser.add_argument("--peer", type=Path, default=None, help="llama-cpp-python's python")
    parser.add_argument(
        "--size",
        choices=("tiny", "8b"),
        default="tiny",
        help="8b: the Llama 3 8B-sized phases (phase_8b.py: ~30 min on 2 cores)",
    )
    args = parser.parse_args(argv)
    if args.size == "8b":
        # A 1,000-token prompt takes minutes at this size: the default request deadline (and a
        # 2-minute wait for /ready on a busy machine) would cut it short.
        return Options(
            model=args.model,
            threads=args.threads,
            out=args.out,
            n_batch=args.n_batch,
            peer=args.peer,
            size=args.size,
            ready_timeout_s=900.0,
            # The node's generation threads run at its default nice +10, which orders them
            # behind its own event loop on a server of its own; on a shared machine it would
            # hand the CPU to the other jobs while raw gpt4all and llama.cpp run at nice 0.
            node_env={"LLM_REQUEST_TIMEOUT_SECONDS": "3600", "LLM_WORKER_NICE": "0"},
        )
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
