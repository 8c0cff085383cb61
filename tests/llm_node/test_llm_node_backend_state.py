"""Save/restore on the real gpt4all 2.8.2 backend, both ways the token list takes a state.

The server can hardly reach the "regrown" path on its own: the backend's token list never
shrinks, so any state it saved once fitted. A second model instance that only ever held a short
prompt can: a long prompt's state saved on the first instance is restored into it. After the
restore, each instance continues the same text as the first did straight after evaluating it
(repeat_penalty 1.1 reads the token list); all three continuations must be equal.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from llm_node.backend_state import BackendState, LayoutError

pytestmark = pytest.mark.slow

LONG = b"Once upon a time, in a small village by the sea, there lived an old fisherman. " * 6
SHORT = b"Hello there."
SUFFIX = b" One morning, he"


def load(model: Path) -> Any:
    from gpt4all import GPT4All

    return GPT4All(
        model.name,
        model_path=model.parent,
        allow_download=False,
        device="cpu",
        n_threads=1,
        n_ctx=512,
    )


def prompt(llmodel: Any, text: bytes, n_past: int, n_predict: int) -> list[int]:
    """Evaluate `text` after the first `n_past` cached tokens; the greedy token ids generated."""
    from gpt4all import _pyllmodel

    ids: list[int] = []

    def on_response(token_id: int, _piece: bytes) -> bool:
        ids.append(token_id)
        return len(ids) < n_predict

    llmodel._set_context(
        n_predict=n_predict,
        top_k=1,
        temp=1.0,
        n_batch=16,
        repeat_penalty=1.1,
        repeat_last_n=64,
        reset_context=True,
    )
    llmodel.context.n_past = n_past
    _pyllmodel.llmodel.llmodel_prompt(
        llmodel.model,
        ctypes.c_char_p(text),
        ctypes.c_char_p(b"%1%2"),
        _pyllmodel.PromptCallback(lambda _token_id: True),
        _pyllmodel.ResponseCallback(on_response),
        False,
        llmodel.context,
        False,
        ctypes.c_char_p(),
    )
    return ids


def held(llmodel: Any) -> tuple[int, ...]:
    context = llmodel.context
    return tuple(context.tokens[: context.tokens_size])


@pytest.fixture(scope="module")
def saved(tiny_model: Path) -> Iterator[dict[str, Any]]:
    """The first instance: LONG evaluated and saved, then continued with SUFFIX."""
    first = load(tiny_model)
    prompt(first.model, LONG, 0, 0)
    tokens = held(first.model)
    data = BackendState(first.model).save()
    expected = prompt(first.model, SUFFIX, len(tokens), 12)
    yield {"first": first, "tokens": tokens, "data": data, "expected": expected}
    first.close()


@pytest.fixture(scope="module")
def second(tiny_model: Path) -> Iterator[Any]:
    model = load(tiny_model)
    yield model
    model.close()


def test_a_model_that_never_answered_refuses_a_restore(second: Any, saved: dict[str, Any]) -> None:
    with pytest.raises(LayoutError):
        BackendState(second.model).restore(saved["data"], saved["tokens"])


def test_a_restore_into_a_shorter_token_list_regrows_it(second: Any, saved: dict[str, Any]) -> None:
    prompt(second.model, SHORT, 0, 0)
    how = BackendState(second.model).restore(saved["data"], saved["tokens"])
    assert how == "regrown"
    assert held(second.model) == saved["tokens"]
    assert prompt(second.model, SUFFIX, len(saved["tokens"]), 12) == saved["expected"]


def test_a_restore_into_a_long_enough_token_list_writes_it_in_place(
    saved: dict[str, Any],
) -> None:
    first = saved["first"].model
    prompt(first, SHORT, 0, 0)  # the list shrinks to a few tokens; its buffer does not
    how = BackendState(first).restore(saved["data"], saved["tokens"])
    assert how == "kept"
    assert held(first) == saved["tokens"]
    assert prompt(first, SUFFIX, len(saved["tokens"]), 12) == saved["expected"]


def test_only_the_bytes_in_use_are_saved(saved: dict[str, Any]) -> None:
    from gpt4all import _pyllmodel

    # The maximum is for a full context; the saved copy holds about 24 KB per token here.
    maximum = _pyllmodel.llmodel.llmodel_get_state_size(saved["first"].model.model)
    assert len(saved["data"]) < maximum / 2
