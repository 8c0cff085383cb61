"""Fixtures for tests/terraform: see tfcheck.py for how Terraform is run without the cloud."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tfcheck import (
    BASE_VARS,
    TERRAFORM,
    TF_DIR,
    load_hcl,
    run_terraform,
    scratch_module,
    tf_var_args,
)


@pytest.fixture(scope="session")
def terraform_bin() -> str:
    if TERRAFORM is None:
        pytest.skip("terraform is not on PATH (a single Go binary; not packaged in Debian)")
    return TERRAFORM


@pytest.fixture(scope="session")
def tf_config() -> dict[str, dict[str, Any]]:
    """Every terraform/*.tf file parsed by python-hcl2, by file name."""
    return {path.name: load_hcl(path) for path in sorted(TF_DIR.glob("*.tf"))}


@pytest.fixture
def evaluate(
    terraform_bin: str, tf_config: dict[str, dict[str, Any]], tmp_path: Path
) -> Callable[..., dict[str, Any]]:
    """Evaluate the configuration's outputs (plus extra named expressions) with Terraform.

    Returns {output name: value}. Raises AssertionError with Terraform's message when
    the variables are refused or an expression fails.
    """

    def run(values: dict[str, Any], extra_outputs: dict[str, str] | None = None) -> dict[str, Any]:
        module = tmp_path / "module"
        module.mkdir(exist_ok=True)
        shutil.copy(TF_DIR / "variables.tf", module / "variables.tf")
        shutil.copytree(TF_DIR / "templates", module / "templates", dirs_exist_ok=True)
        (module / "main.tf").write_text(scratch_module(tf_config, extra_outputs or {}))
        applied = run_terraform(
            ["apply", "-auto-approve", "-no-color", *tf_var_args({**BASE_VARS, **values})], module
        )
        assert applied.returncode == 0, applied.stderr + applied.stdout
        shown = run_terraform(["output", "-json", "-no-color"], module)
        assert shown.returncode == 0, shown.stderr
        return {name: item["value"] for name, item in json.loads(shown.stdout).items()}

    return run
