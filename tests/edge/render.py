"""Render the project's Jinja2 templates the way Ansible's template module does.

Honours the `#jinja2:` header line (custom delimiters) and provides Ansible's `bool`
filter, so the tests run exactly the files the Ansible roles install.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import jinja2

REPO = Path(__file__).resolve().parents[2]
HEADER_RE = re.compile(r"^#jinja2:(.*)$")


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in {"1", "true", "yes", "on", "y"}


def _header_overrides(first_line: str) -> dict[str, Any]:
    match = HEADER_RE.match(first_line)
    if not match:
        return {}
    overrides: dict[str, Any] = {}
    for item in match.group(1).split(","):
        key, _, value = item.partition(":")
        overrides[key.strip()] = ast.literal_eval(value.strip())
    return overrides


def render(template: Path | str, **variables: Any) -> str:
    """Render `template` (a path relative to the repository or absolute) with `variables`."""
    path = Path(template) if Path(template).is_absolute() else REPO / template
    source = path.read_text()
    first_line, _, rest = source.partition("\n")
    overrides = _header_overrides(first_line)
    if overrides:
        source = rest
    env = jinja2.Environment(  # noqa: S701 (renders YAML and INI, never HTML)
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        **overrides,
    )
    env.filters["bool"] = _to_bool
    return env.from_string(source).render(**variables)


def render_to(template: Path | str, destination: Path, **variables: Any) -> Path:
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.write_text(render(template, **variables))
    return destination
