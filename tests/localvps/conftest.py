"""Fixtures of the local VPS test: each one starts a real component and stops it again."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator

import pytest

from tests.localvps import images, vps

GATE = "LOCALVPS"


@pytest.fixture(scope="session")
def localvps_stack() -> Iterator[contextlib.ExitStack]:
    """Everything the harness starts is registered here and stopped in reverse order."""
    if os.environ.get(GATE) != "1":
        pytest.skip(f"the local VPS boots a container: run it with {GATE}=1 (make test-localvps)")
    reason = vps.missing_requirements()
    if reason:
        pytest.skip(reason)
    stack = contextlib.ExitStack()
    try:
        yield stack
    finally:
        with vps.PHASES.phase("teardown"):
            stack.close()
    vps.log("phases:\n" + vps.PHASES.summary())


@pytest.fixture(scope="session")
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
        machine.boot()
        vps.AptCacher(bind=machine.host_addr, workdir=machine.workdir, stack=localvps_stack).start()
        machine.wait_for_ssh()
    vps.log(f"{name} is up at {machine.addr} (host side {machine.host_addr})")
    return machine


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if vps.PHASES.durations:
        terminalreporter.section("local VPS phases")
        terminalreporter.write_line(vps.PHASES.summary())


@pytest.fixture(scope="session")
def vps_images(local_vps: vps.LocalVPS) -> dict[str, str]:
    """Docker in the VPS with every image of the stack built locally; inventory variables."""
    with vps.PHASES.phase("image base (debootstrap, cached)"):
        images.build_image_base()
    with vps.PHASES.phase("docker engine (apt in the VPS)"):
        images.install_docker(local_vps)
    with vps.PHASES.phase("images (built in the VPS)"):
        return images.build_all(local_vps)
