"""The prompt-cache phases as one bench phase: long prompts and a 6-turn conversation
(conversation.py), and with ``--peer`` (``make bench PEER=1``) llama.cpp itself (peer.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import conversation
import peer
from phase import Run
from processes import Node


async def phase_conversation(run: Run) -> dict[str, Any]:
    opts = run.opts
    with (opts.out / "bench-conversation.log").open("w", encoding="utf-8") as log_file:
        figures = await asyncio.to_thread(
            conversation.run,
            run.node.url,
            run.raw.call,
            run.n_batch,
            lambda: Node(opts, log_file),
        )
    if opts.peer is not None:
        figures["peer"] = await asyncio.to_thread(peer.run, opts.peer, opts.model, opts.threads)
        raw_vs_node = run.phases.get("raw_vs_node") or {}
        figures["node_decode_tps"] = (raw_vs_node.get("node") or {}).get("decode_tps_median")
    return figures


def describe_conversation(figures: dict[str, Any], _env: dict[str, Any]) -> list[str]:
    return conversation.markdown(figures).splitlines()
