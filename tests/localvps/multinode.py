"""Two local VPSes joined by a private network of their own, as Hetzner's private network.

Each container keeps its own veth pair to the host (SSH, apt, Pebble: its "public" side)
and gets a second one, `priv0` inside, whose host end is enslaved to a bridge that has no
address on the host: the containers reach each other there and nothing else does, unless a
test puts an address on the bridge to play a stranger on the private network.
"""

from __future__ import annotations

import contextlib
import ipaddress
import random
import re
import secrets
import shutil
import signal
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.localvps import deploy, images, vps

PRIVATE_RANGE = ipaddress.ip_network("10.214.0.0/16")
PRIVATE_IF = "priv0"
# Every host's line of the PLAY RECAP (deploy.RECAP reads the last one only).
RECAP = deploy.RECAP


def pick_private_subnet() -> ipaddress.IPv4Network:
    used = vps._used_networks()
    for net in random.sample(list(PRIVATE_RANGE.subnets(new_prefix=24)), 64):
        if not any(net.overlaps(u) for u in used):
            return net
    raise RuntimeError(f"no free /24 in {PRIVATE_RANGE}")


@dataclass
class PrivateNetwork:
    """A Linux bridge on the host, without an address, that the containers' priv0 join."""

    subnet: ipaddress.IPv4Network
    stack: contextlib.ExitStack
    bridge: str = ""

    def create(self) -> None:
        self.bridge = f"brp-{secrets.token_hex(3)}"
        vps.run(["ip", "link", "add", self.bridge, "type", "bridge"])
        self.stack.callback(vps.run, ["ip", "link", "del", self.bridge], check=False)
        vps.run(["ip", "link", "set", self.bridge, "up"])
        # The host's dockerd sets FORWARD to DROP, which also filters bridged frames.
        if shutil.which("iptables"):
            rule = ["FORWARD", "-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT"]
            vps.run(["iptables", "-I", *rule])
            self.stack.callback(vps.run, ["iptables", "-D", *rule], check=False)

    def address(self, index: int) -> str:
        """As terraform/inventory.tf numbers the servers: .10, .11, ..."""
        return str(self.subnet[10 + index])

    @staticmethod
    def host_end(machine: vps.LocalVPS) -> str:
        return f"vp-{machine.name}"[:15]

    def nspawn_args(self, machine: vps.LocalVPS) -> list[str]:
        return [f"--network-veth-extra={self.host_end(machine)}:{PRIVATE_IF}"]

    def attach(self, machine: vps.LocalVPS, index: int) -> None:
        end = self.host_end(machine)
        vps.wait_for(f"interface {end}", lambda: Path(f"/sys/class/net/{end}").exists(), 30)
        vps.run(["ip", "link", "set", end, "master", self.bridge, "up"])
        inside = ["nsenter", "-t", str(machine.leader), "-n"]
        address = f"{self.address(index)}/{self.subnet.prefixlen}"
        vps.run([*inside, "ip", "addr", "add", address, "dev", PRIVATE_IF])
        vps.run([*inside, "ip", "link", "set", PRIVATE_IF, "up"])

    @contextlib.contextmanager
    def stranger(self) -> Iterator[str]:
        """The host itself on the private network (an address on the bridge), for checking
        what a machine that is not the edge can reach there."""
        address = str(self.subnet[200])
        vps.run(["ip", "addr", "add", f"{address}/{self.subnet.prefixlen}", "dev", self.bridge])
        try:
            yield address
        finally:
            vps.run(["ip", "addr", "del", f"{address}/{self.subnet.prefixlen}",
                     "dev", self.bridge], check=False)  # fmt: skip


def boot_nodes(
    count: int, network: PrivateNetwork, stack: contextlib.ExitStack
) -> list[vps.LocalVPS]:
    """`count` containers, the first one the edge (llm. and monitoring. resolve to it)."""
    machines = []
    for index in range(count):
        name = f"llmmn-{secrets.token_hex(2)}-{index + 1}"
        subnet = vps.pick_subnet()
        machine = vps.LocalVPS(
            name=name,
            workdir=vps.CACHE_DIR / f"run-{name}",
            subnet=subnet,
            stack=stack,
            hosts={f"{n}.{vps.TEST_DOMAIN}": str(subnet[2]) for n in ("llm", "monitoring")}
            if index == 0
            else {},
        )
        machine.nspawn_extra = network.nspawn_args(machine)
        machine.prepare()
        if index > 0:  # one apt-cacher-ng, on the edge's host side
            (machine.rootfs / "etc/apt/apt.conf.d/00localvps-proxy").write_text(
                f'Acquire::http::Proxy "http://{machines[0].host_addr}:{vps.APT_CACHER_PORT}";\n'
            )
        machine.boot()
        network.attach(machine, index)
        if index == 0:
            vps.AptCacher(bind=machine.host_addr, workdir=machine.workdir, stack=stack).start()
        machines.append(machine)
    # Runs first at teardown (the stack is last in, first out): all containers get their
    # SIGTERM at once, so their shutdowns overlap instead of queueing one after the other.
    stack.callback(_signal_all, machines)
    for machine in machines:
        machine.wait_for_ssh()
    return machines


