"""IPv6 on the local VPS's veth pair (a ULA /64), and HTTPS requests from a chosen source.

A Hetzner server has a public /64; here a private one derived from the run's IPv4 /30 stands
in. The host side gets two addresses, so two clients with different addresses can be played.
Adding addresses and routes is a test-host preparation done from outside (nsenter), never by
the roles.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from dataclasses import dataclass

from tests.localvps.vps import LocalVPS, run, wait_for


@dataclass(frozen=True)
class IPv6Pair:
    vps: str
    clients: tuple[str, str]


def add_ipv6(machine: LocalVPS) -> IPv6Pair:
    """fd42:<IPv4 /30 as hex>::/64: ::2 in the VPS (default route via ::1), ::1 and ::3 here."""
    net = int(machine.subnet.network_address)
    prefix = ipaddress.IPv6Network(f"fd42:{net >> 16:x}:{net & 0xFFFF:x}::/64")
    host_a, vps_addr, host_b = (str(prefix[i]) for i in (1, 2, 3))
    for addr in (host_a, host_b):
        run(["ip", "-6", "addr", "add", f"{addr}/64", "dev", machine.veth, "nodad"])
    inside = ["nsenter", "-t", str(machine.leader), "-n"]
    run([*inside, "ip", "-6", "addr", "add", f"{vps_addr}/64", "dev", "host0", "nodad"])
    run([*inside, "ip", "-6", "route", "replace", "default", "via", host_a])

    def reachable() -> bool:
        try:
            with socket.create_connection((vps_addr, 443), timeout=2, source_address=(host_a, 0)):
                return True
        except OSError:
            return False

    wait_for(f"[{vps_addr}]:443 over IPv6", reachable, 30)
    return IPv6Pair(vps_addr, (host_a, host_b))


class _FromSource(http.client.HTTPSConnection):
    """HTTPS to an address with the public name in SNI and Host, from a given source."""

    def __init__(self, name: str, address: str, source: str, context: ssl.SSLContext) -> None:
        super().__init__(name, 443, context=context, timeout=30)
        self._address, self._source = address, source

    def connect(self) -> None:
        sock = socket.create_connection((self._address, 443), 30, (self._source, 0))
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def statuses(
    name: str, address: str, source: str, root_pem: str, path: str, count: int
) -> list[int]:
    """Status codes of `count` GETs of path on one keep-alive connection from source."""
    ctx = ssl.create_default_context(cadata=root_pem)
    conn = _FromSource(name, address, source, ctx)
    codes = []
    try:
        for _ in range(count):
            conn.request("GET", path, headers={"Host": name})
            response = conn.getresponse()
            response.read()
            codes.append(response.status)
    finally:
        conn.close()
    return codes
