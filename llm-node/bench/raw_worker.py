"""The "raw" side of the benchmark: gpt4all in-process, in a process of its own.

bench.py starts this file as a subprocess, so the raw figures come from a process that shares
nothing with llm-node (no event loop, no HTTP, no metrics) and can be measured alone:

    python raw_worker.py --model FILE --threads N

It loads the model once (``GPT4All(path, allow_download=False, device="cpu", n_threads=N)``),
prints one JSON line ``{"ready": true, ...}`` and then answers one JSON command per stdin line
with one JSON line on stdout:

- ``{"cmd": "generate", "prompt": ..., "max_tokens": ..., "temp": ..., ...}`` runs one streaming
  generation, as ``GPT4All.generate(..., streaming=True)`` does, and returns its timings;
- ``{"cmd": "memory"}`` returns the resident set size now and at its peak;
- ``{"cmd": "quit"}`` exits.

The protocol uses a private copy of the original stdout: file descriptor 1 itself is pointed at
stderr, so nothing the native library prints can corrupt the JSON stream.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import IO, Any

import psutil
from stats import peak_rss_bytes


def memory() -> dict[str, Any]:
    return {
        "rss_bytes": psutil.Process().memory_info().rss,
        "peak_rss_bytes": peak_rss_bytes(os.getpid()),
    }


def generate(model: Any, request: dict[str, Any]) -> dict[str, Any]:
    """One streaming generation, timed the way a caller of the streaming API sees it.

    ``t0`` is taken just before the generation is started; each token's arrival is the moment the
    generator yields it to this (consuming) thread. Tokens are counted by a callback, which
    gpt4all calls once per generated token on its generating thread.
    """
    token_ids: list[int] = []
    token_times: list[float] = []

    def count(token_id: int, _text: str) -> bool:
        token_ids.append(token_id)
        token_times.append(time.perf_counter())
        return True

    arrivals: list[float] = []
    pieces: list[str] = []
    t0 = time.perf_counter()
    # What GPT4All.generate(streaming=True) does outside a chat session, except for the prompt
    # template: generate() passes "%1", with which gpt4all appends "\n\n" to the prompt, while
    # llm-node passes "%1%2" (the prompt as is). Same template, same tokens, same work.
    stream = model.model.prompt_model_streaming(
        request["prompt"],
        request.get("template", "%1%2"),
        count,
        n_predict=int(request["max_tokens"]),
        temp=float(request["temp"]),
        top_k=int(request["top_k"]),
        top_p=float(request["top_p"]),
        min_p=float(request["min_p"]),
        repeat_penalty=float(request["repeat_penalty"]),
        repeat_last_n=int(request["repeat_last_n"]),
        n_batch=int(request["n_batch"]),
        reset_context=True,
        special=bool(request.get("special", False)),  # parse special tokens (chat templates)
    )
    for piece in stream:
        if piece:
            arrivals.append(time.perf_counter())
            pieces.append(piece)
    t_end = time.perf_counter()
    return {
        "t0": t0,
        "first": arrivals[0] if arrivals else None,
        "last": arrivals[-1] if arrivals else None,
        "end": t_end,
        "tokens": len(token_ids),
        # when the generating thread produced the first and the last token (callback times)
        "first_token": token_times[0] if token_times else None,
        "last_token": token_times[-1] if token_times else None,
        "chunks": len(arrivals),
        "text": "".join(pieces),
    }


def serve(model: Any, commands: IO[str], replies: IO[str]) -> None:
    for line in commands:
        if not line.strip():
            continue
        request = json.loads(line)
        command = request.get("cmd")
        reply: dict[str, Any]
        if command == "generate":
            reply = generate(model, request)
        elif command == "memory":
            reply = memory()
        elif command == "quit":
            return
        else:
            reply = {"error": f"unknown command {command!r}"}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--threads", type=int, required=True)
    args = parser.parse_args(argv)

    # Keep a private handle on the real stdout for the protocol; send fd 1 to stderr.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())

    from gpt4all import GPT4All  # imported here: its loader prints to fd 1 and 2

    t0 = time.perf_counter()
    model = GPT4All(str(args.model), allow_download=False, device="cpu", n_threads=args.threads)
    load_seconds = time.perf_counter() - t0
    replies.write(json.dumps({"ready": True, "load_seconds": load_seconds, **memory()}) + "\n")
    replies.flush()
    serve(model, sys.stdin, replies)
    return 0


if __name__ == "__main__":
    sys.exit(main())
