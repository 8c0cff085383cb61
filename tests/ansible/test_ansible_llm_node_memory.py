"""The llm_node role refuses a memory budget that does not fit before it downloads or starts
anything: its checks (roles/llm_node/tasks/memory.yml) run for real with ansible-playbook on
localhost. The host's memory is this machine's, or a server type's reported as the fact
`memtotal_mb` by a module of the test (the checks read only that fact)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ansible.test_ansible_static import ANSIBLE, _env, _tool

PLAYBOOK = """\
- name: Run only the llm_node role's memory checks
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Report the memory of the server type under test
      host_memory:
        memtotal_mb: "{{ test_memtotal_mb }}"
      when: test_memtotal_mb is defined
    - name: Checks
      ansible.builtin.include_role:
        name: llm_node
        tasks_from: memory.yml
    - name: Report the saved-conversation cache the checks sized
      ansible.builtin.debug:
        msg: "cache={{ llm_node_prompt_cache_mib_effective }}"
"""

FACT_MODULE = """\
from ansible.module_utils.basic import AnsibleModule

module = AnsibleModule(argument_spec={"memtotal_mb": {"type": "int", "required": True}})
module.exit_json(changed=False, ansible_facts={"memtotal_mb": module.params["memtotal_mb"]})
"""

# What `free -m` reports on an 8 GB server (the default cx33): the kernel keeps some of the
# 8,192 MiB (an estimate; the check reads the real figure on the real server).
CX33_MB = 7750
CX23_MB = 3800  # a 4 GB type


def run_checks(tmp_path: Path, **variables: object) -> subprocess.CompletedProcess[str]:
    (tmp_path / "library").mkdir(exist_ok=True)
    (tmp_path / "library" / "host_memory.py").write_text(FACT_MODULE)
    playbook = tmp_path / "checks.yml"
    playbook.write_text(PLAYBOOK)
    extra = {"ansible_python_interpreter": sys.executable, **variables}
    env = _env() | {
        "ANSIBLE_ROLES_PATH": str(ANSIBLE / "roles"),
        "ANSIBLE_LIBRARY": str(tmp_path / "library"),
    }
    return subprocess.run(
        [_tool("ansible-playbook"), "-i", "localhost,", str(playbook), "-e", json.dumps(extra)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_defaults_fit_the_default_server_type(tmp_path: Path) -> None:
    """n_ctx 8192: 4,446 + 1,024 + 672 MiB for llm-node + 1,536 reserved = 7,678 <= 7,750."""
    result = run_checks(tmp_path, test_memtotal_mb=CX33_MB)
    assert result.returncode == 0, result.stdout[-2000:]


def test_the_defaults_pass_on_this_machine_from_its_own_facts(tmp_path: Path) -> None:
    result = run_checks(tmp_path)
    assert result.returncode == 0, result.stdout[-2000:]


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        # 1,256 MiB left for the KV cache at 128 KiB a token: 10,048 tokens, 9,216 in 1,024s.
        (
            {"test_memtotal_mb": CX33_MB, "llm_node_n_ctx": 16384},
            "Set llm_node_n_ctx to 8192 or less",
        ),
        ({"test_memtotal_mb": CX23_MB}, "Not even a 1,024-token context fits"),
        ({"test_memtotal_mb": CX23_MB}, "server_type in terraform.tfvars"),
        (
            {"test_memtotal_mb": CX33_MB, "llm_node_mem_limit": "4g"},
            "Raise llm_node_mem_limit to at least 6142m",
        ),
        (
            {"test_memtotal_mb": CX33_MB, "llm_node_mem_limit": "16g"},
            "Set llm_node_mem_limit to at most 6214m",
        ),
    ],
)
def test_a_budget_that_does_not_fit_stops_the_run_naming_the_fix(
    tmp_path: Path, variables: dict[str, object], expected: str
) -> None:
    result = run_checks(tmp_path, **variables)
    assert result.returncode != 0
    assert expected in " ".join(result.stdout.split()), result.stdout[-2000:]


def test_no_memory_limit_is_not_checked_against_the_need(tmp_path: Path) -> None:
    result = run_checks(tmp_path, test_memtotal_mb=CX33_MB, llm_node_mem_limit="")
    assert result.returncode == 0, result.stdout[-2000:]


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        # cx33 at n_ctx 8192: (7,750 - 1,536 - 6,142) // 2 = 36 MiB.
        ({"test_memtotal_mb": CX33_MB}, "cache=36"),
        # 16 GB: half the rest would be 4,111 MiB; llm_node_mem_limit 7g leaves 7,168 - 6,142.
        ({"test_memtotal_mb": 15_900}, "cache=1026"),
        ({"test_memtotal_mb": CX33_MB, "llm_node_prompt_cache_mib": 0}, "cache=0"),
        ({"test_memtotal_mb": 15_900, "llm_node_prompt_cache_mib": 256}, "cache=256"),
    ],
)
def test_the_saved_conversation_cache_is_sized_from_the_memory_left(
    tmp_path: Path, variables: dict[str, object], expected: str
) -> None:
    result = run_checks(tmp_path, **variables)
    assert result.returncode == 0, result.stdout[-2000:]
    assert expected in result.stdout


def test_an_explicit_cache_counts_in_the_budget(tmp_path: Path) -> None:
    result = run_checks(tmp_path, test_memtotal_mb=CX33_MB, llm_node_prompt_cache_mib=512)
    assert result.returncode != 0
    assert "saved conversations 512" in " ".join(result.stdout.split()), result.stdout[-2000:]
