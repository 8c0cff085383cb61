"""Render Traefik's basic-auth usersFile idempotently.

A fresh bcrypt hash has a fresh salt, so hashing on every run would rewrite the file (and
restart Traefik) every time. This filter keeps each existing hash that still verifies the
user's password and only hashes new or changed passwords. It runs on the controller, which
has bcrypt from requirements.txt.
"""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError

try:
    import bcrypt
except ImportError:  # pragma: no cover - reported when the filter is used
    bcrypt = None


def _verifies(password: str, hashed: str) -> bool:
    if not hashed.startswith(("$2y$", "$2b$", "$2a$")):
        return False
    try:
        return bool(bcrypt.checkpw(password.encode(), ("$2b$" + hashed[4:]).encode()))
    except ValueError:
        return False


def traefik_htpasswd(users: list[dict[str, Any]], current: str = "", cost: int = 10) -> str:
    """Return the usersFile text for `users`, reusing the hashes in `current` that match."""
    if bcrypt is None:
        raise AnsibleFilterError(
            "traefik_htpasswd needs the Python package bcrypt on the controller: "
            "pip install -r requirements.txt"
        )
    existing = {}
    for line in current.splitlines():
        name, sep, hashed = line.strip().partition(":")
        if sep:
            existing[name] = hashed
    lines = []
    for user in users:
        name = str(user.get("name", ""))
        password = str(user.get("password", ""))
        if not name or ":" in name or not password:
            raise AnsibleFilterError(
                "each basic-auth user needs a name without ':' and a non-empty password"
            )
        if len(password.encode()) > 72:
            raise AnsibleFilterError(f"the password of {name} is longer than bcrypt's 72 bytes")
        hashed = existing.get(name, "")
        if not _verifies(password, hashed):
            fresh = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=int(cost))).decode()
            hashed = "$2y$" + fresh[4:]
        lines.append(f"{name}:{hashed}")
    return "\n".join(lines) + "\n"


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"traefik_htpasswd": traefik_htpasswd}
