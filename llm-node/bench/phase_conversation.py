"""The prompt-cache phases as one bench phase: long prompts and a 6-turn conversation
(conversation.py), and with ``--peer`` (``make bench PEER=1``) llama.cpp itself (peer.py).
Their targets are rows of targets.py's TARGETS (phase "conversation")."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import conversation
import peer
from phase import Run
from processes import Node


async def phase_conversation(run: Run) -> dict[str, Any]:
    opts = run.opts
    with contextlib.ExitStack() as logs:

        def start_node(variant: str) -> Node:
            # One log per node (bench-conversation-refill.log, ...): their lines do not say
            # which node wrote them.
            path = opts.out / f"bench-conversation-{variant}.log"
            return Node(opts, logs.enter_context(path.open("w", encoding="utf-8")))

        figures = await asyncio.to_thread(
            conversation.run, run.node.url, run.raw.call, run.n_batch, start_node
        )
    if opts.peer is not None:
        figures["peer"] = await asyncio.to_thread(peer.run, opts.peer, opts.model, opts.threads)
        raw_vs_node = run.phases.get("raw_vs_node") or {}
        figures["node_decode_tps"] = (raw_vs_node.get("node") or {}).get("decode_tps_median")
    return figures


def describe_conversation(figures: dict[str, Any], _env: dict[str, Any]) -> list[str]:
    return conversation.markdown(figures).splitlines()