def _signal_all(machines: list[vps.LocalVPS]) -> None:
    for machine in machines:
        if machine.proc is not None and machine.proc.poll() is None:
            machine.proc.send_signal(signal.SIGTERM)


def prepare_images(machines: list[vps.LocalVPS]) -> dict[str, str]:
    """Docker and the locally built images in every container, side by side."""

    def one(machine: vps.LocalVPS) -> dict[str, str]:
        images.install_docker(machine)
        return images.build_all(machine)

    with ThreadPoolExecutor(len(machines)) as pool:
        built = list(pool.map(one, machines))
    return built[0]


def write_inventory(
    machines: list[vps.LocalVPS],
    network: PrivateNetwork,
    built: dict[str, str],
    stand_ins: deploy.StandIns,
) -> tuple[Path, dict[str, object]]:
    """deploy.write_inventory's single-node inventory grown to terraform's multi-node shape:
    every host in llm_nodes with llm_private_ip, the first one in edge."""
    edge = machines[0]
    path, _ = deploy.write_inventory(
        edge,
        built,
        pebble_directory=stand_ins.pebble.directory_url,
        pebble_listener_ca=str(stand_ins.pebble.listener_ca),
        model_url=stand_ins.model_url,
        model_md5=stand_ins.model_md5,
        proxy_url=stand_ins.proxy.url,
        apt_proxy_url=f"http://{edge.host_addr}:{vps.APT_CACHER_PORT}",
        issuing_root=stand_ins.pebble.issuing_root(),
        dns_resolver=(stand_ins.pebble.bind, stand_ins.pebble.dns_port),
    )
    inventory = yaml.safe_load(path.read_text())
    group = inventory["all"]["children"]["llm_nodes"]
    group["vars"]["common_admin_cidrs"] = [str(m.subnet) for m in machines]
    # As Terraform: every server gets the same ssh_public_keys (here, each node's login key),
    # and the authorised keys are exactly those.
    group["vars"]["common_deploy_user_authorized_keys"] = [
        m.key.with_suffix(".pub").read_text().strip() for m in machines
    ]
    group["vars"]["llm_node_node_exporter_image"] = built["monitoring_node_exporter_image"]
    group["vars"]["llm_node_node_exporter_pull"] = "never"
    # Bearer API keys on: the balanced route's key router, and every node accepting the
    # edge's own key for basic-auth users (test_multi_node.py checks both).
    group["vars"]["vault_llm_node_api_keys"] = [secrets.token_urlsafe(32)]
    group["hosts"] = {
        m.name: {
            "ansible_host": m.addr,
            "ansible_user": "deploy",
            "ansible_ssh_private_key_file": str(m.key),
            "ansible_ssh_common_args": " ".join(m.ssh_opts),
            "llm_private_ip": network.address(index),
        }
        for index, m in enumerate(machines)
    }
    inventory["all"]["children"] = {"edge": {"hosts": {edge.name: {}}}, "llm_nodes": group}
    path.write_text(yaml.safe_dump(inventory, sort_keys=False))
    return path, group["vars"]


def recaps(text: str) -> dict[str, deploy.Recap]:
    """Every host's line of the last PLAY RECAP."""
    last = text.rsplit("PLAY RECAP", 1)[-1]
    return {
        host: deploy.Recap(int(ok), int(changed), int(unreachable), int(failed))
        for host, ok, changed, unreachable, failed in RECAP.findall(last)
    }


def run_site(inventory: Path, log_path: Path) -> tuple[dict[str, deploy.Recap], str]:
    cmd = [str(deploy.BIN / "ansible-playbook"), "-i", str(inventory), "site.yml"]
    with log_path.open("w") as out:
        subprocess.run(
            cmd,
            cwd=vps.REPO / "ansible",
            env=deploy._env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    text = log_path.read_text()
    found = recaps(text)
    vps.log(f"site.yml (multi-node): {found} (log {log_path})")
    return found, text


def metric_total(machine: vps.LocalVPS, url: str, name: str) -> float:
    """Sum of a counter's samples, read inside llm-node's container (its port is not
    reachable from the test host on either node)."""
    script = (
        f"import urllib.request; print(urllib.request.urlopen('{url}/metrics').read().decode())"
    )
    text = machine.ssh(f'sudo docker exec llm-node python -c "{script}"')
    pattern = re.compile(rf"^{re.escape(name)}(\{{[^}}]*\}})? ([0-9.e+-]+)$", re.M)
    return sum(float(value) for _, value in pattern.findall(text))
