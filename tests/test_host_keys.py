"""scripts/host_keys.py: the servers' host keys, made once, kept, rotated on request."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.host_keys import MAX_SERVERS, ensure, known_hosts_line

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "host_keys.py"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False
    )


def test_makes_one_ed25519_key_per_possible_server(tmp_path: Path) -> None:
    keys = ensure(tmp_path / "keys.json")
    assert (sorted(keys, key=int), {k["public"].split()[0] for k in keys.values()}) == (
        [str(i) for i in range(1, MAX_SERVERS + 1)],
        {"ssh-ed25519"},
    )


def test_the_private_key_belongs_to_the_public_key(tmp_path: Path) -> None:
    key = ensure(tmp_path / "keys.json")["1"]
    private = tmp_path / "id"
    private.write_text(key["private"])
    private.chmod(0o600)
    derived = subprocess.run(
        ["ssh-keygen", "-y", "-f", str(private)], capture_output=True, text=True, check=True
    ).stdout
    assert derived.split()[:2] == key["public"].split()[:2]


def test_the_file_is_private_and_what_terraform_loads(tmp_path: Path) -> None:
    path = tmp_path / "host-keys.auto.tfvars.json"
    ensure(path)
    assert (stat.S_IMODE(path.stat().st_mode), list(json.loads(path.read_text()))) == (
        0o600,
        ["host_keys"],
    )


def test_a_second_run_keeps_every_key(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    assert ensure(path) == ensure(path)


def test_rotate_replaces_only_that_servers_key(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    before = ensure(path)
    after = ensure(path, rotate=["2"])
    changed = sorted(i for i in before if before[i] != after[i])
    assert changed == ["2"]


@pytest.mark.parametrize("bad", ["0", "11", "web"])
def test_rotate_refuses_a_server_number_out_of_range(tmp_path: Path, bad: str) -> None:
    result = _run(str(tmp_path / "keys.json"), "--rotate", bad)
    assert (result.returncode, "server number from 1 to 10" in result.stderr) == (2, True)


def test_known_hosts_line_names_every_address() -> None:
    line = known_hosts_line(["203.0.113.10", "2001:db8::1"], "ssh-ed25519 AAAAC3 c")
    assert line == "203.0.113.10,2001:db8::1 ssh-ed25519 AAAAC3 c\n"
