"""What the scenarios read and steer at the ACME stand-ins: DNS answers of
pebble-challtestsrv, the orders Pebble received, the certificate the VPS serves."""

from __future__ import annotations

import json
import socket
import ssl
import urllib.request

from tests.localvps.services import Pebble


def _challtestsrv(pebble: Pebble, path: str, body: dict[str, object]) -> None:
    url = f"http://127.0.0.1:{pebble.chall_mgmt_port}/{path}"
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200, f"challtestsrv {path}: {resp.status}"


def point_names_at(pebble: Pebble, names: list[str], address: str) -> None:
    """A records of names answer address (instead of the VPS, challtestsrv's default)."""
    for name in names:
        _challtestsrv(pebble, "add-a", {"host": f"{name}.", "addresses": [address]})


def restore_names(pebble: Pebble, names: list[str]) -> None:
    """The names answer challtestsrv's default again: the VPS's address."""
    for name in names:
        _challtestsrv(pebble, "clear-a", {"host": f"{name}."})


def orders(pebble: Pebble) -> int:
    """New-order requests Pebble received since it started (from its log)."""
    return (pebble.workdir / "pebble" / "pebble.log").read_text().count("POST /order-plz")


def served_certificate(address: str, name: str, root_pem: str) -> dict[str, object] | None:
    """The certificate address:443 serves for name, if it verifies against root_pem."""
    ctx = ssl.create_default_context(cadata=root_pem)
    try:
        with (
            socket.create_connection((address, 443), timeout=5) as sock,
            ctx.wrap_socket(sock, server_hostname=name) as tls,
        ):
            return tls.getpeercert()
    except (OSError, ssl.SSLError):
        return None


def stored_names(acme_json: str) -> set[str]:
    """The names Traefik stored a certificate for, from the text of its acme.json."""
    if not acme_json.strip():
        return set()
    names: set[str] = set()
    for resolver in json.loads(acme_json).values():
        for stored in (resolver or {}).get("Certificates") or []:
            if stored.get("certificate"):
                names.add(stored["domain"]["main"])
    return names
