"""One rebuild of the local VPS, shared by every rebuild check (test_localvps_rebuild.py).

The booted VPS is deleted and a new one boots on the same address with a fresh disk, as
`terraform apply -replace=...` does with the primary IPs kept: the same project host key
(Terraform hands var.host_keys to the new server's cloud-init) and the same data directory
(the Hetzner Volume, a host directory bind-mounted at /srv/llm-vps-data, conftest.py).
"""

from __future__ import annotations

import contextlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.localvps import acme_probe, deploy, images, vps
from tests.localvps.day2 import fresh_controller
from tests.support import wait_until

NAME = f"llm.{vps.TEST_DOMAIN}"


@dataclass
class Rebuild:
    machine: vps.LocalVPS
    inventory: Path
    scanned_key: str
    site: deploy.Recap
    site_log: str
    serial_before: object
    serial_after: object
    orders_during_rebuild: int


@dataclass
class Impostor:
    ssh: subprocess.CompletedProcess[str]
    ansible: subprocess.CompletedProcess[str]


def scan(machine: vps.LocalVPS) -> str:
    """The ed25519 host key the server presents: "ssh-ed25519 AAAA..." (no comment)."""
    out = vps.run(["ssh-keyscan", "-t", "ed25519", "-T", "5", machine.addr]).stdout
    return " ".join(out.split()[1:3])


def delete_server(old: vps.LocalVPS) -> None:
    """A deleted Hetzner server is powered off hard (LocalVPS.shutdown), its volume's data
    flushed first."""
    old.shutdown()
    # The kernel may take its time to free the old network namespace: deleting our end of
    # the veth pair frees the name (and the address) for the new server at once.
    veth = Path(f"/sys/class/net/{old.veth}")
    vps.run(["ip", "link", "del", old.veth], check=False)
    vps.wait_for(f"{old.veth} to go", lambda: not veth.exists(), 60)


def new_server(old: vps.LocalVPS, stack: contextlib.ExitStack) -> vps.LocalVPS:
    """A fresh copy of the pristine Debian 13 tree: same name and address, same project host
    key and deploy key, same data directory."""
    machine = vps.LocalVPS(
        name=old.name,
        workdir=old.workdir.with_name(f"{old.workdir.name}-rebuilt"),
        subnet=old.subnet,
        stack=stack,
        hosts=old.hosts,
        binds=list(old.binds),
        host_key=old.host_key,
        login_key=old.key,
    )
    machine.prepare()
    machine.boot()
    machine.wait_for_ssh()
    return machine


def rebuild(
    old: vps.LocalVPS,
    site_runs: deploy.SiteRuns,
    vps_images: dict[str, str],
    stand_ins: deploy.StandIns,
    stack: contextlib.ExitStack,
) -> Rebuild:
    """Delete the VPS, boot its successor and converge it with the unchanged inventory."""
    pebble = stand_ins.pebble
    root = pebble.issuing_root()
    before = acme_probe.served_certificate(old.addr, NAME, root)
    assert before is not None, "the VPS serves no certificate from Pebble before the rebuild"
    orders_before = acme_probe.orders(pebble)
    with vps.PHASES.phase("rebuild: new server, same address and volume"):
        delete_server(old)
        machine = new_server(old, stack)
        scanned = scan(machine)
    with vps.PHASES.phase("rebuild: docker engine and images"):
        images.install_docker(machine)
        assert images.build_all(machine) == vps_images
    with vps.PHASES.phase("rebuild: site.yml with the unchanged inventory"):
        site, site_log = deploy.run_site(
            site_runs.inventory, machine.workdir / "site-1.log", fresh_controller(machine.workdir)
        )
    # Traefik may still be starting (or waiting for its DNS gate's timer) when site.yml ends:
    # wait for it to serve a certificate that verifies (a bound on waiting, not a timing test).
    try:
        after = wait_until(
            lambda: acme_probe.served_certificate(machine.addr, NAME, root),
            "Traefik on the rebuilt server to serve a Pebble certificate",
            timeout=150,
            interval=2,
        )
    except TimeoutError:
        after = None
    return Rebuild(
        machine,
        site_runs.inventory,
        scanned,
        site,
        site_log,
        before["serialNumber"],
        after["serialNumber"] if after else None,
        acme_probe.orders(pebble) - orders_before,
    )


def impostor(rebuilt: Rebuild) -> Impostor:
    """An impostor on the same address: any key the project did not make. Swaps the host
    key of the rebuilt server, so it comes after every other check on it."""
    machine = rebuilt.machine
    machine.ssh(
        "sudo rm -f /etc/ssh/ssh_host_* && sudo ssh-keygen -q -t ed25519 -N '' "
        "-f /etc/ssh/ssh_host_ed25519_key && sudo systemctl restart ssh"
    )
    ssh = subprocess.run(
        machine.ssh_cmd("true"), capture_output=True, text=True, check=False, timeout=60
    )
    # A controller without the SSH master connection site.yml left open (ControlPersist):
    # a new connection, whose host key is checked.
    ping = [str(deploy.BIN / "ansible"), "all", "-i", str(rebuilt.inventory), "-m", "ping"]
    env = {**deploy._env(), **fresh_controller(machine.workdir)}
    ansible = subprocess.run(
        ping, env=env, capture_output=True, text=True, check=False, timeout=120
    )
    return Impostor(ssh, ansible)


def task_outcome(log: str, task: str) -> str:
    """'ok' or 'changed' (or '' if absent) of the first result line after a task's header."""
    lines = log.splitlines()
    for index, line in enumerate(lines):
        if line.startswith(f"TASK [{task}]"):
            for result in lines[index + 1 :]:
                if result.startswith(("ok:", "changed:", "skipping:", "fatal:")):
                    return result.split(":", 1)[0]
    return ""
