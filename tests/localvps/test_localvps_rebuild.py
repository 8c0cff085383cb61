"""A rebuild, last in the package: the booted VPS is deleted and a new one boots on the same
address with a fresh disk and the same data volume (tests/localvps/rebuild.py).

The project made the host key before the first boot (scripts/host_keys.py's generator) and
the new server gets the same one: the unchanged inventory and known_hosts connect with
StrictHostKeyChecking=yes, without a prompt. The new server finds its data volume again: no
model download, no new certificate. Last, a host presenting any other key is refused.
"""

from __future__ import annotations

import contextlib
import json

import pytest
import yaml

from tests.localvps import deploy, rebuild, vps
from tests.localvps.day2 import fresh_controller
from tests.localvps.vps import DATA_DIR

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def rebuilt(
    local_vps: vps.LocalVPS,
    site_runs: deploy.SiteRuns,
    vps_images: dict[str, str],
    stand_ins: deploy.StandIns,
    localvps_stack: contextlib.ExitStack,
) -> rebuild.Rebuild:
    if site_runs.second is None or site_runs.second.failed:
        pytest.skip("the first deployment did not converge")
    return rebuild.rebuild(local_vps, site_runs, vps_images, stand_ins, localvps_stack)


@pytest.fixture(scope="module")
def impostor(rebuilt: rebuild.Rebuild) -> rebuild.Impostor:
    """Only the last tests of this module use it: it swaps the rebuilt server's host key."""
    return rebuild.impostor(rebuilt)


def test_rebuild_the_new_server_presents_the_projects_host_key(rebuilt: rebuild.Rebuild) -> None:
    assert rebuilt.machine.host_key is not None
    assert rebuilt.scanned_key == rebuilt.machine.host_key["public"].rsplit(" ", 1)[0]


def test_rebuild_the_inventory_checks_host_keys_strictly(rebuilt: rebuild.Rebuild) -> None:
    inventory = yaml.safe_load(rebuilt.inventory.read_text())
    (host,) = inventory["all"]["children"]["llm_nodes"]["hosts"].values()
    assert "-o StrictHostKeyChecking=yes" in host["ansible_ssh_common_args"]


def test_rebuild_converges_with_strict_checking_and_no_prompt(rebuilt: rebuild.Rebuild) -> None:
    assert (rebuilt.site.failed, rebuilt.site.unreachable) == (0, 0), rebuilt.site_log[-4000:]


def test_rebuild_keeps_data_the_fresh_server_converges(rebuilt: rebuild.Rebuild) -> None:
    assert (rebuilt.site.failed, rebuilt.site.unreachable) == (0, 0)


def test_rebuild_keeps_data_the_model_is_not_downloaded_again(rebuilt: rebuild.Rebuild) -> None:
    outcome = rebuild.task_outcome(rebuilt.site_log, "llm_node : Download and verify the model")
    assert outcome == "ok"


def test_rebuild_keeps_data_the_same_certificate_is_served(rebuilt: rebuild.Rebuild) -> None:
    assert rebuilt.serial_after == rebuilt.serial_before


def test_rebuild_keeps_data_no_certificate_is_ordered(rebuilt: rebuild.Rebuild) -> None:
    assert rebuilt.orders_during_rebuild == 0


def test_rebuild_keeps_data_acme_json_stays_private(rebuilt: rebuild.Rebuild) -> None:
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
    rebuilt: rebuild.Rebuild, container: str, destination: str, source: str
) -> None:
    mounts = json.loads(rebuilt.machine.ssh(f"sudo docker inspect {container}"))[0]["Mounts"]
    assert {m["Destination"]: m["Source"] for m in mounts}.get(destination) == source


def test_rebuild_keeps_data_the_testinfra_suite_passes_on_the_rebuilt_server(
    rebuilt: rebuild.Rebuild,
) -> None:
    with vps.PHASES.phase("tests/infra on the rebuilt server"):
        result = deploy.run_testinfra(rebuilt.inventory, fresh_controller(rebuilt.machine.workdir))
    failures = [line for line in result.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    assert result.returncode == 0, "\n".join([*failures, result.stdout[-3000:]])


# Last: these swap the rebuilt server's host key.
def test_rebuild_ssh_refuses_a_host_with_a_key_the_project_does_not_know(
    impostor: rebuild.Impostor,
) -> None:
    result = impostor.ssh
    assert (result.returncode, "Host key verification failed" in result.stderr) == (255, True)


def test_rebuild_ansible_refuses_a_host_with_a_key_the_project_does_not_know(
    impostor: rebuild.Impostor,
) -> None:
    result = impostor.ansible
    assert (result.returncode != 0, "UNREACHABLE" in result.stdout) == (True, True), result.stdout
