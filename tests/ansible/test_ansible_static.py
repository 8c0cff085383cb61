"""Fast static checks of ansible/: syntax, ansible-lint (production profile) and the role
contracts (argument specs, variable prefixes, vault secrets, template variables).

Costs: ansible-lint about 30-40 s on 2 cores, everything else a few seconds.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE = ROOT / "ansible"
ROLES = sorted(p.name for p in (ANSIBLE / "roles").iterdir() if (p / "tasks").is_dir())
BIN = Path(sys.executable).parent


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["ANSIBLE_NOCOLOR"] = "1"
    env["NO_COLOR"] = "1"
    return env


def _tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.skip(f"{name} is not installed in the virtualenv (make venv)")
    return str(path)


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _defaults(role: str) -> dict[str, Any]:
    return _yaml(ANSIBLE / "roles" / role / "defaults" / "main.yml") or {}


def _role_vars(role: str) -> dict[str, Any]:
    path = ANSIBLE / "roles" / role / "vars" / "main.yml"
    return (_yaml(path) or {}) if path.exists() else {}


def _spec_options(role: str) -> dict[str, Any]:
    spec = _yaml(ANSIBLE / "roles" / role / "meta" / "argument_specs.yml")
    return spec["argument_specs"]["main"]["options"]


def test_site_yml_passes_syntax_check() -> None:
    result = subprocess.run(
        [
            _tool("ansible-playbook"),
            "--syntax-check",
            "-i",
            "inventory/hand-made.example.yml",
            "site.yml",
        ],
        cwd=ANSIBLE,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_ansible_lint_production_profile_passes() -> None:
    # .ansible-lint sets profile production and offline (no Galaxy on our machines).
    result = subprocess.run(
        [_tool("ansible-lint"), "--nocolor"],
        cwd=ANSIBLE,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("role", ROLES)
def test_argument_specs_cover_every_default(role: str) -> None:
    assert set(_defaults(role)) <= set(_spec_options(role))


@pytest.mark.parametrize("role", ROLES)
def test_argument_specs_document_every_option(role: str) -> None:
    incomplete = [
        name
        for name, option in _spec_options(role).items()
        if not option.get("type") or not option.get("description")
    ]
    assert incomplete == []


@pytest.mark.parametrize("role", ROLES)
def test_argument_spec_defaults_match_role_defaults(role: str) -> None:
    options = _spec_options(role)
    mismatched = [
        name for name, value in _defaults(role).items() if options[name].get("default") != value
    ]
    assert mismatched == []


@pytest.mark.parametrize("role", ROLES)
def test_role_variables_start_with_the_role_name(role: str) -> None:
    names = set(_defaults(role)) | set(_role_vars(role)) | set(_spec_options(role))
    assert [n for n in names if not n.startswith(f"{role}_")] == []


def _referenced(pattern: str) -> set[str]:
    found: set[str] = set()
    for path in ANSIBLE.rglob("*"):
        if path.is_file() and path.suffix in {".yml", ".j2"} and path.name != "vault.yml":
            code = "\n".join(
                line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")
            )
            found |= set(re.findall(pattern, code))
    return found


def _secrets_used() -> set[str]:
    # vault_password_file is Ansible's own setting, named in messages, not a secret.
    return _referenced(r"\b(vault_[a-z0-9_]+)") - {"vault_password_file"}


def test_vault_example_lists_every_secret_used() -> None:
    assert _secrets_used() <= set(_yaml(ANSIBLE / "vault.yml.example"))


def test_vault_example_lists_only_secrets_used() -> None:
    assert set(_yaml(ANSIBLE / "vault.yml.example")) <= _secrets_used()


def _jinja_variables(path: Path) -> set[str]:
    """Undeclared variables of a template, honouring Ansible's `#jinja2:` header."""
    text = path.read_text()
    options: dict[str, str] = {}
    first, _, rest = text.partition("\n")
    if first.startswith("#jinja2:"):
        for key, value in re.findall(r'(\w+)\s*:\s*"([^"]*)"', first):
            options[key] = value
        text = rest
    env = jinja2.Environment(**options)  # type: ignore[arg-type]  # noqa: S701 (parse only)
    return set(jinja2.meta.find_undeclared_variables(env.parse(text)))


