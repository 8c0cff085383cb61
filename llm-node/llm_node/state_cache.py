"""Saved model states, least recently used out first, within a memory budget.

Each entry is the backend's state (`llm_node.backend_state`) with the tokens whose cells it
holds reusably (what the prompt cache kept after the call that produced it). A state whose
tokens are a prefix of a newer one's holds nothing the newer does not (the same cells, made by
batches: the prompt cache's rules make them interchangeable), so it is dropped when the newer
one is stored: one conversation keeps one entry, its latest.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

Tokens = tuple[int, ...]


def _is_prefix(short: Tokens, long: Tokens) -> bool:
    return len(short) <= len(long) and long[: len(short)] == short


class StateCache:
    """Token lists -> saved states; the total size of the states stays within `budget` bytes."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._states: OrderedDict[Tokens, bytes] = OrderedDict()  # least recently used first
        self.bytes = 0  # the size of every state held
        self.evictions = 0  # states dropped to stay within the budget

    def __len__(self) -> int:
        return len(self._states)

    def __contains__(self, tokens: object) -> bool:
        return tokens in self._states

    def keys(self) -> Iterator[Tokens]:
        """The token lists of the states held, most recently used first."""
        return reversed(self._states)

    def get(self, tokens: Tokens) -> bytes | None:
        """The state saved for exactly `tokens` (now the most recently used), or None."""
        data = self._states.get(tokens)
        if data is not None:
            self._states.move_to_end(tokens)
        return data

    def covers(self, tokens: Tokens) -> bool:
        """True when a state held starts with `tokens` (it becomes the most recently used)."""
        for held in self._states:
            if _is_prefix(tokens, held):
                self._states.move_to_end(held)
                return True
        return False

    def supersede(self, tokens: Tokens) -> None:
        """Drop the states whose tokens `tokens` starts with: a state of `tokens` is about to
        be saved (dropped first, so that two copies of a long conversation never coexist)."""
        for held in [h for h in self._states if _is_prefix(h, tokens)]:
            self._drop(held)

    def put(self, tokens: Tokens, data: bytes) -> int:
        """Keep `data` as the state of `tokens`; returns how many states the budget evicted.

        A state larger than the whole budget is not kept. A state whose tokens are a prefix of
        one already held is not kept either (that one is touched instead)."""
        if not tokens:
            return 0
        for held in self._states:
            if held != tokens and _is_prefix(tokens, held):
                self._states.move_to_end(held)
                return 0
        self.supersede(tokens)  # (or replace, for the same tokens)
        if len(data) > self.budget:
            return 0
        self._states[tokens] = data
        self.bytes += len(data)
        evicted = 0
        while self.bytes > self.budget:
            oldest = next(iter(self._states))
            self._drop(oldest)
            evicted += 1
        self.evictions += evicted
        return evicted

    def clear(self) -> None:
        self._states.clear()
        self.bytes = 0

    def _drop(self, tokens: Tokens) -> None:
        self.bytes -= len(self._states.pop(tokens))
