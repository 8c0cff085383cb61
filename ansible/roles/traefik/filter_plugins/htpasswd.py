"""Traefik's basic-auth usersFile: the one rule set for user names, passwords and hashes.

Used by the role (the `traefik_htpasswd` filter) and by the `traefik/htpasswd.py` command,
which loads this file, so both accept and refuse exactly the same users.

The filter renders the file idempotently: a fresh bcrypt hash has a fresh salt, so hashing on
every run would rewrite the file (and restart Traefik) every time. It keeps each existing hash
that still verifies the user's password and only hashes new or changed passwords. It runs on
the controller, which has bcrypt from requirements.txt.
"""

from __future__ import annotations

import re
from typing import Any

try:
    import bcrypt
except ImportError:  # pragma: no cover - reported when the filter is used
    bcrypt = None

USER_RE = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_BYTES = 72  # bcrypt ignores what follows
MIN_COST, MAX_COST = 4, 16


class RuleError(ValueError):
    """A user, password or cost that the rules refuse; the message says how to fix it."""


def check_user(name: str) -> None:
    if not USER_RE.match(name):
        raise RuleError(f"user names use 1 to 64 letters, digits, '.', '_', '@' or '-': {name!r}")


def check_password(name: str, password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise RuleError(
            f"the password of {name} must have at least {MIN_PASSWORD_LENGTH} characters"
        )
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        raise RuleError(
            f"the password of {name} is longer than bcrypt's {MAX_PASSWORD_BYTES} bytes"
        )


def check_cost(cost: int) -> None:
    if not MIN_COST <= cost <= MAX_COST:
        raise RuleError(f"the bcrypt cost must be between {MIN_COST} and {MAX_COST}")


def _bcrypt() -> Any:
    if bcrypt is None:
        raise RuleError("the Python package bcrypt is missing: pip install -r requirements.txt")
    return bcrypt


def hash_password(password: str, cost: int) -> str:
    """A bcrypt hash in the `$2y$` form htpasswd writes (same algorithm as `$2b$`)."""
    check_cost(cost)
    hashed = _bcrypt().hashpw(password.encode(), _bcrypt().gensalt(rounds=cost)).decode()
    return "$2y$" + hashed[4:]


def verifies(password: str, hashed: str) -> bool:
    """True when `password` matches a `$2y$`/`$2b$`/`$2a$` hash."""
    if not hashed.startswith(("$2y$", "$2b$", "$2a$")):
        return False
    try:
        return bool(_bcrypt().checkpw(password.encode(), ("$2b$" + hashed[4:]).encode()))
    except ValueError:
        return False


def parse_users_file(text: str) -> dict[str, str]:
    """{user: hash} of a usersFile's text."""
    entries = {}
    for line in text.splitlines():
        name, sep, hashed = line.strip().partition(":")
        if sep:
            entries[name] = hashed
    return entries


def render_users_file(users: list[dict[str, Any]], current: str = "", cost: int = 10) -> str:
    """The usersFile text for `users`, reusing the hashes in `current` that still verify."""
    existing = parse_users_file(current)
    lines = []
    for user in users:
        name = str(user.get("name", ""))
        password = str(user.get("password", ""))
        check_user(name)
        check_password(name, password)
        hashed = existing.get(name, "")
        if not verifies(password, hashed):
            hashed = hash_password(password, int(cost))
        lines.append(f"{name}:{hashed}")
    return "\n".join(lines) + "\n"


def traefik_htpasswd(users: list[dict[str, Any]], current: str = "", cost: int = 10) -> str:
    from ansible.errors import AnsibleFilterError

    try:
        return render_users_file(users, current, cost)
    except RuleError as error:
        raise AnsibleFilterError(f"traefik_htpasswd: {error}") from None


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"traefik_htpasswd": traefik_htpasswd}
