"""Admission by measured speed: a request that cannot finish before its deadline is refused
before anything of it is evaluated, instead of running until the deadline cuts it off.

    estimate = uncached prompt tokens / prompt rate + new tokens / decode rate

The rates are this node's own, measured on its last finished generations (`Rates`); the new
tokens are `max_tokens` capped to what fits in the context window (the answer may stop
earlier, so the estimate is the request's worst case at the measured speed). Before any
generation has been measured a rate is unknown and its term counts 0: a request is refused
only when what is known already exceeds the time it has left.

At Llama 3 8B's size (the 8B-shaped stand-in of issue 15, 2-core build machine, 2 threads,
2026-12) a node measures about 6.2 prompt tokens/s and 3.1-3.4 decode tokens/s: 1,000 fresh
prompt tokens and 256 new ones are about 160 s + 80 s.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

# Generations the rates are averaged over: recent enough to follow a change of load, enough
# of them that one odd request (a stall, a one-token answer) does not swing them.
WINDOW = 16


@dataclass(frozen=True)
class Estimate:
    """The time one request needs at the measured rates, and what it was computed from."""

    uncached_tokens: int
    new_tokens: int
    prompt_rate: float | None  # tokens/s; None: not measured yet
    decode_rate: float | None

    @property
    def seconds(self) -> float:
        prompt = self.uncached_tokens / self.prompt_rate if self.prompt_rate else 0.0
        decode = self.new_tokens / self.decode_rate if self.decode_rate else 0.0
        return prompt + decode

    def describe(self) -> str:
        """E.g. "812 uncached prompt tokens at 6.2 tokens/s and up to 1024 new tokens at 3.3
        tokens/s take about 441 s"."""
        parts = []
        if self.uncached_tokens and self.prompt_rate:
            parts.append(
                f"{self.uncached_tokens} uncached prompt tokens at {self.prompt_rate:.1f} tokens/s"
            )
        if self.new_tokens and self.decode_rate:
            parts.append(f"up to {self.new_tokens} new tokens at {self.decode_rate:.1f} tokens/s")
        return f"{' and '.join(parts)} take about {self.seconds:.0f} s"


class _Rate:
    """Tokens per second over the last WINDOW measurements (total tokens / total seconds)."""

    def __init__(self) -> None:
        self._samples: collections.deque[tuple[int, float]] = collections.deque(maxlen=WINDOW)

    def add(self, tokens: int, seconds: float) -> None:
        if tokens > 0 and seconds > 0:
            self._samples.append((tokens, seconds))

    @property
    def value(self) -> float | None:
        samples = tuple(self._samples)
        seconds = sum(s for _, s in samples)
        return sum(t for t, _ in samples) / seconds if seconds > 0 else None


class Rates:
    """This node's measured prompt and decode speeds (used on the engine's worker thread)."""

    def __init__(self) -> None:
        self._prompt = _Rate()
        self._decode = _Rate()

    def record_prompt(self, tokens: int, seconds: float) -> None:
        """`tokens` prompt tokens evaluated in `seconds` (cached tokens excluded)."""
        self._prompt.add(tokens, seconds)

    def record_decode(self, tokens: int, seconds: float) -> None:
        """`tokens` generated in `seconds` after the first one."""
        self._decode.add(tokens, seconds)

    @property
    def prompt_rate(self) -> float | None:
        return self._prompt.value

    @property
    def decode_rate(self) -> float | None:
        return self._decode.value

    def estimate(self, uncached_tokens: int, new_tokens: int) -> Estimate:
        return Estimate(uncached_tokens, new_tokens, self.prompt_rate, self.decode_rate)
