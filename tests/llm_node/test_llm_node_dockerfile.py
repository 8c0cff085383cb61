"""Static properties of the llm-node image (no Docker engine needed; hadolint runs in make lint)."""

from __future__ import annotations

import re
from pathlib import Path

LLM_NODE = Path(__file__).resolve().parents[2] / "llm-node"
DOCKERFILE = (LLM_NODE / "Dockerfile").read_text()
FINAL_STAGE = DOCKERFILE.rsplit("\nFROM ", 1)[1]


def test_image_is_multi_stage() -> None:
    assert len(re.findall(r"^FROM ", DOCKERFILE, re.MULTILINE)) == 2


def test_final_stage_runs_as_non_root() -> None:
    users = re.findall(r"^USER (\S+)", FINAL_STAGE, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("root", "0")


def test_final_stage_has_a_healthcheck() -> None:
    assert re.search(r"^HEALTHCHECK .*CMD", FINAL_STAGE, re.MULTILINE | re.DOTALL)


def test_no_model_is_copied_into_the_image() -> None:
    copies = re.findall(r"^(?:COPY|ADD) .*$", DOCKERFILE, re.MULTILINE)
    assert not [c for c in copies if "gguf" in c or "models" in c]


def test_final_stage_installs_no_build_tools() -> None:
    assert not re.search(r"apt-get|gcc|build-essential|pip install", FINAL_STAGE)


def test_dockerignore_keeps_models_out() -> None:
    lines = (LLM_NODE / ".dockerignore").read_text().split()
    assert lines[lines.index("*")] == "*" and "!requirements.txt" in lines
