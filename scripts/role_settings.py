"""Print the settings tables of the Ansible roles (Markdown), from their argument specs.

The README's role tables are this script's output: `python scripts/role_settings.py`.
tests/test_readme.py checks that every variable of every spec is in the README.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

ROLES = Path(__file__).resolve().parent.parent / "ansible" / "roles"


def role_options(role: Path) -> dict[str, dict[str, Any]]:
    """The options of a role's `main` entry point, in file order."""
    specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())
    options: dict[str, dict[str, Any]] = specs["argument_specs"]["main"].get("options", {})
    return options


def cell(value: object) -> str:
    text = " ".join(value) if isinstance(value, list) else str(value)
    return text.replace("|", "\\|").replace("\n", " ").strip()


def default(option: dict[str, Any]) -> str:
    if "default" not in option:
        return "(required)" if option.get("required") else ""
    value = option["default"]
    if isinstance(value, str | list | dict) and len(str(value)) > 48:
        return "see defaults/main.yml"
    if isinstance(value, str):
        return f"`{value}`" if value else '`""`'
    return f"`{json.dumps(value)}`"


def table(role: Path) -> str:
    rows = ["| Variable | Type | Default | Meaning |", "|---|---|---|---|"]
    for name, option in role_options(role).items():
        rows.append(
            f"| `{name}` | {option.get('type', 'str')} | {cell(default(option))} "
            f"| {cell(option.get('description', ''))} |"
        )
    return "\n".join(rows)


def main() -> int:
    for role in sorted(p for p in ROLES.iterdir() if (p / "meta" / "argument_specs.yml").exists()):
        print(f"#### Role `{role.name}`\n\n{table(role)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
