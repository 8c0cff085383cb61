"""The saved-state cache's bookkeeping: least recently used out first, within a byte budget."""

from __future__ import annotations

from llm_node.state_cache import StateCache


def state(size: int) -> bytes:
    return bytes(size)


def test_states_within_the_budget_are_all_kept() -> None:
    cache = StateCache(budget=100)
    cache.put((1, 2), state(40))
    cache.put((3, 4), state(40))
    assert (len(cache), cache.bytes) == (2, 80)


def test_the_least_recently_stored_state_is_evicted_first() -> None:
    cache = StateCache(budget=100)
    cache.put((1,), state(40))
    cache.put((2,), state(40))
    cache.put((3,), state(40))
    assert list(cache.keys()) == [(3,), (2,)]


def test_a_state_read_is_kept_over_an_older_one() -> None:
    cache = StateCache(budget=100)
    cache.put((1,), state(40))
    cache.put((2,), state(40))
    cache.get((1,))
    cache.put((3,), state(40))
    assert list(cache.keys()) == [(3,), (1,)]


def test_evictions_are_counted() -> None:
    cache = StateCache(budget=100)
    cache.put((1,), state(60))
    evicted = cache.put((2,), state(60))
    assert (evicted, cache.evictions) == (1, 1)


def test_the_bytes_held_never_exceed_the_budget() -> None:
    cache = StateCache(budget=100)
    for i in range(10):
        cache.put((i,), state(30 + i))
    assert cache.bytes <= 100
    assert cache.bytes == sum(30 + i for i in (8, 9))


def test_a_state_larger_than_the_budget_is_not_kept() -> None:
    cache = StateCache(budget=100)
    cache.put((1,), state(40))
    assert cache.put((2,), state(101)) == 0
    assert list(cache.keys()) == [(1,)]


def test_a_longer_state_of_the_same_conversation_replaces_the_shorter() -> None:
    cache = StateCache(budget=1000)
    cache.put((1, 2), state(40))
    cache.put((1, 2, 3, 4), state(80))
    assert (list(cache.keys()), cache.bytes) == ([(1, 2, 3, 4)], 80)


def test_a_replaced_state_is_not_counted_as_an_eviction() -> None:
    cache = StateCache(budget=1000)
    cache.put((1, 2), state(40))
    cache.put((1, 2, 3), state(60))
    assert cache.evictions == 0


def test_a_state_covered_by_a_longer_one_is_not_stored() -> None:
    cache = StateCache(budget=1000)
    cache.put((1, 2, 3), state(60))
    cache.put((1, 2), state(40))
    assert (list(cache.keys()), cache.bytes) == ([(1, 2, 3)], 60)


def test_covers_marks_the_covering_state_recently_used() -> None:
    cache = StateCache(budget=100)
    cache.put((1, 2, 3), state(40))
    cache.put((7,), state(40))
    assert cache.covers((1, 2))
    cache.put((8,), state(40))
    assert list(cache.keys()) == [(8,), (1, 2, 3)]


def test_a_diverging_conversation_is_kept_beside_its_branch() -> None:
    cache = StateCache(budget=1000)
    cache.put((1, 2, 3), state(60))
    cache.put((1, 2, 4), state(60))
    assert len(cache) == 2


def test_the_same_tokens_again_replace_the_state() -> None:
    cache = StateCache(budget=1000)
    cache.put((1, 2), state(40))
    cache.put((1, 2), state(50))
    assert (len(cache), cache.bytes) == (1, 50)


def test_no_tokens_no_state() -> None:
    cache = StateCache(budget=1000)
    cache.put((), state(10))
    assert len(cache) == 0


def test_supersede_drops_the_older_states_of_a_conversation() -> None:
    cache = StateCache(budget=1000)
    cache.put((1, 2), state(40))
    cache.put((5,), state(40))
    cache.supersede((1, 2, 3))
    assert (list(cache.keys()), cache.bytes) == ([(5,)], 40)
