"""Fixtures for tests/terraform: see tfcheck.py for how Terraform is run without the cloud."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tfcheck import TERRAFORM, TF_DIR, evaluate_module, load_hcl


@pytest.fixture(scope="session")
def terraform_bin() -> str:
    if TERRAFORM is None:
        pytest.skip(
            "terraform not found in the virtualenv nor on PATH: `make terraform-cli` installs "
            "the pinned one (requirements-terraform.txt; make test does)"
        )
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

    evaluate(variables, extra_outputs={name: "${expression}"}) returns {output: value};
    it fails the test with Terraform's message if the variables are refused or an
    expression does not evaluate.
    """

    def run(values: dict[str, Any], extra_outputs: dict[str, str] | None = None) -> dict[str, Any]:
        return evaluate_module(tmp_path / "module", tf_config, values, extra_outputs or {})

    return run


@pytest.fixture(scope="module")
def single_node(
    terraform_bin: str,
    tf_config: dict[str, dict[str, Any]],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    """The outputs for one node and the default variables."""
    return evaluate_module(tmp_path_factory.mktemp("single-node"), tf_config, {}, {})
