"""Save and restore the model state of gpt4all 2.8.2's backend, and rewrite its token list.

gpt4all's C API can copy the llama.cpp context (KV cells in use, logits, RNG) out and back in
(`llmodel_save_state_data`, `llmodel_restore_state_data`; the Python binding wraps neither).
Restoring the cells is not enough for an exact answer: the backend also reads its own token
list, `PromptContext::tokens`, a `std::vector<int32_t>` held by the C wrapper (n_past may not
exceed its length or the process aborts, the repeat penalty reads its tail, the suffix is
tokenized after its last entry). Only n_past goes in from Python, so the vector is rewritten
in place through its three pointers (measured: with the list rewritten the reply equals a fresh
evaluation; with only its length fixed it differed at repeat_penalty 1.1).

The layout this relies on is that of the pinned binary (python-v2.8.2, the last release):
`struct LLModelWrapper { LLModel *llModel; LLModel::PromptContext promptContext; }`
(llmodel_c.cpp:17-21) and `PromptContext` starts with `std::vector<int32_t> tokens`
(llmodel.h:125-126), so begin/end/capacity are the three 8-byte words at offset 8 of the model
handle. Before anything is written, begin and the length are checked against what gpt4all
copied out after the last call (`context.tokens`, `context.tokens_size`); a mismatch raises
`LayoutError` and nothing is touched. See ../shared/GPT4ALL-KV-REUSE.md.
"""

from __future__ import annotations

import ctypes
import mmap
from typing import Any, Literal

TokenList = Literal["kept", "regrown"]  # how the token list took the restored tokens

_VECTOR_OFFSET = 8  # after `LLModel *llModel`
_INT32 = ctypes.sizeof(ctypes.c_int32)


class LayoutError(RuntimeError):
    """The backend's token list is not where, or not what, the pinned layout says."""


def _declare(lib: Any) -> None:
    lib.llmodel_get_state_size.argtypes = [ctypes.c_void_p]
    lib.llmodel_get_state_size.restype = ctypes.c_uint64
    lib.llmodel_save_state_data.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.llmodel_save_state_data.restype = ctypes.c_uint64
    lib.llmodel_restore_state_data.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.llmodel_restore_state_data.restype = ctypes.c_uint64
    # libstdc++'s operator new / operator delete (the vector's allocator), found through
    # libllmodel.so's dependencies.
    lib._Znwm.argtypes = [ctypes.c_size_t]
    lib._Znwm.restype = ctypes.c_void_p
    lib._ZdlPv.argtypes = [ctypes.c_void_p]
    lib._ZdlPv.restype = None


def available() -> bool:
    """True when the loaded libllmodel exports what save and restore need."""
    from gpt4all import _pyllmodel

    lib = _pyllmodel.llmodel
    names = (
        "llmodel_get_state_size",
        "llmodel_save_state_data",
        "llmodel_restore_state_data",
        "_Znwm",
        "_ZdlPv",
    )
    return all(hasattr(lib, name) for name in names)


class BackendState:
    """Save/restore for one loaded model: `llmodel` is the binding's `LLModel`."""

    def __init__(self, llmodel: Any) -> None:
        from gpt4all import _pyllmodel

        self._lib = _pyllmodel.llmodel
        if ctypes.sizeof(ctypes.c_void_p) != 8:
            raise LayoutError("the token list's layout is known for 64-bit builds only")
        _declare(self._lib)
        self._llmodel = llmodel

    @property
    def _handle(self) -> int:
        handle: int = self._llmodel.model
        return handle

    def save(self) -> bytes:
        """The backend's state now: only the bytes written (the cells in use), copied out."""
        size = int(self._lib.llmodel_get_state_size(self._handle))  # for a full context
        # An anonymous mapping: the pages the backend does not write are never allocated, so the
        # maximum size (hundreds of MB) costs address space, not memory.
        with mmap.mmap(-1, size) as scratch:
            buffer = (ctypes.c_char * size).from_buffer(scratch)
            try:
                written = int(
                    self._lib.llmodel_save_state_data(self._handle, ctypes.addressof(buffer))
                )
                if not 0 < written <= size:
                    raise RuntimeError(f"the backend wrote {written} bytes of state (max {size})")
                return ctypes.string_at(ctypes.addressof(buffer), written)
            finally:
                del buffer  # the mapping cannot close while a ctypes view exports it

    def restore(self, data: bytes, tokens: tuple[int, ...]) -> TokenList:
        """Put a saved state back and make the backend's token list `tokens` (the tokens whose
        cells the state holds, at least as many as the next n_past). Raises LayoutError before
        touching anything when the token list is not where the pinned layout puts it."""
        words = self._vector_words()
        read = int(self._lib.llmodel_restore_state_data(self._handle, data))
        if read != len(data):
            raise RuntimeError(f"the backend read {read} of {len(data)} bytes of state")
        return self._write_tokens(words, tokens)

    def _vector_words(self) -> ctypes.Array[ctypes.c_uint64]:
        context = self._llmodel.context
        if context is None:
            raise LayoutError("no call has returned yet: gpt4all copied out no token list")
        words = (ctypes.c_uint64 * 3).from_address(self._handle + _VECTOR_OFFSET)
        begin, end, capacity = words
        copied = ctypes.cast(context.tokens, ctypes.c_void_p).value or 0
        if begin != copied or end - begin != _INT32 * context.tokens_size or capacity < end:
            raise LayoutError(
                "the backend's token list is not at the pinned offset "
                f"(begin {begin:#x}, gpt4all copied out {copied:#x})"
            )
        return words

    def _write_tokens(
        self, words: ctypes.Array[ctypes.c_uint64], tokens: tuple[int, ...]
    ) -> TokenList:
        begin, _, capacity = words
        size = _INT32 * len(tokens)
        values = (ctypes.c_int32 * len(tokens))(*tokens)
        how: TokenList = "kept"
        if begin and size <= capacity - begin:
            ctypes.memmove(begin, values, size)
        else:
            grown = self._lib._Znwm(max(size, _INT32))
            if not grown:
                raise MemoryError("operator new returned null")
            ctypes.memmove(grown, values, size)
            if begin:
                self._lib._ZdlPv(begin)
            begin = grown
            words[0] = begin
            words[2] = begin + max(size, _INT32)
            how = "regrown"
        words[1] = begin + size
        # What gpt4all copies out after a call, so the next check and n_past's bound hold.
        context = self._llmodel.context
        context.tokens = ctypes.cast(begin, ctypes.POINTER(ctypes.c_int32))
        context.tokens_size = len(tokens)
        return how
