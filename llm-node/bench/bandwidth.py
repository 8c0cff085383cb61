"""The memory-bandwidth limit of decoding: weight bytes read per token vs a measured copy rate.

Decoding one token multiplies every weight matrix by one vector: each weight byte is read once
per token, and there is too little arithmetic per byte for the cores to be the limit. So
tokens/s cannot exceed (memory bandwidth) / (weight bytes). `tensor_bytes` reads the sizes from
the GGUF header (no third-party parser: the `gguf` package's reader spends seconds on Llama 3's
408,000 tokenizer strings); `copy_bandwidth` times numpy copies of a large array, in the same
run as the engines, so both see the same machine.
"""

from __future__ import annotations

import mmap
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

# GGUF metadata value types (gguf.GGUFValueType) -> struct format of a fixed-size value.
_FIXED = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9


class _Cursor:
    def __init__(self, data: mmap.mmap) -> None:
        self.data, self.pos = data, 0

    def read(self, fmt: str) -> Any:
        value = struct.unpack_from("<" + fmt, self.data, self.pos)[0]
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> bytes:
        size = self.read("Q")
        start, self.pos = self.pos, self.pos + size
        return bytes(self.data[start : self.pos])

    def value(self, kind: int) -> Any:
        if kind in _FIXED:
            return self.read(_FIXED[kind])
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            inner, count = self.read("I"), self.read("Q")
            if inner in _FIXED:  # skipped, never needed here
                self.pos += count * struct.calcsize(_FIXED[inner])
                return None
            for _ in range(count):
                self.value(inner)
            return None
        raise ValueError(f"unknown GGUF value type {kind}")


def tensor_bytes(path: Path) -> dict[str, int]:
    """Bytes of each tensor in a GGUF file (its share of the data section, padding included)."""
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        cur = _Cursor(data)
        if cur.read("4s") != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file")
        cur.read("I")  # version
        n_tensors, n_kv = cur.read("Q"), cur.read("Q")
        alignment = 32
        for _ in range(n_kv):
            key = cur.string()
            value = cur.value(cur.read("I"))
            if key == b"general.alignment":
                alignment = int(value)
        offsets: list[tuple[int, str]] = []
        for _ in range(n_tensors):
            name = cur.string().decode()
            n_dims = cur.read("I")
            cur.pos += 8 * n_dims  # dimensions
            cur.read("I")  # type
            offsets.append((cur.read("Q"), name))
        data_start = -(-cur.pos // alignment) * alignment
        data_size = len(data) - data_start
    offsets.sort()
    ends = [offset for offset, _ in offsets[1:]] + [data_size]
    return {name: end - offset for (offset, name), end in zip(offsets, ends, strict=True)}


def bytes_per_token(sizes: dict[str, int]) -> dict[str, int]:
    """Weight bytes a decoded token reads: every tensor (the brief's measure), and the strict
    figure without the token embedding, of which one row per token is read."""
    total = sum(sizes.values())
    return {
        "tensor_bytes": total,
        "tensor_bytes_without_embedding": total - sizes.get("token_embd.weight", 0),
    }


def copy_bandwidth(threads: int, size: int = 1 << 30, repeats: int = 3) -> dict[str, Any]:
    """Best of `repeats` numpy copies of a `size`-byte array, on 1 thread and on `threads`
    threads (each copies a slice; numpy releases the GIL while copying); bytes moved = read +
    written (STREAM's "Copy" convention). The limit uses the faster of the two."""
    import numpy as np

    src = np.ones(size, dtype=np.uint8)
    dst = np.ones(size, dtype=np.uint8)  # both touched first: no page faults in the timing
    chunk = -(-size // threads)

    def part(i: int) -> None:
        np.copyto(dst[i * chunk : (i + 1) * chunk], src[i * chunk : (i + 1) * chunk])

    figures: dict[str, Any] = {"array_bytes": size, "repeats": repeats, "threads": threads}
    with ThreadPoolExecutor(threads) as pool:
        for label, width in (("1_thread", 1), (f"{threads}_threads", threads)):
            times = []
            for _ in range(repeats):
                started = time.perf_counter()
                if width == 1:
                    np.copyto(dst, src)
                else:
                    list(pool.map(part, range(width)))
                times.append(time.perf_counter() - started)
            figures[f"seconds_{label}"] = times
            figures[f"bytes_per_s_{label}"] = 2 * size / min(times)
    figures["bytes_per_s"] = max(figures["bytes_per_s_1_thread"], 2 * size / min(times))
    figures["method"] = (
        f"numpy copyto of a {size / 2**30:g} GiB uint8 array, best of {repeats}, on 1 and "
        f"{threads} threads (the faster counts); read + written bytes"
    )
    return figures