def _task_vars(role: str) -> set[str]:
    names: set[str] = set()
    for path in (ANSIBLE / "roles" / role / "tasks").glob("*.yml"):
        for task in _yaml(path) or []:
            names |= set(task.get("vars", {}) or {})
    return names


# The traefik/ and monitoring/ templates belong to the edge helper's area; the roles
# render them. Every variable they read must be set by the role (defaults, vars, or the
# template task's vars), or it silently falls back to the template's own default.
REPO_TEMPLATES = [
    ("traefik", p.relative_to(ROOT).as_posix()) for p in sorted((ROOT / "traefik").rglob("*.j2"))
] + [
    ("monitoring", p.relative_to(ROOT).as_posix())
    for p in sorted((ROOT / "monitoring").rglob("*.j2"))
]


@pytest.mark.parametrize(("role", "template"), REPO_TEMPLATES)
def test_repository_templates_only_read_variables_the_role_sets(role: str, template: str) -> None:
    known = set(_defaults(role)) | set(_role_vars(role)) | _task_vars(role)
    wanted = {
        v
        for v in _jinja_variables(ROOT / template)
        if re.match(r"(traefik|monitoring|prometheus|alertmanager|grafana)_", v)
    }
    assert sorted(wanted - known) == []


ROLE_TEMPLATES = sorted(
    p.relative_to(ANSIBLE).as_posix() for p in (ANSIBLE / "roles").glob("*/templates/*.j2")
)


@pytest.mark.parametrize("template", ROLE_TEMPLATES)
def test_role_templates_carry_the_ansible_managed_header(template: str) -> None:
    lines = (ANSIBLE / template).read_text().splitlines()
    header = [line for line in lines[:3] if "ansible_managed" in line]
    assert header, f"{template} does not start with {{{{ ansible_managed | comment }}}}"


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_no_secret_file_is_tracked() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "ansible"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert [f for f in tracked if f.endswith(("vault.yml", "terraform.yml", ".vault_pass"))] == []


ARGSPEC_INVENTORY = """\
llm_nodes:
  hosts:
    argspec-check:
      ansible_connection: local
      ansible_python_interpreter: {python}
      llm_domain: example.org
      llm_fqdn: llm.example.org
      monitoring_fqdn: monitoring.example.org
      vault_traefik_acme_email: admin@example.org
      vault_traefik_basic_auth_users: [{{name: alice, password: secret}}]
      vault_monitoring_grafana_admin_password: twelve-chars
"""


def _validate_arguments(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Run only the roles' argument-spec validation (tagged `always`) on this machine."""
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(ARGSPEC_INVENTORY.format(python=sys.executable))
    return subprocess.run(
        [
            _tool("ansible-playbook"),
            "-i",
            str(inventory),
            "site.yml",
            "--tags",
            "argument-specs-only",
            *extra,
        ],
        cwd=ANSIBLE,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_argument_specs_accept_the_documented_defaults(tmp_path: Path) -> None:
    result = _validate_arguments(tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("traefik_acme_challenge=dns", "traefik_acme_challenge"),
        ("common_swap_size_mb=lots", "common_swap_size_mb"),
        ('{"traefik_basic_auth_users": [{"name": "alice"}]}', "password"),
    ],
)
def test_argument_specs_refuse_a_bad_setting_by_name(
    tmp_path: Path, setting: str, message: str
) -> None:
    result = _validate_arguments(tmp_path, "-e", setting)
    assert result.returncode != 0 and message in result.stdout, result.stdout[-3000:]
