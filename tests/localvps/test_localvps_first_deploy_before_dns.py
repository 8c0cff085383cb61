"""A first deploy before the domain is delegated: the names resolve elsewhere.

Runs after test_localvps.py on the same VPS (pytest takes the files in name order). Traefik
and its acme.json are removed, as on a server where Traefik never ran; then pebble-
challtestsrv (the "public DNS" of the test) answers a foreign address for the names, and
site.yml runs. Traefik must not be started, so Pebble gets no order at all, and the run
must say what to do. Once the answers are corrected, the certificate must come with no
further step: the role's llm-vps-dns-gate.timer starts Traefik.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.localvps import acme_probe, deploy, vps
from tests.support import wait_until

pytestmark = pytest.mark.slow

ELSEWHERE = "192.0.2.10"  # TEST-NET-1: an address that is certainly not the VPS
NAMES = [f"llm.{vps.TEST_DOMAIN}", f"monitoring.{vps.TEST_DOMAIN}"]
TRAEFIK_RUNNING = "sudo docker ps -q --filter name=^traefik$ --filter status=running"
ACME_JSON = f"{vps.DATA_DIR}/traefik/acme.json"


@dataclass
class BeforeDNS:
    converge: deploy.Recap
    converge_log: str
    running_after_converge: str
    orders_during_wrong_dns: int
    again: deploy.Recap
    again_log: str
    running_while_waiting: str
    certificate: dict[str, object] | None
    orders_after_fix: int
    timer_while_waiting: str
    timer_after_start: str
    gate_log: str


@pytest.fixture(scope="module")
def before_dns(
    site_runs: deploy.SiteRuns, local_vps: vps.LocalVPS, stand_ins: deploy.StandIns
) -> BeforeDNS:
    if site_runs.second is None:
        pytest.skip("the main converge failed")
    pebble = stand_ins.pebble
    root = pebble.issuing_root()
    with vps.PHASES.phase("first deploy before DNS"):
        # The names point elsewhere before Traefik stops: llm-vps-dns-gate.timer (every 5 s
        # here) starts a stopped Traefik as soon as DNS is right, so stopping it first races
        # the timer (a CI run failed so: Traefik ran again before the answers changed).
        acme_probe.point_names_at(pebble, NAMES, ELSEWHERE)
        orders_before = acme_probe.orders(pebble)
        try:
            # A server where Traefik never ran: no container, no certificates.
            local_vps.ssh(
                f"cd /opt/llm-vps/traefik && sudo docker compose down && sudo rm -f {ACME_JSON}"
            )
            converge, converge_log = deploy.run_site(
                site_runs.inventory, local_vps.workdir / "site-before-dns.log"
            )
            running = local_vps.ssh(TRAEFIK_RUNNING).strip()
            # A user running the playbook again while waiting changes nothing either.
            again, again_log = deploy.run_site(
                site_runs.inventory, local_vps.workdir / "site-before-dns-2.log"
            )
            running_while_waiting = local_vps.ssh(TRAEFIK_RUNNING).strip()
            timer_while_waiting = gate_timer(local_vps)
            orders_wrong = acme_probe.orders(pebble) - orders_before
        finally:
            acme_probe.restore_names(pebble, NAMES)
        certificate = settled_certificates(local_vps, root)
        # The gate switches its timer off once `docker compose up --wait` is back, which
        # waits for Traefik's health check: possibly after the certificates came.
        try:
            timer_after_start = wait_until(
                lambda: "inactive" if gate_timer(local_vps) == "inactive" else "",
                "the DNS gate's timer to switch itself off",
                timeout=150,
                interval=2,
            )
        except TimeoutError:
            timer_after_start = gate_timer(local_vps)
        gate_log = local_vps.ssh(
            "sudo journalctl -u llm-vps-dns-gate -n 40 --no-pager", check=False
        )
    return BeforeDNS(
        converge,
        converge_log,
        running,
        orders_wrong,
        again,
        again_log,
        running_while_waiting,
        certificate,
        acme_probe.orders(pebble) - orders_before,
        timer_while_waiting,
        timer_after_start,
        gate_log,
    )


def gate_timer(local_vps: vps.LocalVPS) -> str:
    """`systemctl is-active` of llm-vps-dns-gate.timer: active or inactive."""
    return local_vps.ssh("systemctl is-active llm-vps-dns-gate.timer", check=False).strip()


def settled_certificates(local_vps: vps.LocalVPS, root: str) -> dict[str, object] | None:
    """The certificate served for llm. once both names are served and stored in acme.json
    (None if that takes over 180 s). The scenarios after this one (the rebuild keeps
    acme.json) start from a settled server, not from an order still in flight."""

    def settled() -> dict[str, object] | None:
        served = [acme_probe.served_certificate(local_vps.addr, name, root) for name in NAMES]
        if None in served:
            return None
        stored = acme_probe.stored_names(local_vps.ssh(f"sudo cat {ACME_JSON}"))
        return served[0] if stored >= set(NAMES) else None

    try:
        return wait_until(settled, "both certificates served and stored", timeout=180, interval=2)
    except TimeoutError:
        return None


def test_first_deploy_before_dns_converges(before_dns: BeforeDNS) -> None:
    assert (before_dns.converge.failed, before_dns.converge.unreachable) == (0, 0)


def test_first_deploy_before_dns_does_not_start_traefik(before_dns: BeforeDNS) -> None:
    assert before_dns.running_after_converge == ""


def words(text: str) -> str:
    """The text with every run of white space as one space (Ansible wraps long messages)."""
    return " ".join(text.split())


def test_first_deploy_before_dns_says_which_name_resolves_where(before_dns: BeforeDNS) -> None:
    expected = f"llm.{vps.TEST_DOMAIN}: resolves to {ELSEWHERE}, which is not this server"
    assert expected in words(before_dns.converge_log)


def test_first_deploy_before_dns_says_what_to_delegate_and_that_nothing_else_is_needed(
    before_dns: BeforeDNS,
) -> None:
    log = words(before_dns.converge_log)
    assert "set its NS records to" in log
    assert "llm-vps-dns-gate.timer on the server checks every 5 s and starts Traefik" in log


def test_first_deploy_before_dns_orders_no_certificate_while_dns_is_wrong(
    before_dns: BeforeDNS,
) -> None:
    assert before_dns.orders_during_wrong_dns == 0


def test_first_deploy_before_dns_a_second_run_while_waiting_changes_nothing(
    before_dns: BeforeDNS,
) -> None:
    assert (before_dns.again.failed, before_dns.again.changed) == (0, 0), deploy.changed_tasks(
        before_dns.again_log
    )
    assert before_dns.running_while_waiting == ""


def test_first_deploy_before_dns_certificate_comes_once_dns_is_right(
    before_dns: BeforeDNS,
) -> None:
    assert before_dns.certificate is not None, "no certificates served and stored within 180 s"


def test_first_deploy_before_dns_one_order_per_name_once_dns_is_right(
    before_dns: BeforeDNS,
) -> None:
    assert before_dns.orders_after_fix <= len(NAMES)


def test_first_deploy_before_dns_the_gate_runs_only_while_traefik_waits(
    before_dns: BeforeDNS,
) -> None:
    """On while waiting; off once it has started Traefik (so it never races a later
    converge's own start of Traefik, nor restarts a Traefik stopped by hand)."""
    assert (before_dns.timer_while_waiting, before_dns.timer_after_start) == (
        "active",
        "inactive",
    ), before_dns.gate_log
