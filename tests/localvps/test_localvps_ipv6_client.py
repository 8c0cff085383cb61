"""IPv6 clients are seen as themselves by Traefik (docker_ipv6_nat + an IPv6 Docker network).

Runs after the main deployment on the same VPS, which gets a ULA /64 on its veth pair
(tests/localvps/ipv6.py). Without ip6tables NAT, Docker's userland proxy would hand every
IPv6 connection to Traefik from the bridge gateway: one address in the access log, one
rate-limit bucket for all IPv6 clients.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass

import pytest

from tests.localvps import deploy, ipv6, vps

pytestmark = pytest.mark.slow

NAME = f"llm.{vps.TEST_DOMAIN}"


@dataclass
class Clients:
    machine: vps.LocalVPS
    pair: ipv6.IPv6Pair
    root: str


@pytest.fixture(scope="module")
def clients(
    site_runs: deploy.SiteRuns, local_vps: vps.LocalVPS, stand_ins: deploy.StandIns
) -> Clients:
    if site_runs.second is None:
        pytest.skip("the main converge failed")
    with vps.PHASES.phase("IPv6 clients"):
        pair = ipv6.add_ipv6(local_vps)
    return Clients(local_vps, pair, stand_ins.pebble.issuing_root())


def client_hosts(machine: vps.LocalVPS, path: str) -> list[str]:
    """ClientHost of every access-log entry (Traefik's JSON lines on stdout) for path."""
    hosts = []
    for line in machine.ssh("sudo docker logs traefik 2>&1").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("RequestPath") == path:
            hosts.append(entry.get("ClientHost"))
    return hosts


def probe(clients: Clients, address: str, source: str) -> list[str]:
    path = f"/probe-{secrets.token_hex(4)}"
    codes = ipv6.statuses(NAME, address, source, clients.root, path, 1)
    assert codes == [401], codes  # routed to the API, stopped by basic auth
    return client_hosts(clients.machine, path)


def test_ipv6_client_address_is_in_the_access_log(clients: Clients) -> None:
    source = clients.pair.clients[0]
    assert probe(clients, clients.pair.vps, source) == [source]


def test_ipv6_client_ipv4_clients_are_still_seen_as_themselves(clients: Clients) -> None:
    machine = clients.machine
    assert probe(clients, machine.addr, machine.host_addr) == [machine.host_addr]


def test_ipv6_client_two_clients_do_not_share_a_rate_limit_bucket(clients: Clients) -> None:
    first, second = clients.pair.clients
    flood = ipv6.statuses(NAME, clients.pair.vps, first, clients.root, "/v1/models", 60)
    assert 429 in flood, f"the first client was never limited: {sorted(set(flood))}"
    other = ipv6.statuses(NAME, clients.pair.vps, second, clients.root, "/v1/models", 1)
    assert other == [401]
