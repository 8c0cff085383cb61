"""The host: sshd hardened, firewall with only 22/80/443, fail2ban, upgrades, Docker.

A worker of a multi-node deployment: 22 only, plus llm-node's 8000 and the node exporter's
9100 from the edge's private address alone."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from infra_support import WORKER_PRIVATE_PORTS, Target


def _in_container(host: Any) -> bool:
    out = host.run("systemd-detect-virt --container").stdout.strip()
    return out not in ("", "none")


@pytest.mark.parametrize(
    ("keyword", "value"),
    [
        ("permitrootlogin", "no"),
        ("passwordauthentication", "no"),
        ("kbdinteractiveauthentication", "no"),
        ("permitemptypasswords", "no"),
        ("pubkeyauthentication", "yes"),
        ("x11forwarding", "no"),
    ],
)
def test_sshd_effective_setting(host: Any, keyword: str, value: str) -> None:
    with host.sudo():
        config = host.check_output("sshd -T")
    settings = dict(line.split(" ", 1) for line in config.splitlines() if " " in line)
    assert settings.get(keyword) == value


@pytest.mark.parametrize("service", ["ssh", "nftables", "fail2ban", "docker"])
def test_service_is_enabled_and_running(host: Any, service: str) -> None:
    unit = host.service(service)
    assert (unit.is_enabled, unit.is_running) == (True, True)


def _input_chain(host: Any) -> str:
    with host.sudo():
        return str(host.check_output("nft -n list chain inet llm_vps_filter input"))


def test_firewall_input_policy_is_drop(host: Any) -> None:
    assert "policy drop;" in _input_chain(host)


def _accepted(host: Any) -> dict[int, set[str]]:
    """Each TCP port the input chain accepts, with the sources it names ("" for anyone)."""
    ports: dict[int, set[str]] = {}
    for line in _input_chain(host).splitlines():
        rule = line.strip()
        match = re.search(r"tcp dport (\{[^}]*\}|\d+)(?:\s.*)?\saccept$", rule)
        if match:
            source = re.match(r"ip6? saddr (\{[^}]*\}|\S+) ", rule)
            for port in re.findall(r"\d+", match.group(1)):
                ports.setdefault(int(port), set()).add(source.group(1) if source else "")
    return ports


def test_firewall_accepts_only_ssh_http_and_https(host: Any, target: Target) -> None:
    ports = _accepted(host)
    if target.worker:
        assert set(ports) == {22, *WORKER_PRIVATE_PORTS}
    else:
        assert set(ports) == {22, 80, 443}


@pytest.mark.worker
def test_worker_ports_are_open_to_the_edge_only(host: Any, target: Target) -> None:
    ports = _accepted(host)
    assert target.edge_private_ip, "the inventory names no llm_private_ip of the edge"
    sources = {port: ports.get(port) for port in WORKER_PRIVATE_PORTS}
    assert sources == {port: {target.edge_private_ip} for port in WORKER_PRIVATE_PORTS}


def test_ssh_is_limited_to_the_admin_cidrs(host: Any, target: Target) -> None:
    if target.ssh_source_gate == "cloud":
        pytest.skip("common_ssh_source_gate is cloud: the Hetzner firewall limits SSH sources")
    ssh_rules = [line for line in _input_chain(host).splitlines() if "dport 22 " in line]
    assert ssh_rules and all(" saddr " in line for line in ssh_rules)


def test_containers_cannot_reach_the_metadata_service(host: Any) -> None:
    """The user data there holds the server's SSH host key."""
    with host.sudo():
        chain = host.check_output("nft -n list chain inet llm_vps_filter forward")
    assert "ip daddr 169.254.169.254 drop" in chain


def _public_listeners(host: Any, private_ip: str | None = None) -> set[int]:
    """TCP ports listening on an address other than loopback (and private_ip)."""
    with host.sudo():
        out = host.check_output("ss -Htln")
    ports = set()
    for line in out.splitlines():
        local = line.split()[3]
        address, _, port = local.rpartition(":")
        address = address.strip("[]").split("%")[0]
        if address.startswith("127.") or address in ("::1", private_ip):
            continue
        ports.add(int(port))
    return ports


def test_no_internal_port_listens_on_a_public_address(host: Any, target: Target) -> None:
    if target.worker:
        assert _public_listeners(host, target.private_ip) <= {22}
    else:
        assert _public_listeners(host) <= {22, 80, 443}


def test_fail2ban_watches_sshd(host: Any) -> None:
    with host.sudo():
        status = host.run("fail2ban-client status sshd")
    assert status.rc == 0, status.stderr


def test_unattended_upgrades_run_daily(host: Any) -> None:
    config = host.file("/etc/apt/apt.conf.d/20auto-upgrades").content_string
    assert 'APT::Periodic::Unattended-Upgrade "1";' in config


def test_unattended_upgrades_is_installed(host: Any) -> None:
    assert host.package("unattended-upgrades").is_installed


def test_time_is_synchronised_by_timesyncd(host: Any) -> None:
    if _in_container(host):
        pytest.skip("a container shares its host's clock: timesyncd does not run there")
    assert host.service("systemd-timesyncd").is_running


def _daemon_json(host: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(host.file("/etc/docker/daemon.json").content_string)
    return data


def test_docker_rotates_container_logs(host: Any) -> None:
    assert _daemon_json(host)["log-opts"]["max-size"]


def test_docker_live_restore_is_on(host: Any) -> None:
    assert _daemon_json(host)["live-restore"] is True


def test_docker_compose_v2_is_installed(host: Any) -> None:
    with host.sudo():
        assert host.run("docker compose version").rc == 0
