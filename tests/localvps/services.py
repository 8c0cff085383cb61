"""Host-side stand-ins the local VPS talks to: Pebble (ACME) with its DNS, and a CONNECT proxy.

All listen on the host side of the run's own veth pair (or on loopback), on non-default
ports, and are stopped by the ExitStack they were registered on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import ssl
import subprocess
import threading
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.localvps.vps import log, run, stop_process, tcp_open, wait_for

PEBBLE_PORT = 14700
PROXY_PORT = 13128


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def pebble_missing() -> str | None:
    absent = [p for p in ("pebble", "pebble-challtestsrv", "openssl") if shutil.which(p) is None]
    return f"missing programs: {', '.join(absent)}" if absent else None


@dataclass
class Pebble:
    """Pebble on the host side of the veth pair, validating against the VPS's 80 and 443.

    pebble-challtestsrv is its DNS and answers every A query with the VPS's address, so
    llm.<domain> and monitoring.<domain> resolve to the VPS for the validation.
    """

    bind: str
    vps_addr: str
    workdir: Path
    stack: contextlib.ExitStack
    port: int = PEBBLE_PORT

    @property
    def directory_url(self) -> str:
        return f"https://{self.bind}:{self.port}/dir"

    @property
    def listener_ca(self) -> Path:
        """The CA of Pebble's own HTTPS listener (what an ACME client must trust)."""
        return self.workdir / "pebble" / "ca.pem"

    def start(self) -> None:
        d = self.workdir / "pebble"
        d.mkdir(parents=True, exist_ok=True)
        self._make_listener_certificate(d)
        dns_port = free_port()
        self.mgmt_port = free_port()
        # The VPS asks this DNS too (the traefik role's DNS gate), on our side of the veth.
        self.dns_port, self.chall_mgmt_port = dns_port, free_port()
        chall = subprocess.Popen(
            [
                "pebble-challtestsrv",
                "-dns01",
                f"127.0.0.1:{dns_port},{self.bind}:{dns_port}",
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-management",
                f"127.0.0.1:{self.chall_mgmt_port}",
                "-defaultIPv4",
                self.vps_addr,
                "-defaultIPv6",
                "",
            ],
            stdout=(d / "challtestsrv.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.stack.callback(stop_process, chall, "pebble-challtestsrv")
        config = {
            "pebble": {
                "listenAddress": f"{self.bind}:{self.port}",
                "managementListenAddress": f"127.0.0.1:{self.mgmt_port}",
                "certificate": str(d / "cert.pem"),
                "privateKey": str(d / "key.pem"),
                # Where Pebble connects to validate: Traefik's web and websecure on the VPS.
                "httpPort": 80,
                "tlsPort": 443,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
            }
        }
        (d / "pebble.json").write_text(json.dumps(config, indent=2))
        env = {
            "PATH": "/usr/bin:/bin",
            "PEBBLE_VA_NOSLEEP": "1",
            # Real Let's Encrypt does not reject nonces at random; Pebble does 5 % by default.
            "PEBBLE_WFE_NONCEREJECT": "0",
        }
        pebble = subprocess.Popen(
            ["pebble", "-config", str(d / "pebble.json"), "-dnsserver", f"127.0.0.1:{dns_port}"],
            env=env,
            stdout=(d / "pebble.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.stack.callback(stop_process, pebble, "pebble")
        wait_for("pebble", lambda: tcp_open(self.bind, self.port), 20, 0.2)
        wait_for("pebble management", lambda: tcp_open("127.0.0.1", self.mgmt_port), 20, 0.2)

    def _make_listener_certificate(self, d: Path) -> None:
        ca, ca_key = str(d / "ca.pem"), str(d / "ca-key.pem")
        key, csr, cert = str(d / "key.pem"), str(d / "cert.csr"), str(d / "cert.pem")
        new_key = ["openssl", "req", "-newkey", "rsa:2048", "-nodes"]
        run(
            [
                *new_key,
                "-x509",
                "-days",
                "2",
                "-keyout",
                ca_key,
                "-out",
                ca,
                "-subj",
                "/CN=pebble CA",
            ]
        )
        run([*new_key, "-subj", f"/CN={self.bind}", "-keyout", key, "-out", csr])
        (d / "san.ext").write_text(f"subjectAltName=IP:{self.bind}\n")
        sign = [
            "openssl",
            "x509",
            "-req",
            "-days",
            "2",
            "-CA",
            ca,
            "-CAkey",
            ca_key,
            "-CAcreateserial",
        ]
        run([*sign, "-CAcreateserial", "-in", csr, "-extfile", str(d / "san.ext"), "-out", cert])

    def issuing_root(self) -> str:
        """The root of the certificates Pebble issues (new at every Pebble start)."""
        ctx = ssl.create_default_context(cafile=str(self.listener_ca))
        ctx.check_hostname = False  # the management listener's name is 127.0.0.1
        url = f"https://127.0.0.1:{self.mgmt_port}/roots/0"
        with urllib.request.urlopen(url, context=ctx, timeout=10) as resp:
            return str(resp.read().decode())


class ConnectProxy:
    """A minimal HTTPS (CONNECT, port 443 only) forward proxy for image builds in the VPS.

    The VPS has no route to the internet; pip inside `docker build` reaches the package
    index through this proxy, which only relays bytes (TLS stays end to end).
    """

    def __init__(self, bind: str, stack: contextlib.ExitStack, port: int = PROXY_PORT) -> None:
        self.bind, self.port = bind, port
        self.hosts: set[str] = set()
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        self.thread = threading.Thread(target=self._serve, args=(started,), daemon=True)
        self.thread.start()
        if not started.wait(10):
            raise RuntimeError("the CONNECT proxy did not start")
        stack.callback(self.stop)

    @property
    def url(self) -> str:
        return f"http://{self.bind}:{self.port}"

    def _serve(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(
            asyncio.start_server(self._client, self.bind, self.port)
        )
        started.set()
        self.loop.run_forever()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
            host, _, port = target.rpartition(":")
            if method != "CONNECT" or port != "443" or not host:
                writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
                return
            self.hosts.add(host)
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(host, 443), 30)
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        except (OSError, ValueError, asyncio.IncompleteReadError, TimeoutError) as exc:
            log(f"proxy: {type(exc).__name__}: {exc}")
        finally:
            writer.close()

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.close()

    def stop(self) -> None:
        async def close() -> None:
            self.server.close()
            await self.server.wait_closed()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        if self.hosts:
            log(f"proxy relayed to: {', '.join(sorted(self.hosts))}")
