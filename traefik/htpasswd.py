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
import os
import re
import sys
import tempfile
from pathlib import Path

import bcrypt

USER_RE = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
MIN_PASSWORD_LENGTH = 12


class UsageError(Exception):
    """Bad input: reported as one line, exit status 2."""


def hash_password(password: str, cost: int) -> str:
    """Return a bcrypt hash in the `$2y$` form htpasswd writes (same algorithm as `$2b$`)."""
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=cost)).decode()
    return "$2y$" + hashed[4:]


def check_password(password: str, hashed: str) -> bool:
    """True when `password` matches a `$2y$`/`$2b$`/`$2a$` hash."""
    return bcrypt.checkpw(password.encode(), ("$2b$" + hashed[4:]).encode())


def read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        if not sys.stdin.isatty():
            raise UsageError("standard input is not a terminal: use --password-stdin")
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != password:
            raise UsageError("the two passwords differ")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UsageError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    if len(password.encode()) > 72:
        raise UsageError("bcrypt uses at most 72 bytes: choose a shorter password")
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
        if not USER_RE.match(args.user):
            raise UsageError("user names use 1 to 64 letters, digits, '.', '_', '@' or '-'")
        if not 4 <= args.cost <= 16:
            raise UsageError("--cost must be between 4 and 16")
        lines = []
        if args.users_file.exists():
            lines = [line for line in args.users_file.read_text().splitlines() if line.strip()]
        if args.delete:
            if not any(line.split(":", 1)[0] == args.user for line in lines):
                raise UsageError(f"no user {args.user!r} in {args.users_file}")
            entry = None
        else:
            entry = f"{args.user}:{hash_password(read_password(args.password_stdin), args.cost)}"
        write_atomically(args.users_file, update_lines(lines, args.user, entry))
    except UsageError as error:
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
