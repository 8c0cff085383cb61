"""The model's own tokenizer, called through the llama.cpp library that gpt4all 2.8.2 loaded.

gpt4all's C API has no tokenize call, but its backend library exports llama.cpp's
`llama_tokenize_gpt4all`, the function its `LLModel::prompt` tokenizes with
(gpt4all-backend/llamamodel.cpp:539-552 at python-v2.8.2). Loading the same GGUF file
vocabulary-only through that library (~150 ms, ~14 MB) tokenizes exactly as the backend does;
tests/llm_node checks it against the engine's prompt-token counts. The engine borrows the
vocabulary gpt4all itself loaded (`Tokenizer.of_gpt4all`, through the layout of gpt4all's
objects) instead of loading it a second time; the same vocabulary gives the chat format its
special tokens and template (`llama_model_meta_val_str`, `llama_token_get_text`), so start-up
parses no tokenizer array in Python.

llama.cpp logs through one callback per library. gpt4all installs its own when it constructs a
model (errors only, unless GPT4ALL_VERBOSE_LLAMACPP is set); without one the library prints
every load's metadata dump to stderr. This module routes it to Python logging instead (the
dump at DEBUG), when the library is first used and before each vocabulary-only load.

This relies on a copy of `struct llama_model_params` (llama.h:264-296 of gpt4all's llama.cpp
fork, commit 443665ae) and on the layout of gpt4all's C++ objects (checked field by field
before use). That is acceptable only because gpt4all's Python binding is pinned to 2.8.2, its
last release; tests/llm_node/test_llm_node_startup.py fails if either stops holding.
"""

from __future__ import annotations

import ctypes
import functools
import logging
from pathlib import Path

log = logging.getLogger(__name__)

# ggml.h: enum ggml_log_level.
_LOG_LEVELS = {2: logging.ERROR, 3: logging.WARNING}  # INFO (4) and DEBUG (5) go to DEBUG

# llama.h: enum llama_token_attr. gpt4all's isSpecialToken() is CONTROL | USER_DEFINED | UNKNOWN.
_CONTROL_OR_USER_DEFINED = (1 << 3) | (1 << 4)  # GGUF token types 3 and 4
_SPECIAL_ATTRS = _CONTROL_OR_USER_DEFINED | (1 << 0)


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


_LogCallback = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
llama_log = logging.getLogger("llm_node.llama_cpp")


def _forward_log(level: int, text: bytes | None, _user_data: int | None) -> None:
    message = (text or b"").decode("utf-8", errors="replace").rstrip("\n")
    python_level = _LOG_LEVELS.get(level, logging.DEBUG)
    if message.strip() and llama_log.isEnabledFor(python_level):
        llama_log.log(python_level, message)


# Referenced for the life of the process: the library keeps the bare function pointer.
_LOG_FORWARDER = _LogCallback(_forward_log)


@functools.cache
def _library() -> ctypes.CDLL:
    """The backend library gpt4all picks for CPU inference (the avxonly build without AVX2)."""
    from gpt4all import _pyllmodel

    name = "libllamamodel-mainline-kompute"
    if not _cpu_has_avx2():
        name += "-avxonly"
    lib = ctypes.CDLL(str(Path(_pyllmodel.MODEL_LIB_PATH) / f"{name}.so"))
    lib.llama_log_set.argtypes = (_LogCallback, ctypes.c_void_p)
    lib.llama_log_set.restype = None
    lib.llama_log_set(_LOG_FORWARDER, None)  # again before each load: gpt4all sets its own
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
    lib.llama_token_get_text.argtypes = (ctypes.c_void_p, ctypes.c_int32)
    lib.llama_token_get_text.restype = ctypes.c_char_p
    lib.llama_n_vocab.argtypes = (ctypes.c_void_p,)
    lib.llama_n_vocab.restype = ctypes.c_int32
    lib.llama_model_meta_val_str.argtypes = (
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_size_t,
    )
    lib.llama_model_meta_val_str.restype = ctypes.c_int32
    return lib


# Where gpt4all 2.8.2 keeps its llama_model (python-v2.8.2 sources). The C handle is an
# `LLModelWrapper *` whose first member is the `LLModel *` (llmodel_c.cpp:17-21). LLModel holds
# a vtable pointer, `m_implementation`, `m_progressCallback` (a 32-byte std::function) and
# `m_tokenize_last_token` (llmodel.h:237-255), so LLamaModel's `d_ptr` is at 56
# (llamamodel_impl.h:48). LLamaPrivate (llamamodel.cpp:243-255) is `modelPath` (std::string,
# never set: empty), `modelLoaded` (bool at 32), `device` (int at 36, -1 on the CPU),
# `deviceName` (std::string at 40, empty on the CPU) and `model` at 72.
_D_PTR_OFFSET = 56
_MODEL_OFFSET = 72


