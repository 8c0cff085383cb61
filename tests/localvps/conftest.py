"""Fixtures of the local VPS test: each one starts a real component and stops it again."""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.localvps import deploy, images, services, vps

GATE = "LOCALVPS"


@pytest.fixture(scope="package")
def localvps_stack(request: pytest.FixtureRequest) -> Iterator[contextlib.ExitStack]:
    """Everything the harness starts is registered here and stopped in reverse order."""
    vps.set_terminal(request.config)
    if os.environ.get(GATE) != "1":
        pytest.skip(
            f"{GATE} is not 1: the local VPS is switched off"
            f" (make test and make test-localvps set {GATE}=1)"
        )
    reason = vps.missing_requirements()
    if reason:
        pytest.skip(reason)
    stack = contextlib.ExitStack()
    try:
        yield stack
    finally:
        if os.environ.get("LOCALVPS_HOLD"):
            vps.log("LOCALVPS_HOLD is set: press Enter to tear everything down")
            sys.__stdin__.readline()
        with vps.PHASES.phase("teardown"):
            stack.close()


@pytest.fixture(scope="package")
def local_vps(localvps_stack: contextlib.ExitStack) -> vps.LocalVPS:
    """A booted Debian 13 container: deploy@address with a per-run key and passwordless sudo."""
    with vps.PHASES.phase("rootfs (debootstrap, cached)"):
        vps.build_rootfs()
    with vps.PHASES.phase("boot (copy, nspawn, ssh)"):
        name = f"llmvps-{secrets.token_hex(2)}"
        subnet = vps.pick_subnet()
        machine = vps.LocalVPS(
            name=name,
            workdir=vps.CACHE_DIR / f"run-{name}",
            subnet=subnet,
            stack=localvps_stack,
            hosts={f"{n}.{vps.TEST_DOMAIN}": str(subnet[2]) for n in ("llm", "monitoring")},
        )
        machine.prepare()
        # The data volume of a Hetzner server: a host directory that outlives the container
        # (test_localvps_rebuild_keeps_data.py boots a second container on it).
        (machine.workdir / "data").mkdir()
        machine.binds.append(f"{machine.workdir / 'data'}:{vps.DATA_DIR}")
        machine.boot()
        vps.AptCacher(bind=machine.host_addr, workdir=machine.workdir, stack=localvps_stack).start()
        machine.wait_for_ssh()
    vps.log(f"{name} is up: {' '.join(machine.ssh_cmd())}")
    return machine


@pytest.fixture(scope="package")
def stand_ins(local_vps: vps.LocalVPS, localvps_stack: contextlib.ExitStack) -> deploy.StandIns:
    """Pebble + its DNS, the tiny model on a local URL, the CONNECT proxy for image builds."""
    reason = services.pebble_missing()
    if reason:
        pytest.skip(reason)
    model = Path(os.environ.get("LLM_TEST_MODEL", ""))
    if not model.is_file():
        pytest.skip("LLM_TEST_MODEL is not set to the tiny model (make model)")
    with vps.PHASES.phase("stand-ins (pebble, model, proxy)"):
        pebble = services.Pebble(
            bind=local_vps.host_addr,
            vps_addr=local_vps.addr,
            workdir=local_vps.workdir,
            stack=localvps_stack,
        )
        pebble.start()
        base_url, _ = vps.serve_directory(model.parent, local_vps.host_addr, localvps_stack)
        proxy = services.ConnectProxy(local_vps.host_addr, localvps_stack)
        return deploy.StandIns(pebble, f"{base_url}/{model.name}", vps.md5sum(model), proxy)


@pytest.fixture(scope="package")
def site_runs(
    local_vps: vps.LocalVPS, vps_images: dict[str, str], stand_ins: deploy.StandIns
) -> deploy.SiteRuns:
    """site.yml run twice against the VPS, as a user runs it after terraform apply."""
    if not (vps.REPO / "ansible" / "site.yml").exists():
        pytest.skip("ansible/site.yml does not exist yet")
    inventory, variables = deploy.write_inventory(
        local_vps,
        vps_images,
        pebble_directory=stand_ins.pebble.directory_url,
        pebble_listener_ca=str(stand_ins.pebble.listener_ca),
        model_url=stand_ins.model_url,
        model_md5=stand_ins.model_md5,
        proxy_url=stand_ins.proxy.url,
        apt_proxy_url=f"http://{local_vps.host_addr}:{vps.APT_CACHER_PORT}",
        issuing_root=stand_ins.pebble.issuing_root(),
        dns_resolver=(stand_ins.pebble.bind, stand_ins.pebble.dns_port),
    )
    with vps.PHASES.phase("site.yml, first run"):
        first, _ = deploy.run_site(inventory, local_vps.workdir / "site-1.log")
    second, second_log = None, ""
    if first.failed == 0 and first.unreachable == 0:
        with vps.PHASES.phase("site.yml, second run"):
            second, second_log = deploy.run_site(inventory, local_vps.workdir / "site-2.log")
    return deploy.SiteRuns(inventory, variables, first, second, second_log)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if vps.PHASES.durations:
        terminalreporter.section("local VPS phases")
        terminalreporter.write_line(vps.PHASES.summary())


@pytest.fixture(scope="package")
def vps_images(local_vps: vps.LocalVPS) -> dict[str, str]:
    """Docker in the VPS with every image of the stack built locally; inventory variables."""
    with vps.PHASES.phase("image base (debootstrap, cached)"):
        images.build_image_base()
    with vps.PHASES.phase("docker engine (apt in the VPS)"):
        images.install_docker(local_vps)
    with vps.PHASES.phase("images (built in the VPS)"):
        return images.build_all(local_vps)
