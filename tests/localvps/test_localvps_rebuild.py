"""A rebuild, last in the package: the booted VPS is deleted and a new one boots on the same
address with a fresh disk, as `terraform apply -replace=...` does with the primary IPs kept.

The project made the host key before the first boot (scripts/host_keys.py's generator) and
the new server gets the same one, as Terraform hands var.host_keys to the new server's
cloud-init: the unchanged inventory and known_hosts connect with StrictHostKeyChecking=yes,
without a prompt. A host presenting any other key is refused.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.localvps import deploy, images, vps
from tests.localvps.day2 import fresh_controller

pytestmark = pytest.mark.slow


@dataclass
class Rebuild:
    machine: vps.LocalVPS
    inventory: Path
    scanned_key: str
    site: deploy.Recap
    site_log: str
    impostor_ssh: subprocess.CompletedProcess[str]
    impostor_ansible: subprocess.CompletedProcess[str]


def _scan(machine: vps.LocalVPS) -> str:
    """The ed25519 host key the server presents: "ssh-ed25519 AAAA..." (no comment)."""
    out = vps.run(["ssh-keyscan", "-t", "ed25519", "-T", "5", machine.addr]).stdout
    return " ".join(out.split()[1:3])


@pytest.fixture(scope="module")
def rebuild(
    local_vps: vps.LocalVPS,
    site_runs: deploy.SiteRuns,
    vps_images: dict[str, str],
    localvps_stack: contextlib.ExitStack,
) -> Rebuild:
    if site_runs.second is None or site_runs.second.failed:
        pytest.skip("the first deployment did not converge")
    with vps.PHASES.phase("rebuild: new server, same address"):
        # The old server is deleted, not shut down: kill its init, and with it everything
        # in its namespaces.
        assert local_vps.proc is not None
        os.kill(local_vps.leader, signal.SIGKILL)
        local_vps.proc.wait(timeout=60)
        # The kernel may take its time to free the old network namespace: deleting our end
        # of the veth pair frees the name (and the address) for the new server at once.
        veth = Path(f"/sys/class/net/{local_vps.veth}")
        vps.run(["ip", "link", "del", local_vps.veth], check=False)
        vps.wait_for(f"{local_vps.veth} to go", lambda: not veth.exists(), 60)
        machine = vps.LocalVPS(
            name=local_vps.name,
            workdir=local_vps.workdir.with_name(f"{local_vps.workdir.name}-rebuilt"),
            subnet=local_vps.subnet,
            stack=localvps_stack,
            hosts=local_vps.hosts,
            host_key=local_vps.host_key,
            login_key=local_vps.key,
        )
        machine.prepare()
        machine.boot()
        machine.wait_for_ssh()
        scanned = _scan(machine)
    with vps.PHASES.phase("rebuild: docker engine and images"):
        images.install_docker(machine)
        assert images.build_all(machine) == vps_images
    with vps.PHASES.phase("rebuild: site.yml with the unchanged inventory"):
        site, site_log = deploy.run_site(
            site_runs.inventory, machine.workdir / "site-1.log", fresh_controller(machine.workdir)
        )
    # An impostor on the same address: any key the project did not make.
    machine.ssh(
        "sudo rm -f /etc/ssh/ssh_host_* && sudo ssh-keygen -q -t ed25519 -N '' "
        "-f /etc/ssh/ssh_host_ed25519_key && sudo systemctl restart ssh"
    )
    impostor_ssh = subprocess.run(
        machine.ssh_cmd("true"), capture_output=True, text=True, check=False, timeout=60
    )
    # A controller without the SSH master connection site.yml left open (ControlPersist):
    # a new connection, whose host key is checked.
    ping = [str(deploy.BIN / "ansible"), "all", "-i", str(site_runs.inventory), "-m", "ping"]
    env = {**deploy._env(), **fresh_controller(machine.workdir)}
    impostor_ansible = subprocess.run(
        ping, env=env, capture_output=True, text=True, check=False, timeout=120
    )
    return Rebuild(
        machine, site_runs.inventory, scanned, site, site_log, impostor_ssh, impostor_ansible
    )


def test_rebuild_the_new_server_presents_the_projects_host_key(rebuild: Rebuild) -> None:
    assert rebuild.machine.host_key is not None
    assert rebuild.scanned_key == rebuild.machine.host_key["public"].rsplit(" ", 1)[0]


def test_rebuild_the_inventory_checks_host_keys_strictly(rebuild: Rebuild) -> None:
    inventory = yaml.safe_load(rebuild.inventory.read_text())
    (host,) = inventory["all"]["children"]["llm_nodes"]["hosts"].values()
    assert "-o StrictHostKeyChecking=yes" in host["ansible_ssh_common_args"]


def test_rebuild_converges_with_strict_checking_and_no_prompt(rebuild: Rebuild) -> None:
    assert (rebuild.site.failed, rebuild.site.unreachable) == (0, 0), rebuild.site_log[-4000:]


def test_rebuild_ssh_refuses_a_host_with_a_key_the_project_does_not_know(
    rebuild: Rebuild,
) -> None:
    result = rebuild.impostor_ssh
    assert (result.returncode, "Host key verification failed" in result.stderr) == (255, True)


def test_rebuild_ansible_refuses_a_host_with_a_key_the_project_does_not_know(
    rebuild: Rebuild,
) -> None:
    result = rebuild.impostor_ansible
    assert (result.returncode != 0, "UNREACHABLE" in result.stdout) == (True, True), result.stdout
