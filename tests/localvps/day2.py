"""Day-2 changes against the booted local VPS: a new home address, rotated keys, API keys.

The cloud firewall stand-in: Terraform's Hetzner firewall filters packets before they
reach the server, and tf-apply changes it without SSH. Here a `netdev` table on the VPS's
interface (ingress hook, ahead of every table of the host itself, and never touched by
the roles, which own only `inet llm_vps_filter`) admits SSH only from the admin CIDRs.
"""

from __future__ import annotations

import contextlib
import ipaddress
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.localvps.deploy import BIN, _env
from tests.localvps.vps import REPO, LocalVPS, pick_subnet, run

TABLE = "localvps_cloud_firewall"


@dataclass
class CloudFirewall:
    """The stand-in for the Hetzner firewall of terraform/firewall.tf (SSH rule only)."""

    machine: LocalVPS
    stack: contextlib.ExitStack

    def _nft(self, script: str) -> None:
        # The container's own nft (the common role installs it), in its network namespace.
        cmd = ["nsenter", "-t", str(self.machine.leader), "-m", "-n", "/usr/sbin/nft", "-f", "-"]
        run(cmd, input=script)

    def apply(self, admin_cidrs: list[str]) -> None:
        """What `make tf-apply` does to the SSH rule: admit exactly admin_cidrs."""
        v4 = [c for c in admin_cidrs if ipaddress.ip_network(c).version == 4]
        v6 = [c for c in admin_cidrs if ipaddress.ip_network(c).version == 6]
        rules = []
        if v4:
            rules.append(f"ip saddr {{ {', '.join(v4)} }} tcp dport 22 accept")
        if v6:
            rules.append(f"ip6 saddr {{ {', '.join(v6)} }} tcp dport 22 accept")
        rules.append("tcp dport 22 drop")
        body = "\n    ".join(rules)
        self._nft(
            f"table netdev {TABLE}\ndelete table netdev {TABLE}\n"
            f"table netdev {TABLE} {{\n  chain ingress {{\n"
            f'    type filter hook ingress device "host0" priority -500; policy accept;\n'
            f"    {body}\n  }}\n}}\n"
        )


def add_home_address(machine: LocalVPS) -> str:
    """A second address on our side of the veth pair: the owner's new home address."""
    address = str(pick_subnet()[1])
    run(["ip", "addr", "add", f"{address}/32", "dev", machine.veth])
    return address


def make_key(path: Path) -> Path:
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)])
    return path


def public(key: Path) -> str:
    return key.with_suffix(".pub").read_text().strip()


def logs_in(machine: LocalVPS, key: Path, source: str) -> bool:
    """Whether deploy@VPS lets `key` in when connecting from `source`, offering only it."""
    cmd = ["ssh", *machine.ssh_opts, "-o", f"BindAddress={source}"]
    cmd += ["-i", str(key), f"deploy@{machine.addr}", "true"]
    return subprocess.run(cmd, capture_output=True, check=False, timeout=60).returncode == 0


def port_22_answers(machine: LocalVPS, source: str) -> bool:
    """Whether a TCP connection to port 22 from `source` gets an SSH banner."""
    script = (
        "import socket,sys\n"
        "s=socket.socket(); s.settimeout(3); s.bind((sys.argv[1], 0))\n"
        "try:\n s.connect((sys.argv[2], 22)); print(s.recv(64).decode(errors='replace'))\n"
        "except OSError: pass\n"
    )
    out = subprocess.run(
        [str(BIN / "python"), "-c", script, source, machine.addr],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    ).stdout
    return out.startswith("SSH-")


def write_day2_inventory(
    base: Path,
    out: Path,
    *,
    admin_cidrs: list[str],
    keys: list[str],
    api_keys: list[str],
    source: str,
) -> Path:
    """The base inventory with the owner's day-2 edits, connecting from `source`."""
    inventory = yaml.safe_load(base.read_text())
    group = inventory["all"]["children"]["llm_nodes"]
    group["vars"].update(
        {
            "common_admin_cidrs": admin_cidrs,
            "common_deploy_user_authorized_keys": keys,
            "vault_llm_node_api_keys": api_keys,
        }
    )
    for host in group["hosts"].values():
        host["ansible_ssh_common_args"] += f" -o BindAddress={source}"
    out.write_text(yaml.safe_dump(inventory, sort_keys=False))
    out.chmod(0o600)
    return out


def fresh_controller(workdir: Path) -> dict[str, str]:
    """Environment of a controller with no SSH master connection open (ControlPersist):
    every connection is a new one, from the address it binds to, with its host key checked."""
    control = workdir / f"ssh-control-{len(list(workdir.glob('ssh-control-*')))}"
    control.mkdir(mode=0o700)
    return {"ANSIBLE_SSH_CONTROL_PATH_DIR": str(control)}


def run_infra_file(inventory: Path, test_file: str) -> subprocess.CompletedProcess[str]:
    """One tests/infra module against the VPS through `inventory`."""
    cmd = [str(BIN / "pytest"), test_file, "-o", "addopts=-ra", "-p", "no:cacheprovider"]
    cmd += ["--hosts=ansible://all", f"--ansible-inventory={inventory}", "-q"]
    return subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, check=False)
