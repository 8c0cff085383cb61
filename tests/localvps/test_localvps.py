"""The local Debian 13 VPS: booted with systemd-nspawn, reached over SSH like a Hetzner server.

Runs only with LOCALVPS=1 as root on Linux (make test-localvps); see conftest.py.
"""

from __future__ import annotations

import pytest

from tests.localvps import deploy, vps

pytestmark = pytest.mark.slow


def test_deploy_user_logs_in_with_the_run_key_and_has_passwordless_sudo(
    local_vps: vps.LocalVPS,
) -> None:
    assert local_vps.ssh("sudo -n id -u").strip() == "0"


def test_the_vps_runs_debian_13(local_vps: vps.LocalVPS) -> None:
    assert "VERSION_CODENAME=trixie" in local_vps.ssh("cat /etc/os-release")


def test_apt_installs_packages_through_the_host_cache(local_vps: vps.LocalVPS) -> None:
    local_vps.ssh("sudo apt-get update -q && sudo apt-get install -y -q --no-install-recommends jq")
    assert local_vps.ssh("echo '{\"a\": 1}' | jq .a").strip() == "1"


@pytest.mark.parametrize(
    ("variable", "args", "expected"),
    [
        ("traefik_image", "version", "Version:"),
        ("monitoring_prometheus_image", "--version", "prometheus, version"),
        ("monitoring_alertmanager_image", "--version", "alertmanager, version"),
        ("monitoring_node_exporter_image", "--version", "node_exporter, version"),
    ],
)
def test_docker_in_the_vps_runs_the_locally_built_images(
    local_vps: vps.LocalVPS, vps_images: dict[str, str], variable: str, args: str, expected: str
) -> None:
    out = local_vps.ssh(f"sudo docker run --rm {vps_images[variable]} {args} 2>&1")
    assert expected in out


def test_site_yml_converges_the_vps(site_runs: deploy.SiteRuns) -> None:
    assert (site_runs.first.failed, site_runs.first.unreachable) == (0, 0)


def test_a_second_site_yml_run_changes_nothing(site_runs: deploy.SiteRuns) -> None:
    assert site_runs.second is not None, "the first run failed"
    assert site_runs.second.failed == 0
    assert site_runs.second.changed == 0, deploy.changed_tasks(site_runs.second_log)


def test_the_testinfra_suite_passes_against_the_vps(
    site_runs: deploy.SiteRuns, stand_ins: deploy.StandIns
) -> None:
    if not (vps.REPO / "tests" / "infra").is_dir():
        pytest.skip("tests/infra does not exist yet")
    with vps.PHASES.phase("tests/infra (testinfra)"):
        result = deploy.run_testinfra(site_runs.inventory, {})
    lines = result.stdout.splitlines()
    # What ran and what was skipped (and why), also when everything passed.
    for line in [*(x for x in lines if x.startswith("SKIPPED")), *lines[-1:]]:
        vps.log(f"tests/infra: {line}")
    failures = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
    report = [*failures, result.stdout[-3000:], result.stderr[-2000:]]
    assert result.returncode == 0, "\n".join(report)
