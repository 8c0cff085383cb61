"""Exact prompt reuse: which leading tokens of a prompt the model's KV cache already holds.

A chat client re-sends the whole conversation each turn. gpt4all keeps the KV cache of the
previous call: with `n_past = k` the backend drops every cell at position >= k and evaluates
only the prompt's text after token k. The rules that keep the output token-for-token identical
to a fresh evaluation (measured, see the README's "Prompt cache" section):

1. Reuse only cells made by batches of 2+ tokens: a token decoded alone takes another numeric
   path. Generated tokens are decoded one at a time, so only the previous *prompt* is kept.
2. A fresh evaluation decodes its last token alone when S % B == 1 (S prompt tokens, B the
   batch size); the suffix's last chunk must be a lone token in exactly the same cases.
3. Cut only at a token boundary where the text after it re-tokenizes to the same tokens.
4. Never set n_past above what the backend holds (it aborts the process): the engine checks
   the backend's token list after every call and calls `invalidate` when anything is off.

Besides the live context, `plan` weighs the token lists of saved states (`saved`: see
llm_node.state_cache): the same rules apply to each, and the plan names the state to restore
when one of them gives the longest reusable prefix.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from llm_node.tokenizer import Tokenizer

# gpt4all evaluates at most LLMODEL_MAX_PROMPT_BATCH (llmodel.h:21) tokens per batch.
MAX_BATCH = 128
# How many cut points to try before giving up on reuse for one request (each re-tokenizes).
MAX_CUT_ATTEMPTS = 8


@dataclass(frozen=True)
class Plan:
    """How to evaluate one prompt: keep `reuse` cached tokens, feed `suffix` (bytes)."""

    prompt: bytes  # the whole prompt text
    special: bool  # whether special-token text is parsed (chat) or spelt out (raw completion)
    tokens: tuple[int, ...]  # the whole prompt, as the backend tokenizes it
    reuse: int = 0  # n_past to set: leading tokens kept from the cache (0 = fresh)
    offset: int = 0  # where the text after those tokens starts in `prompt`
    # The saved state to restore before evaluating (its token list), None: the live context.
    restore: tuple[int, ...] | None = None

    @property
    def suffix(self) -> bytes:
        """The text to feed: the prompt after the reused tokens."""
        return self.prompt[self.offset :]

    def fresh(self) -> Plan:
        return Plan(self.prompt, self.special, self.tokens)


class PromptCache:
    """What the context holds after the last call, and the plan for the next prompt."""

    def __init__(self, tokenizer: Tokenizer, n_batch: int, *, enabled: bool) -> None:
        self.tokenizer = tokenizer
        self.batch = min(n_batch, MAX_BATCH)
        # A batch of 1 decodes every token alone: nothing is ever reusable exactly.
        self.enabled = enabled and self.batch >= 2
        self._cached: tuple[int, ...] = ()

    @property
    def cached(self) -> tuple[int, ...]:
        return self._cached

    def invalidate(self) -> None:
        """Forget the context: the next prompt is evaluated from scratch."""
        self._cached = ()

    def plan(self, prompt: bytes, *, special: bool, saved: Iterable[tuple[int, ...]] = ()) -> Plan:
        """The plan with the longest exactly reusable prefix, of the live context or of one of
        the `saved` states (token lists; the plan then names the one to restore first). On a
        tie the live context wins: nothing to restore."""
        tokens = tuple(self.tokenizer.tokenize(prompt, special=special))
        best = Plan(prompt, special, tokens)
        if not self.enabled or len(tokens) < 2:
            return best
        candidates: list[tuple[int, tuple[int, ...] | None]] = [
            (_common(self._cached, tokens), None)
        ]
        candidates += [(_common(s, tokens), s) for s in saved if s != self._cached]
        candidates.sort(key=lambda candidate: -candidate[0])  # stable: the live context first
        offsets: list[int] | None = None
        for common, source in candidates:
            if common <= best.reuse:
                break  # a cut is never past the common prefix: no later candidate does better
            if offsets is None:
                offsets = self._offsets(prompt, tokens)
                if offsets is None:
                    return best
            k = self._cut(prompt, tokens, offsets, common, special=special)
            if k > best.reuse:
                best = Plan(prompt, special, tokens, k, offsets[k], restore=source)
        return best

    def _cut(
        self,
        prompt: bytes,
        tokens: tuple[int, ...],
        offsets: list[int],
        common: int,
        *,
        special: bool,
    ) -> int:
        """The longest reusable cut within the first `common` tokens (0: none)."""
        k = self._aligned(min(common, len(tokens) - 1), len(tokens))
        for _ in range(MAX_CUT_ATTEMPTS):
            if k <= 0:
                return 0
            if self._same_suffix(prompt[offsets[k] :], tokens, k, special=special):
                return k
            k = self._aligned(k - 1, len(tokens))
        return 0

    def restored(self, tokens: tuple[int, ...]) -> None:
        """A saved state holding `tokens` was put back into the context."""
        self._cached = tokens

    def commit(self, tokens: tuple[int, ...], held: list[int]) -> None:
        """After a call: `held` is the backend's token list. Keep the prompt's batched cells."""
        size = len(tokens)
        if len(held) < size or tuple(held[:size]) != tokens:
            self.invalidate()  # a context shift, a failed or interrupted evaluation
            return
        # Rule 2: the last prompt token was decoded alone when S % B == 1; it is not reusable.
        self._cached = tokens[: size - 1] if size % self.batch == 1 else tokens

    def keep(self, prefix: tuple[int, ...], held: list[int]) -> None:
        """After an interrupted evaluation in batches: its cells up to `prefix` are all batched
        (each batch is decoded whole before its tokens are reported), so they stay reusable."""
        if len(held) < len(prefix) or tuple(held[: len(prefix)]) != prefix:
            self.invalidate()
        else:
            self._cached = prefix

    def _aligned(self, k: int, size: int) -> int:
        """The largest cut <= k whose suffix ends in a lone token exactly when a fresh one does."""
        if k <= 0:
            return 0
        if size % self.batch == 1:
            return k - k % self.batch  # (size - k) % B == 1 <=> k % B == 0
        if (size - k) % self.batch == 1:
            return k - 1
        return k

    def _offsets(self, prompt: bytes, tokens: tuple[int, ...]) -> list[int] | None:
        """Byte offset in `prompt` of each token boundary, or None when the pieces do not spell
        the prompt (e.g. a tokenizer that inserts a leading space): then no reuse."""
        pieces = [self.tokenizer.piece(t) for t in tokens]
        if b"".join(pieces) != prompt:
            if b"".join(pieces[1:]) != prompt:
                return None
            pieces[0] = b""  # the BOS the backend adds at the start of the context
        offsets = [0]
        for piece in pieces:
            offsets.append(offsets[-1] + len(piece))
        return offsets

    def _same_suffix(
        self, suffix: bytes, tokens: tuple[int, ...], k: int, *, special: bool
    ) -> bool:
        try:
            suffix.decode("utf-8")  # a cut inside a character cannot be passed as text
        except UnicodeDecodeError:
            return False
        again = self.tokenizer.tokenize(suffix, special=special, after=tokens[k - 1])
        return tuple(again) == tokens[k:]


def _common(have: tuple[int, ...], want: tuple[int, ...]) -> int:
    """The length of the common prefix of two token lists."""
    n = 0
    for a, b in zip(have, want, strict=False):
        if a != b:
            break
        n += 1
    return n
