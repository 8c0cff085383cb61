"""The traefik role refuses weak settings before it changes anything on the host: its
checks (roles/traefik/tasks/checks.yml) run for real with ansible-playbook on localhost."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ansible.test_ansible_static import ANSIBLE, _env, _tool

PLAYBOOK = """\
- name: Run only the traefik role's checks
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Checks
      ansible.builtin.include_role:
        name: traefik
        tasks_from: checks.yml
"""


def run_checks(tmp_path: Path, **variables: object) -> subprocess.CompletedProcess[str]:
    playbook = tmp_path / "checks.yml"
    playbook.write_text(PLAYBOOK)
    extra = {"ansible_python_interpreter": sys.executable, **variables}
    env = _env() | {"ANSIBLE_ROLES_PATH": str(ANSIBLE / "roles")}
    return subprocess.run(
        [_tool("ansible-playbook"), "-i", "localhost,", str(playbook), "-e", json.dumps(extra)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


# Made-up users: the short password is the one the check must refuse without printing it.
# checkov:skip=CKV_SECRET_6 made-up passwords of throw-away test users
LONG = {"name": "alice", "password": "twelve-chars"}
SHORT = {"name": "bob", "password": "tiny-pw"}


def test_users_with_passwords_of_twelve_characters_pass(tmp_path: Path) -> None:
    result = run_checks(
        tmp_path, traefik_acme_email="admin@example.org", traefik_basic_auth_users=[LONG]
    )
    assert result.returncode == 0, result.stdout[-2000:]


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"traefik_basic_auth_users": [LONG, SHORT]}, "The basic-auth password of bob"),
        ({"traefik_basic_auth_users": []}, "at least one user"),
        ({"traefik_acme_email": "not-an-address", "traefik_basic_auth_users": [LONG]}, "e-mail"),
    ],
)
def test_a_weak_setting_stops_the_run_with_a_message(
    tmp_path: Path, variables: dict[str, object], expected: str
) -> None:
    result = run_checks(tmp_path, **({"traefik_acme_email": "admin@example.org"} | variables))
    assert result.returncode != 0
    assert expected in result.stdout, result.stdout[-2000:]
    assert SHORT["password"] not in result.stdout + result.stderr
