"""What a generation request asks for and what the engine's worker reports back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FinishReason = Literal["stop", "length"]
FailureKind = Literal[
    "cancelled",
    "deadline",
    # Refused before evaluation: at the measured rates the request cannot finish in time, even
    # with the whole deadline (`_alone`) or in what its wait in the queue left of it (`_queued`).
    "deadline_unreachable_alone",
    "deadline_unreachable_queued",
    "context_length_exceeded",
    "shutdown",
    "internal",
]


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 40
    repeat_penalty: float = 1.1
    repeat_last_n: int = 64
    stop: tuple[str, ...] = ()
    # False: max_tokens is the server's default, and generation is capped to what fits in the
    # context window; True: the client asked for it, and a prompt + max_tokens that does not
    # fit fails with context_length_exceeded before anything is evaluated.
    max_tokens_explicit: bool = False


@dataclass(frozen=True)
class Delta:
    text: str


@dataclass(frozen=True)
class Finished:
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0  # prompt tokens reused from the KV cache (not evaluated again)


@dataclass(frozen=True)
class Failed:
    kind: FailureKind
    message: str
    prompt_tokens: int = 0  # context_length_exceeded: the whole prompt's token count
    requested_tokens: int = 0  # context_length_exceeded: max_tokens asked for (0: not asked)
    estimated_seconds: float = 0.0  # deadline_unreachable_*: the estimate at the measured rates
    remaining_seconds: float = 0.0  # deadline_unreachable_*: what was left of the deadline


Event = Delta | Finished | Failed