def _empty_std_string_at(address: int) -> bool:
    """libstdc++'s empty std::string: its data pointer points at its own inline buffer."""
    data = ctypes.c_void_p.from_address(address).value
    return data == address + 16 and ctypes.c_size_t.from_address(address + 8).value == 0


def _gpt4all_llama_model(handle: int) -> int | None:
    """The `llama_model *` of a model gpt4all 2.8.2 loaded on the CPU; None unless every field
    around it holds what that layout puts there."""
    llmodel = ctypes.c_void_p.from_address(handle).value
    private = ctypes.c_void_p.from_address(llmodel + _D_PTR_OFFSET).value if llmodel else None
    if not private:
        return None
    if not (_empty_std_string_at(private) and _empty_std_string_at(private + 40)):
        return None
    loaded = ctypes.c_bool.from_address(private + 32).value
    if not loaded or ctypes.c_int.from_address(private + 36).value != -1:
        return None
    return ctypes.c_void_p.from_address(private + _MODEL_OFFSET).value or None


class Tokenizer:
    """Tokenizes text as gpt4all's `LLModel::prompt` does, from the start or after a token."""

    def __init__(self, path: Path) -> None:
        """Load the vocabulary of `path` on its own (vocab-only: ~14 MB, a second parse of it)."""
        self._lib = _library()
        self._lib.llama_log_set(_LOG_FORWARDER, None)
        params = self._lib.llama_model_default_params()
        params.vocab_only = True
        handle = self._lib.llama_load_model_from_file(str(path).encode(), params)
        if not handle:
            raise RuntimeError(f"could not load the vocabulary of {path}")
        self._model: int | None = handle
        self._owned = True
        self._pieces: dict[int, bytes] = {}

    @classmethod
    def of_gpt4all(cls, handle: int) -> Tokenizer | None:
        """The vocabulary of the model gpt4all loaded (its C handle, `GPT4All().model.model`),
        borrowed: nothing is loaded, and the model must outlive this tokenizer. None when the
        objects behind the handle do not have gpt4all 2.8.2's layout."""
        model = _gpt4all_llama_model(handle)
        if model is None:
            return None
        tokenizer = cls.__new__(cls)
        tokenizer._lib = _library()
        tokenizer._model = model
        tokenizer._owned = False
        tokenizer._pieces = {}
        return tokenizer

    def close(self) -> None:
        if self._model is not None and self._owned:
            self._lib.llama_free_model(self._model)
        self._model = None

    def __enter__(self) -> Tokenizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def n_vocab(self) -> int:
        return int(self._lib.llama_n_vocab(self._model))

    def text(self, token: int) -> str:
        """A token's text as stored in the vocabulary (`tokenizer.ggml.tokens`), unconverted."""
        return (self._lib.llama_token_get_text(self._model, token) or b"").decode(
            "utf-8", errors="replace"
        )

    def metadata(self, key: str) -> str | None:
        """A scalar GGUF metadata value as llama.cpp keeps it (numbers in decimal, booleans as
        `true`/`false`, strings verbatim); None for a missing key or an array."""
        size = self._lib.llama_model_meta_val_str(self._model, key.encode(), None, 0)
        if size < 0:
            return None
        buf = ctypes.create_string_buffer(size + 1)
        self._lib.llama_model_meta_val_str(self._model, key.encode(), buf, size + 1)
        return buf.raw[:size].decode("utf-8", errors="replace")

    def is_special(self, token: int) -> bool:
        return bool(self._lib.llama_token_get_attr(self._model, token) & _SPECIAL_ATTRS)

    def special_token_id(self, text: str) -> int | None:
        """The control or user-defined token (GGUF token types 3 and 4) whose text is `text`.

        llama.cpp's tokenizer matches the texts of all such tokens before anything else, so
        `text` tokenized with special tokens parsed is that one token when the vocabulary has
        it: one call, where asking each of Llama 3's 128k tokens for its type through ctypes
        would take about 0.4 s (0.15 s for the tiny model's 49k).
        """
        raw = text.encode()
        size = len(raw) + 4
        out = (ctypes.c_int32 * size)()
        n = self._lib.llama_tokenize_gpt4all(
            self._model, raw, len(raw), out, size, False, True, False
        )
        if n != 1 or self.text(out[0]) != text:
            return None
        attrs = self._lib.llama_token_get_attr(self._model, out[0])
        return int(out[0]) if attrs & _CONTROL_OR_USER_DEFINED else None

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
