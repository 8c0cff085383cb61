#!/usr/bin/env python3
"""The servers' SSH host keys, made here once so the project knows them before a server exists.

`make tf-apply` runs this first. It keeps one ed25519 host key per server index (1 to 10,
node_count's range) in terraform/host-keys.auto.tfvars.json (mode 0600, git-ignored), which
Terraform loads by itself as the variable `host_keys`. Terraform hands each key to its
server's cloud-init (which installs it instead of generating random ones) and writes the
public halves to ansible/inventory/known_hosts, which Ansible checks with
StrictHostKeyChecking=yes. So the first deploy and every rebuild (a new server on the same
primary IPs gets the same key) connect without a prompt, and any other key is refused.

Existing keys are never replaced; `--rotate INDEX` makes a new key for one server (then
rebuild that server: `terraform apply -replace='hcloud_server.this[INDEX-1]'`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

MAX_SERVERS = 10
DEFAULT_FILE = Path(__file__).resolve().parents[1] / "terraform" / "host-keys.auto.tfvars.json"


def new_host_key(comment: str) -> dict[str, str]:
    """A fresh ed25519 key pair in OpenSSH format: {"private": ..., "public": ...}."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ssh_host_ed25519_key"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
            check=True,
            capture_output=True,
        )
        return {
            "private": path.read_text(),
            "public": path.with_suffix(".pub").read_text().strip(),
        }


def ensure(path: Path, rotate: list[str] | None = None) -> dict[str, dict[str, str]]:
    """Load the keys file, add the missing keys (and the rotated ones), write it back 0600."""
    keys: dict[str, dict[str, str]] = {}
    if path.exists():
        keys = json.loads(path.read_text()).get("host_keys", {})
    for index in map(str, range(1, MAX_SERVERS + 1)):
        if index not in keys or index in (rotate or []):
            keys[index] = new_host_key(f"llm-vps-server-{index}")
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"host_keys": keys}, out, indent=2)
        out.write("\n")
    os.replace(tmp, path)
    return keys


def known_hosts_line(addresses: list[str], public_key: str) -> str:
    """One known_hosts line: the addresses the server answers on, then its public key."""
    return f"{','.join(addresses)} {public_key}\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", type=Path, default=DEFAULT_FILE)
    parser.add_argument("--rotate", action="append", metavar="INDEX", help="new key for server")
    args = parser.parse_args(argv)
    bad = [i for i in args.rotate or [] if i not in map(str, range(1, MAX_SERVERS + 1))]
    if bad:
        parser.error(f"--rotate takes a server number from 1 to {MAX_SERVERS}, not {bad[0]}")
    ensure(args.file, args.rotate)
    print(f"host keys: {args.file}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
