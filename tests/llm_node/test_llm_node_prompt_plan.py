"""The prompt cache's planning rules, with the model's real tokenizer (nothing is evaluated)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from llm_node.prompt_cache import PromptCache
from llm_node.tokenizer import Tokenizer

BASE = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is a bee?<|im_end|>\n"


@pytest.fixture(scope="module")
def tokenizer(tiny_model: Path) -> Iterator[Tokenizer]:
    tok = Tokenizer(tiny_model)
    yield tok
    tok.close()


def cache_after(tokenizer: Tokenizer, prompt: str, n_batch: int = 16) -> PromptCache:
    """A cache that has just evaluated `prompt` successfully."""
    cache = PromptCache(tokenizer, n_batch, enabled=True)
    tokens = cache.plan(prompt.encode(), special=True).tokens
    cache.commit(tokens, [*tokens, 42, 43])  # the backend holds the prompt and a reply
    return cache


# Follow-ups of BASE of many lengths, so that both S % 16 == 1 and the other cases occur.
FOLLOW_UPS = [BASE + "<|im_start|>user\n" + " ".join(["bee"] * n) for n in range(1, 33)]


@pytest.mark.parametrize("prompt", FOLLOW_UPS)
def test_the_suffix_ends_in_a_lone_token_exactly_when_a_fresh_prompt_does(
    tokenizer: Tokenizer, prompt: str
) -> None:
    plan = cache_after(tokenizer, BASE).plan(prompt.encode(), special=True)
    size = len(plan.tokens)
    assert plan.reuse > 0 and ((size - plan.reuse) % 16 == 1) == (size % 16 == 1)


@pytest.mark.parametrize("prompt", FOLLOW_UPS)
def test_the_suffix_re_tokenizes_to_the_prompts_own_tokens(
    tokenizer: Tokenizer, prompt: str
) -> None:
    plan = cache_after(tokenizer, BASE).plan(prompt.encode(), special=True)
    again = tokenizer.tokenize(plan.suffix, special=True, after=plan.tokens[plan.reuse - 1])
    assert tuple(again) == plan.tokens[plan.reuse :]


def test_a_lone_last_prompt_token_is_not_kept(tokenizer: Tokenizer) -> None:
    prompt = next(
        p for p in FOLLOW_UPS if len(tokenizer.tokenize(p.encode(), special=True)) % 16 == 1
    )
    cache = cache_after(tokenizer, prompt)
    assert len(cache.cached) == len(tokenizer.tokenize(prompt.encode(), special=True)) - 1


def test_at_least_one_token_is_always_evaluated(tokenizer: Tokenizer) -> None:
    plan = cache_after(tokenizer, BASE).plan(BASE.encode(), special=True)
    assert len(plan.tokens) - plan.reuse > 0 and plan.suffix


def test_a_cut_never_splits_a_character(tokenizer: Tokenizer) -> None:
    # Multi-byte characters that byte-level BPE splits across tokens.
    first = "<|im_start|>user\n" + "日本語のテキスト " * 8
    plan = cache_after(tokenizer, first).plan((first + "もっと").encode(), special=True)
    assert plan.suffix.decode("utf-8")


def test_a_context_that_does_not_hold_the_prompt_invalidates(tokenizer: Tokenizer) -> None:
    cache = cache_after(tokenizer, BASE)
    tokens = cache.plan(BASE.encode(), special=True).tokens
    cache.commit(tokens, list(tokens[:5]))  # e.g. after a context shift
    assert cache.cached == ()


def test_off_never_reuses(tokenizer: Tokenizer) -> None:
    cache = PromptCache(tokenizer, 16, enabled=False)
    tokens = cache.plan(BASE.encode(), special=True).tokens
    cache.commit(tokens, list(tokens))
    assert cache.plan((BASE + "more").encode(), special=True).reuse == 0


def test_a_batch_of_one_never_reuses(tokenizer: Tokenizer) -> None:
    assert (
        cache_after(tokenizer, BASE, n_batch=1).plan((BASE + "x").encode(), special=True).reuse == 0
    )


OTHER = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhy do owls hoot at night?"
FOLLOW_UP = "<|im_end|>\n<|im_start|>assistant\nTo talk.<|im_end|>\n<|im_start|>user\nAnd?"


def kept(tokenizer: Tokenizer, prompt: str) -> tuple[int, ...]:
    """The token list a saved state of `prompt` holds (what the cache keeps after it)."""
    return cache_after(tokenizer, prompt).cached


def test_a_saved_state_with_a_longer_prefix_is_chosen(tokenizer: Tokenizer) -> None:
    saved = kept(tokenizer, OTHER)
    plan = cache_after(tokenizer, BASE).plan(
        (OTHER + FOLLOW_UP).encode(), special=True, saved=[saved]
    )
    assert plan.restore == saved


def test_a_restored_plan_reuses_more_than_the_live_context_could(tokenizer: Tokenizer) -> None:
    prompt = (OTHER + FOLLOW_UP).encode()
    live = cache_after(tokenizer, BASE)
    plan = live.plan(prompt, special=True, saved=[kept(tokenizer, OTHER)])
    assert plan.reuse > live.plan(prompt, special=True).reuse


def test_a_restored_plan_keeps_the_cut_rules(tokenizer: Tokenizer) -> None:
    plan = cache_after(tokenizer, BASE).plan(
        (OTHER + FOLLOW_UP).encode(), special=True, saved=[kept(tokenizer, OTHER)]
    )
    again = tokenizer.tokenize(plan.suffix, special=True, after=plan.tokens[plan.reuse - 1])
    assert tuple(again) == plan.tokens[plan.reuse :]


def test_the_live_context_wins_a_tie(tokenizer: Tokenizer) -> None:
    live = cache_after(tokenizer, OTHER)
    plan = live.plan((OTHER + FOLLOW_UP).encode(), special=True, saved=[kept(tokenizer, OTHER)])
    assert (plan.restore, plan.reuse > 0) == (None, True)


def test_a_saved_state_sharing_less_is_not_restored(tokenizer: Tokenizer) -> None:
    live = cache_after(tokenizer, OTHER)
    plan = live.plan((OTHER + FOLLOW_UP).encode(), special=True, saved=[kept(tokenizer, BASE)])
    assert plan.restore is None


def test_no_cache_no_saved_state_is_restored(tokenizer: Tokenizer) -> None:
    cache = PromptCache(tokenizer, 16, enabled=False)
    plan = cache.plan((OTHER + FOLLOW_UP).encode(), special=True, saved=[kept(tokenizer, OTHER)])
    assert (plan.restore, plan.reuse) == (None, 0)
