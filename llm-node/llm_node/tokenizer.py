"""The model's own tokenizer, called through the llama.cpp library that gpt4all 2.8.2 loaded.

gpt4all's C API has no tokenize call, but its backend library exports llama.cpp's
`llama_tokenize_gpt4all`, the function its `LLModel::prompt` tokenizes with
(gpt4all-backend/llamamodel.cpp:539-552 at python-v2.8.2). Loading the same GGUF file
vocabulary-only through that library (~150 ms, ~14 MB) tokenizes exactly as the backend does;
tests/llm_node checks it against the engine's prompt-token counts.

This relies on a copy of `struct llama_model_params` (llama.h:264-296 of gpt4all's llama.cpp
fork, commit 443665ae). That is acceptable only because gpt4all's Python binding is pinned
to 2.8.2, its last release.
"""

from __future__ import annotations

import ctypes
import functools
import logging
from pathlib import Path

log = logging.getLogger(__name__)

# llama.h: enum llama_token_attr. gpt4all's isSpecialToken() is CONTROL | USER_DEFINED | UNKNOWN.
_SPECIAL_ATTRS = (1 << 3) | (1 << 4) | (1 << 0)


class _ModelParams(ctypes.Structure):
    _fields_ = (
        ("n_gpu_layers", ctypes.c_int32),
        ("split_mode", ctypes.c_int),
        ("main_gpu", ctypes.c_int32),
        ("tensor_split", ctypes.c_void_p),
        ("rpc_servers", ctypes.c_char_p),
        ("progress_callback", ctypes.c_void_p),
        ("progress_callback_user_data", ctypes.c_void_p),
        ("kv_overrides", ctypes.c_void_p),
        ("vocab_only", ctypes.c_bool),
        ("use_mmap", ctypes.c_bool),
        ("use_mlock", ctypes.c_bool),
        ("check_tensors", ctypes.c_bool),
    )


def _cpu_has_avx2() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            return any(line.startswith("flags") and " avx2" in line for line in info)
    except OSError:
        return True


@functools.cache
def _library() -> ctypes.CDLL:
    """The backend library gpt4all picks for CPU inference (the avxonly build without AVX2)."""
    from gpt4all import _pyllmodel

    name = "libllamamodel-mainline-kompute"
    if not _cpu_has_avx2():
        name += "-avxonly"
    lib = ctypes.CDLL(str(Path(_pyllmodel.MODEL_LIB_PATH) / f"{name}.so"))
    lib.llama_model_default_params.restype = _ModelParams
    lib.llama_load_model_from_file.argtypes = (ctypes.c_char_p, _ModelParams)
    lib.llama_load_model_from_file.restype = ctypes.c_void_p
    lib.llama_free_model.argtypes = (ctypes.c_void_p,)
    lib.llama_tokenize_gpt4all.argtypes = (
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_int32,
        ctypes.POINTER(ctypes.c_int32),
        ctypes.c_int32,
        ctypes.c_bool,
        ctypes.c_bool,
        ctypes.c_bool,
    )
    lib.llama_tokenize_gpt4all.restype = ctypes.c_int32
    lib.llama_token_get_attr.argtypes = (ctypes.c_void_p, ctypes.c_int32)
    lib.llama_token_get_attr.restype = ctypes.c_int
    lib.llama_token_to_piece.argtypes = (
        ctypes.c_void_p,
        ctypes.c_int32,
        ctypes.c_char_p,
        ctypes.c_int32,
        ctypes.c_int32,
        ctypes.c_bool,
    )
    lib.llama_token_to_piece.restype = ctypes.c_int32
    return lib


class Tokenizer:
    """Tokenizes text as gpt4all's `LLModel::prompt` does, from the start or after a token."""

    def __init__(self, path: Path) -> None:
        self._lib = _library()
        params = self._lib.llama_model_default_params()
        params.vocab_only = True
        handle = self._lib.llama_load_model_from_file(str(path).encode(), params)
        if not handle:
            raise RuntimeError(f"could not load the vocabulary of {path}")
        self._model: int | None = handle
        self._pieces: dict[int, bytes] = {}

    def close(self) -> None:
        if self._model is not None:
            self._lib.llama_free_model(self._model)
            self._model = None

    def is_special(self, token: int) -> bool:
        return bool(self._lib.llama_token_get_attr(self._model, token) & _SPECIAL_ATTRS)

    def tokenize(self, text: bytes, *, special: bool, after: int | None = None) -> list[int]:
        """The tokens gpt4all feeds for `text`: at the start of the context (`after` None:
        BOS added when the vocabulary asks for it) or right after the token `after`."""
        at_start = after is None
        insert_space = after is None or self.is_special(after)
        size = len(text) + 4
        out = (ctypes.c_int32 * size)()
        n = self._lib.llama_tokenize_gpt4all(
            self._model, text, len(text), out, size, at_start, special, insert_space
        )
        if n < 0:  # cannot happen with len + 4 slots, but never read past the buffer
            raise RuntimeError("tokenizer buffer too small")
        return list(out[:n])

    def piece(self, token: int) -> bytes:
        """The bytes of one token as it appears in text (special tokens spelt out)."""
        cached = self._pieces.get(token)
        if cached is None:
            buf = ctypes.create_string_buffer(64)
            n = self._lib.llama_token_to_piece(self._model, token, buf, 64, 0, True)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = self._lib.llama_token_to_piece(self._model, token, buf, -n, 0, True)
            cached = self._pieces[token] = buf.raw[:n]
        return cached
