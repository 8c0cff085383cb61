"""A rebuilt server finds its data volume again: no model download, no new certificate.

Runs after the other local VPS modules. The VPS's data directory is a host directory
bind-mounted at /srv/llm-vps-data (conftest.py), as the Hetzner Volume is on a real server.
The VPS is shut down and a fresh container (a new copy of the pristine Debian 13 tree, the
same address, as the primary IPs keep it) boots on the same directory; site.yml converges
it from scratch.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.localvps import acme_probe, deploy, images, vps
from tests.localvps.vps import DATA_DIR

pytestmark = pytest.mark.slow

NAME = f"llm.{vps.TEST_DOMAIN}"


@dataclass
class Rebuilt:
    machine: vps.LocalVPS
    serial_before: object
    serial_after: object
    orders_during_rebuild: int
    converge: deploy.Recap
    converge_log: str


def rebuild(old: vps.LocalVPS, stack: contextlib.ExitStack) -> vps.LocalVPS:
    """Shut the VPS down and boot a fresh one, same address, on the same data directory."""
    old.shutdown()
    vps.wait_for(f"{old.veth} to go", lambda: not Path(f"/sys/class/net/{old.veth}").exists(), 90)
    name = f"llmvps-{secrets.token_hex(2)}"
    new = vps.LocalVPS(
        name=name,
        workdir=vps.CACHE_DIR / f"run-{name}",
        subnet=old.subnet,
        stack=stack,
        hosts=old.hosts,
        binds=list(old.binds),
    )
    new.prepare()
    new.boot()
    new.wait_for_ssh()
    return new


@pytest.fixture(scope="module")
def rebuilt(
    site_runs: deploy.SiteRuns,
    local_vps: vps.LocalVPS,
    stand_ins: deploy.StandIns,
    localvps_stack: contextlib.ExitStack,
) -> Rebuilt:
    if site_runs.second is None:
        pytest.skip("the main converge failed")
    pebble = stand_ins.pebble
    root = pebble.issuing_root()
    before = acme_probe.served_certificate(local_vps.addr, NAME, root)
    assert before is not None, "the VPS serves no certificate from Pebble before the rebuild"
    orders_before = acme_probe.orders(pebble)
    with vps.PHASES.phase("rebuild on the data volume"):
        machine = rebuild(local_vps, localvps_stack)
        images.install_docker(machine)
        image_vars = images.build_all(machine)
        inventory, _ = deploy.write_inventory(
            machine,
            image_vars,
            pebble_directory=pebble.directory_url,
            pebble_listener_ca=str(pebble.listener_ca),
            model_url=stand_ins.model_url,
            model_md5=stand_ins.model_md5,
            proxy_url=stand_ins.proxy.url,
            apt_proxy_url=f"http://{machine.host_addr}:{vps.APT_CACHER_PORT}",
            issuing_root=root,
            dns_resolver=(pebble.bind, pebble.dns_port),
        )
        recap, text = deploy.run_site(inventory, machine.workdir / "site-rebuilt.log")
    after = acme_probe.served_certificate(machine.addr, NAME, root)
    return Rebuilt(
        machine,
        before["serialNumber"],
        after["serialNumber"] if after else None,
        acme_probe.orders(pebble) - orders_before,
        recap,
        text,
    )


def task_outcome(log: str, task: str) -> str:
    """'ok' or 'changed' (or '' if absent) of the first result line after a task's header."""
    lines = log.splitlines()
    for index, line in enumerate(lines):
        if line.startswith(f"TASK [{task}]"):
            for result in lines[index + 1 :]:
                if result.startswith(("ok:", "changed:", "skipping:", "fatal:")):
                    return result.split(":", 1)[0]
    return ""


def test_rebuild_keeps_data_the_fresh_server_converges(rebuilt: Rebuilt) -> None:
    assert (rebuilt.converge.failed, rebuilt.converge.unreachable) == (0, 0)


def test_rebuild_keeps_data_the_model_is_not_downloaded_again(rebuilt: Rebuilt) -> None:
    assert task_outcome(rebuilt.converge_log, "llm_node : Download and verify the model") == "ok"


def test_rebuild_keeps_data_the_same_certificate_is_served(rebuilt: Rebuilt) -> None:
    assert rebuilt.serial_after == rebuilt.serial_before


def test_rebuild_keeps_data_no_certificate_is_ordered(rebuilt: Rebuilt) -> None:
    assert rebuilt.orders_during_rebuild == 0


def test_rebuild_keeps_data_acme_json_stays_private(rebuilt: Rebuilt) -> None:
    out = rebuilt.machine.ssh(f"sudo stat -c '%a %U' {DATA_DIR}/traefik/acme.json").strip()
    assert out == "600 root"


@pytest.mark.parametrize(
    ("container", "destination", "source"),
    [
        ("traefik", "/etc/traefik/acme", f"{DATA_DIR}/traefik"),
        ("llm-node", "/models", f"{DATA_DIR}/models"),
        ("prometheus", "/prometheus", f"{DATA_DIR}/monitoring/prometheus"),
        ("alertmanager", "/alertmanager", f"{DATA_DIR}/monitoring/alertmanager"),
    ],
)
def test_rebuild_keeps_data_every_service_keeps_its_state_on_the_volume(
    rebuilt: Rebuilt, container: str, destination: str, source: str
) -> None:
    mounts = json.loads(rebuilt.machine.ssh(f"sudo docker inspect {container}"))[0]["Mounts"]
    assert {m["Destination"]: m["Source"] for m in mounts}.get(destination) == source


def test_rebuild_keeps_data_the_testinfra_suite_passes_on_the_rebuilt_server(
    rebuilt: Rebuilt,
) -> None:
    inventory = rebuilt.machine.workdir / "inventory.yml"
    with vps.PHASES.phase("tests/infra on the rebuilt server"):
        result = deploy.run_testinfra(inventory, {})
    failures = [line for line in result.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    assert result.returncode == 0, "\n".join([*failures, result.stdout[-3000:]])
