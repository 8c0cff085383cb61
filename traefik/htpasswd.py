#!/usr/bin/env python3
"""Add or replace a user in Traefik's basic-auth usersFile (bcrypt hashes).

The password is read without echo from the terminal (asked twice), or from standard input
when it is not a terminal (`--password-stdin`, for scripts), never from the command line, so
it stays out of the shell history and the process list.

    traefik/htpasswd.py USERS_FILE USER          # prompts for the password
    printf '%s' "$PW" | traefik/htpasswd.py --password-stdin USERS_FILE USER
    traefik/htpasswd.py --delete USERS_FILE USER

The file is written atomically with mode 0600. Traefik watches the file provider's files, but
not the usersFile: restart Traefik (or re-run the Ansible role) after a change.
"""

from __future__ import annotations

import argparse
import getpass
import importlib.util
import os
import sys
import tempfile
from pathlib import Path
from types import ModuleType

# The rules (user names, password lengths, bcrypt cost and hash form) are the role's, so this
# command and `ansible-playbook site.yml` accept and refuse the same users.
RULES_FILE = (
    Path(__file__).resolve().parents[1] / "ansible/roles/traefik/filter_plugins/htpasswd.py"
)


def _load_rules() -> ModuleType:
    spec = importlib.util.spec_from_file_location("traefik_htpasswd_rules", RULES_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


rules = _load_rules()


class UsageError(Exception):
    """Bad input: reported as one line, exit status 2."""


def read_password(user: str, from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        if not sys.stdin.isatty():
            raise UsageError("standard input is not a terminal: use --password-stdin")
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != password:
            raise UsageError("the two passwords differ")
    rules.check_password(user, password)
    return password


def update_lines(lines: list[str], user: str, entry: str | None) -> list[str]:
    """Replace (or remove, when `entry` is None) `user`'s line; append when absent."""
    kept = [line for line in lines if line.split(":", 1)[0] != user]
    return [*kept, entry] if entry is not None else kept


def write_atomically(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as out:
            out.write("".join(f"{line}\n" for line in lines))
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("users_file", type=Path, help="usersFile to create or update")
    parser.add_argument("user", help="user name (letters, digits, . _ @ -)")
    parser.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    parser.add_argument("--delete", action="store_true", help="remove the user")
    parser.add_argument("--cost", type=int, default=10, help="bcrypt cost, 4..16 (default 10)")
    args = parser.parse_args(argv)
    try:
        rules.check_user(args.user)
        rules.check_cost(args.cost)
        lines = []
        if args.users_file.exists():
            lines = [line for line in args.users_file.read_text().splitlines() if line.strip()]
        if args.delete:
            if not any(line.split(":", 1)[0] == args.user for line in lines):
                raise UsageError(f"no user {args.user!r} in {args.users_file}")
            entry = None
        else:
            password = read_password(args.user, args.password_stdin)
            entry = f"{args.user}:{rules.hash_password(password, args.cost)}"
        write_atomically(args.users_file, update_lines(lines, args.user, entry))
    except (UsageError, rules.RuleError) as error:
        print(f"htpasswd.py: {error}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, EOFError):
        print("htpasswd.py: cancelled, nothing written", file=sys.stderr)
        return 130
    except OSError as error:
        print(f"htpasswd.py: {error}", file=sys.stderr)
        return 1
    action = "removed from" if args.delete else "written to"
    print(f"user {args.user!r} {action} {args.users_file}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
