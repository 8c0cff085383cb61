"""traefik/htpasswd.py, the tool that writes the bcrypt usersFile (the real Traefik accepts
its output: see test_edge_traefik.py, whose users file it writes)."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import bcrypt
import pytest

from tests.edge import procs
from tests.support import load_module

TOOL = procs.REPO / "traefik" / "htpasswd.py"
# checkov:skip=CKV_SECRET_6 a made-up password the test hashes and checks, used nowhere else
PASSWORD = "a-long-enough-password"


def htpasswd(*args: str, stdin: str = f"{PASSWORD}\n") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(TOOL), *args], input=stdin, capture_output=True, text=True
    )


def entries(path: Path) -> dict[str, str]:
    return dict(line.split(":", 1) for line in path.read_text().splitlines())


def test_writes_a_bcrypt_hash_of_the_password(tmp_path: Path) -> None:
    users = tmp_path / "users"
    htpasswd("--password-stdin", str(users), "alice")
    hashed = entries(users)["alice"]
    assert bcrypt.checkpw(PASSWORD.encode(), ("$2b$" + hashed[4:]).encode())


def test_hash_is_in_the_htpasswd_2y_form(tmp_path: Path) -> None:
    users = tmp_path / "users"
    htpasswd("--password-stdin", str(users), "alice")
    assert entries(users)["alice"].startswith("$2y$10$")


def test_file_is_private(tmp_path: Path) -> None:
    users = tmp_path / "users"
    htpasswd("--password-stdin", str(users), "alice")
    assert stat.S_IMODE(users.stat().st_mode) == 0o600


def test_replaces_an_existing_user_and_keeps_the_others(tmp_path: Path) -> None:
    users = tmp_path / "users"
    htpasswd("--password-stdin", str(users), "alice")
    htpasswd("--password-stdin", str(users), "bob")
    htpasswd("--password-stdin", str(users), "alice", stdin="another-long-password\n")
    hashed = entries(users)
    assert (
        sorted(hashed),
        bcrypt.checkpw(b"another-long-password", b"$2b$" + hashed["alice"][4:].encode()),
    ) == (["alice", "bob"], True)


def test_deletes_a_user(tmp_path: Path) -> None:
    users = tmp_path / "users"
    htpasswd("--password-stdin", str(users), "alice")
    htpasswd("--password-stdin", str(users), "bob")
    htpasswd("--delete", str(users), "alice")
    assert sorted(entries(users)) == ["bob"]


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["--password-stdin", "USERS", "alice"], "short\n", "at least 12 characters"),
        (["--password-stdin", "USERS", "al ice"], f"{PASSWORD}\n", "user names use"),
        (["--password-stdin", "USERS", "alice:x"], f"{PASSWORD}\n", "user names use"),
        (["USERS", "alice"], f"{PASSWORD}\n", "not a terminal: use --password-stdin"),
        (["--delete", "USERS", "nobody"], "", "no user 'nobody'"),
        (["--cost", "3", "--password-stdin", "USERS", "alice"], f"{PASSWORD}\n", "bcrypt cost"),
    ],
    ids=["short-password", "space-in-name", "colon-in-name", "no-tty", "delete-unknown", "cost"],
)
def test_bad_input_gets_a_clear_error_and_no_traceback(
    tmp_path: Path, args: list[str], stdin: str, message: str
) -> None:
    argv = [str(tmp_path / "users") if arg == "USERS" else arg for arg in args]
    result = htpasswd(*argv, stdin=stdin)
    assert (result.returncode, message in result.stderr, "Traceback" in result.stderr) == (
        2,
        True,
        False,
    )


def test_password_is_never_an_argument() -> None:
    result = htpasswd("--help")
    assert "--password " not in result.stdout


FILTER = procs.REPO / "ansible/roles/traefik/filter_plugins/htpasswd.py"


def role_filter_accepts(name: str, password: str) -> bool:
    from ansible.errors import AnsibleFilterError

    module = load_module(FILTER, "role_htpasswd")
    try:
        module.traefik_htpasswd([{"name": name, "password": password}], "", 4)
    except AnsibleFilterError:
        return False
    return True


@pytest.mark.parametrize(
    ("name", "password"),
    [
        ("alice", PASSWORD),
        ("alice", "eleven-char"),
        ("alice", "twelve-chars"),
        ("alice", "é" * 36),  # 72 bytes
        ("alice", "é" * 37),  # 74 bytes
        ("al ice", PASSWORD),
        ("alice:x", PASSWORD),
        ("a" * 65, PASSWORD),
        ("bob.o_n@example-1", PASSWORD),
    ],
)
def test_the_command_and_the_role_apply_one_rule_set(
    tmp_path: Path, name: str, password: str
) -> None:
    command = htpasswd("--cost", "4", "--password-stdin", str(tmp_path / "u"), name, stdin=password)
    assert (command.returncode == 0) == role_filter_accepts(name, password), command.stderr
