"""The README tells the truth about the settings: every knob a user can turn is documented.

Settings come from the code (llm-node's Settings, the roles' argument specs, Terraform's
variables and outputs), so a new setting without a README line fails here.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import hcl2
import pytest
from llm_node.config import Settings

from scripts.role_settings import ROLES, role_options, updated

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def terraform_blocks(kind: str) -> list[str]:
    names: list[str] = []
    for path in sorted((REPO / "terraform").glob("*.tf")):
        for block in hcl2.loads(path.read_text()).get(kind, []):
            names.extend(name.strip('"') for name in block)
    return names


def role_variables() -> list[str]:
    return [
        name
        for role in sorted(ROLES.iterdir())
        if (role / "meta" / "argument_specs.yml").exists()
        for name in role_options(role)
    ]


@pytest.mark.parametrize("name", [f"LLM_{field.upper()}" for field in Settings.model_fields])
def test_every_llm_node_setting_is_documented(name: str) -> None:
    assert f"`{name}`" in README


@pytest.mark.parametrize("name", role_variables())
def test_every_role_variable_is_documented(name: str) -> None:
    assert f"`{name}`" in README, "regenerate the tables: python scripts/role_settings.py"


def test_the_role_settings_tables_are_up_to_date() -> None:
    assert updated(README) == README, "run: python scripts/role_settings.py --update README.md"


@pytest.mark.parametrize("name", terraform_blocks("variable"))
def test_every_terraform_variable_is_documented(name: str) -> None:
    assert f"`{name}`" in README


@pytest.mark.parametrize("name", terraform_blocks("output"))
def test_every_terraform_output_is_documented(name: str) -> None:
    assert f"`{name}`" in README


def test_the_readme_has_no_unfinished_section() -> None:
    assert not re.search(r"TODO|<!-- PART:", README)


@pytest.mark.parametrize(
    "target", sorted(set(re.findall(r"(?:`|^)make ([a-z][a-z0-9-]+)", README, re.M)))
)
def test_every_make_target_the_readme_names_exists(target: str) -> None:
    dry_run = subprocess.run(
        ["make", "-n", "-C", str(REPO), target], capture_output=True, text=True, check=False
    )
    assert dry_run.returncode == 0, dry_run.stderr


def test_ci_runs_the_readme_test_command() -> None:
    assert "make test " in README
    assert re.search(r"^\s*(exec\s+)?make test\s*$", (REPO / ".ci" / "run").read_text(), re.M)
