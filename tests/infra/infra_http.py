"""HTTP(S) requests to the server's address with the public host name in SNI and Host.

Connecting to the address the suite was given (rather than whatever DNS says) checks the
server itself; the DNS records are checked separately. Certificates are verified.
"""

from __future__ import annotations

import base64
import http.client
import socket
import ssl
from dataclasses import dataclass


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, fqdn: str, address: str, port: int, context: ssl.SSLContext) -> None:
        super().__init__(fqdn, port, context=context, timeout=120)
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, fqdn: str, address: str, port: int) -> None:
        super().__init__(fqdn, port, timeout=60)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


def request(
    *,
    scheme: str,
    fqdn: str,
    address: str,
    port: int,
    path: str,
    method: str = "GET",
    auth: tuple[str, str] | None = None,
    body: bytes | None = None,
    ca_bundle: str | None = None,
    extra_headers: dict[str, str] | None = None,
) -> Response:
    headers = {"Host": fqdn if port in (80, 443) else f"{fqdn}:{port}", "Connection": "close"}
    headers.update(extra_headers or {})
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    if body is not None:
        headers["Content-Type"] = "application/json"
    conn: http.client.HTTPConnection
    if scheme == "https":
        context = ssl.create_default_context(cafile=ca_bundle)
        conn = _PinnedHTTPSConnection(fqdn, address, port, context)
    else:
        conn = _PinnedHTTPConnection(fqdn, address, port)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()
