"""Unit tests of the traefik role's usersFile filter: a hash is reused while it verifies,
so the file (and Traefik) only change when a password does."""

from __future__ import annotations

from pathlib import Path

import bcrypt
import pytest

from tests.support import load_module

PLUGIN = Path(__file__).resolve().parents[2] / "ansible/roles/traefik/filter_plugins/htpasswd.py"


htpasswd = load_module(PLUGIN, "traefik_htpasswd_filter").traefik_htpasswd
USERS = [
    {"name": "alice", "password": "correct horse"},
    {"name": "bob", "password": "s3cret-s3cret"},
]


def _entries(text: str) -> dict[str, str]:
    return dict(line.split(":", 1) for line in text.splitlines())


def test_new_hashes_verify_the_passwords() -> None:
    entries = _entries(htpasswd(USERS, "", 4))
    assert bcrypt.checkpw(b"s3cret-s3cret", ("$2b$" + entries["bob"][4:]).encode())


def test_hashes_use_the_htpasswd_2y_prefix() -> None:
    assert all(h.startswith("$2y$04$") for h in _entries(htpasswd(USERS, "", 4)).values())


def test_a_second_render_reuses_the_existing_hashes() -> None:
    first = htpasswd(USERS, "", 4)
    assert htpasswd(USERS, first, 4) == first


def test_a_changed_password_is_hashed_again() -> None:
    first = _entries(htpasswd(USERS, "", 4))
    changed = [{"name": "alice", "password": "new password"}, USERS[1]]
    second = _entries(htpasswd(changed, htpasswd(USERS, "", 4), 4))
    assert second["alice"] != first["alice"]


def test_an_unchanged_user_keeps_its_hash_when_another_changes() -> None:
    first = htpasswd(USERS, "", 4)
    changed = [{"name": "alice", "password": "new password"}, USERS[1]]
    assert _entries(htpasswd(changed, first, 4))["bob"] == _entries(first)["bob"]


def test_a_removed_user_disappears() -> None:
    first = htpasswd(USERS, "", 4)
    assert set(_entries(htpasswd(USERS[:1], first, 4))) == {"alice"}


@pytest.mark.parametrize(
    "user",
    [
        {"name": "a:b", "password": "x"},
        {"name": "", "password": "x"},
        {"name": "alice", "password": ""},
        {"name": "alice", "password": "x" * 73},
        {"name": "alice", "password": "eleven-char"},
        # checkov:skip=CKV_SECRET_6 a made-up sample password of a refused user name
        {"name": "al ice", "password": "a-long-enough-password"},
    ],
    ids=[
        "colon-in-name",
        "empty-name",
        "empty-password",
        "longer-than-72-bytes",
        "shorter-than-12",
        "space-in-name",
    ],
)
def test_bad_users_are_refused_with_a_clear_error(user: dict[str, str]) -> None:
    from ansible.errors import AnsibleFilterError

    with pytest.raises(AnsibleFilterError):
        htpasswd([user], "", 4)
