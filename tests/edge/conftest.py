"""Fixtures of the edge tests: each starts a real program on loopback and stops it again.

Pebble (+ pebble-challtestsrv as its DNS) stands in for Let's Encrypt; the real Traefik runs
the project's traefik/ templates rendered for the test's ports; llm-node runs the tiny real
model; Prometheus, Alertmanager and node exporter are the Debian packages' programs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml

from tests import support
from tests.edge import labels, procs
from tests.edge.render import render_to

DOMAIN = "edge.test"
LLM_HOST = f"llm.{DOMAIN}"
MONITORING_HOST = f"monitoring.{DOMAIN}"
USER = "alice"
PASSWORD = "correct-horse-battery-staple"  # a per-run throw-away account
RUNBOOK_URL = "https://runbook.test/RUNBOOK.md"
CERT_TIMEOUT = 120.0
SCRAPE_INTERVAL = "1s"


@dataclass
class Edge:
    """The running Traefik in front of llm-node and a Grafana stand-in."""

    web_port: int
    websecure_port: int
    internal_port: int
    llm_node_url: str
    pebble_root: Path
    acme_storage: Path
    workdir: Path
    users_file: Path
    extra: dict[str, str] = field(default_factory=dict)

    def https_url(self, host: str, path: str = "/") -> str:
        return f"https://{host}:{self.websecure_port}{path}"

    def client(self, local_address: str | None = None, **kwargs: object) -> httpx.Client:
        """An HTTPS client that resolves every test host name to 127.0.0.1 and trusts only
        Pebble's root, i.e. verifies the certificate Traefik got over ACME."""
        context = ssl.create_default_context(cafile=str(self.pebble_root))
        transport = httpx.HTTPTransport(verify=context, local_address=local_address)
        return httpx.Client(
            transport=_ResolveToLoopback(transport), verify=context, timeout=120, **kwargs
        )


class _ResolveToLoopback(httpx.BaseTransport):
    """Send every request to 127.0.0.1 while keeping its host name for SNI and Host."""

    def __init__(self, inner: httpx.HTTPTransport) -> None:
        self.inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.extensions = {**request.extensions, "sni_hostname": request.url.host}
        request.headers.setdefault("Host", request.url.netloc.decode())
        request.url = request.url.copy_with(host="127.0.0.1")
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture(scope="session")
def edge_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("edge")


@contextlib.contextmanager
def start_llm_node(log: Path, extra_env: dict[str, str] | None = None) -> Iterator[str]:
    """The real llm-node (`python -m llm_node`) on the tiny model; yields its base URL."""
    model = os.environ.get("LLM_TEST_MODEL", "")
    if not model or not Path(model).is_file():
        pytest.skip("LLM_TEST_MODEL is not set to the tiny model (make test sets it: make model)")
    port = support.free_port()
    env = {
        "PYTHONPATH": str(procs.REPO / "llm-node"),
        "LLM_MODEL_PATH": model,
        "LLM_HOST": "127.0.0.1",
        "LLM_PORT": str(port),
        "LLM_N_THREADS": "2",
        "LLM_LOG_LEVEL": "warning",
        **(extra_env or {}),
    }
    argv = [sys.executable, "-m", "llm_node"]
    url = f"http://127.0.0.1:{port}"
    with procs.running("llm-node", argv, log, env) as program:
        program.wait_until(
            lambda: httpx.get(f"{url}/ready", timeout=5).status_code == 200,
            "model loaded (/ready 200)",
            timeout=180,
        )
        yield url


@pytest.fixture(scope="session")
def llm_node(edge_dir: Path) -> Iterator[str]:
    """The real llm-node on the tiny model, without API keys (the default deployment)."""
    with start_llm_node(edge_dir / "llm-node.log") as url:
        yield url


@pytest.fixture(scope="session")
def grafana_standin(edge_dir: Path) -> Iterator[int]:
    """No Grafana binary is reachable here: a static page stands in behind monitoring.*."""
    root = edge_dir / "grafana-standin"
    root.mkdir()
    (root / "index.html").write_text("grafana stand-in\n")
    port = support.free_port()
    argv = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(root)]
    with procs.running("grafana stand-in", [*argv, str(port)], edge_dir / "grafana.log") as prog:
        prog.wait_until(lambda: httpx.get(f"http://127.0.0.1:{port}/").status_code == 200, "up")
        yield port


@contextlib.contextmanager
def start_pebble(workdir: Path) -> Iterator[dict[str, object]]:
    """Pebble (ACME CA) with pebble-challtestsrv answering its DNS queries with 127.0.0.1."""
    programs = procs.require_programs("pebble", "pebble-challtestsrv")
    ca, cert, key = procs.make_ca_and_server_cert(workdir, ["localhost"])
    ports = {name: support.free_port() for name in ("dir", "mgmt", "dns", "chall_mgmt")}
    # Pebble validates HTTP-01 and TLS-ALPN-01 on these ports: Traefik listens there.
    http_port, tls_port = support.free_port(), support.free_port()
    config = {
        "pebble": {
            "listenAddress": f"127.0.0.1:{ports['dir']}",
            "managementListenAddress": f"127.0.0.1:{ports['mgmt']}",
            "certificate": str(cert),
            "privateKey": str(key),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
    }
    (workdir / "pebble.json").write_text(json.dumps(config))
    dns_argv = [
        programs["pebble-challtestsrv"],
        "-dns01", f"127.0.0.1:{ports['dns']}",
        "-http01", "",
        "-https01", "",
        "-tlsalpn01", "",
        "-management", f"127.0.0.1:{ports['chall_mgmt']}",
        "-defaultIPv4", "127.0.0.1",
        "-defaultIPv6", "",
    ]  # fmt: skip
    pebble_argv = [
        programs["pebble"],
        "-config", str(workdir / "pebble.json"),
        "-dnsserver", f"127.0.0.1:{ports['dns']}",
    ]  # fmt: skip
    env = {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}
    with (
        procs.running("pebble-challtestsrv", dns_argv, workdir / "challtestsrv.log"),
        procs.running("pebble", pebble_argv, workdir / "pebble.log", env) as program,
    ):
        directory = f"https://127.0.0.1:{ports['dir']}/dir"
        trust = ssl.create_default_context(cafile=str(ca))
        program.wait_until(
            lambda: httpx.get(directory, verify=trust).status_code == 200, "ACME directory"
        )
        # The root of the chains Pebble issues; it changes at every Pebble start.
        root = program.wait_until(
            lambda: httpx.get(f"https://127.0.0.1:{ports['mgmt']}/roots/0", verify=trust).text,
            "issuing root",
        )
        (workdir / "issuing-root.pem").write_text(root)
        yield {
            "directory": directory,
            "ca": ca,
            "root": workdir / "issuing-root.pem",
            "http_port": http_port,
            "tls_port": tls_port,
        }


@pytest.fixture(scope="session")
def pebble(edge_dir: Path) -> Iterator[dict[str, object]]:
    with start_pebble(edge_dir / "pebble") as started:
        yield started


@pytest.fixture(scope="session")
def users_file(edge_dir: Path) -> Path:
    """The usersFile, written by the project's own tool (password on standard input)."""
    path = edge_dir / "traefik" / "users"
    subprocess.run(
        [sys.executable, str(procs.REPO / "traefik" / "htpasswd.py"), "--password-stdin",
         str(path), USER],
        input=f"{PASSWORD}\n",
        text=True,
        check=True,
        capture_output=True,
    )  # fmt: skip
    return path


def traefik_variables(workdir: Path, pebble: dict[str, object], internal_port: int) -> dict:
    return {
        "traefik_acme_email": f"admin@{DOMAIN}",
        "traefik_acme_ca_server": pebble["directory"],
        "traefik_acme_storage": str(workdir / "acme" / "acme.json"),
        "traefik_acme_challenge": "http",
        "traefik_web_address": f"127.0.0.1:{pebble['http_port']}",
        "traefik_websecure_address": f"127.0.0.1:{pebble['tls_port']}",
        "traefik_internal_address": f"127.0.0.1:{internal_port}",
        "traefik_docker_enabled": False,
        "traefik_dynamic_dir": str(workdir / "dynamic"),
        "traefik_log_level": "INFO",
        "traefik_access_log_path": str(workdir / "access.log"),
        "traefik_users_file": str(workdir / "users"),
    }


@contextlib.contextmanager
def start_traefik(
    workdir: Path,
    pebble: dict[str, object],
    llm_node_url: str,
    grafana_port: int,
    challenge: str,
    edge_api_key: str = "",
) -> Iterator[Edge]:
    """The real Traefik with the project's configuration, holding Pebble certificates for
    llm.edge.test and monitoring.edge.test (obtained with `challenge`). With `edge_api_key`,
    the routers are those of a deployment with API keys (traefik/LABELS.md)."""
    traefik = procs.require_programs("traefik")["traefik"]
    internal_port = support.free_port()
    variables = traefik_variables(workdir, pebble, internal_port)
    variables["traefik_acme_challenge"] = challenge
    (workdir / "acme").mkdir(mode=0o700, parents=True)
    render_to("traefik/traefik.yml.j2", workdir / "traefik.yml", **variables)
    render_to(
        "traefik/dynamic/middlewares.yml.j2", workdir / "dynamic" / "middlewares.yml", **variables
    )
    # The routers come from the roles' own compose labels, rendered by Ansible. Prometheus and
    # Alertmanager do not run behind this Traefik: their routers point at a closed port.
    closed = f"http://127.0.0.1:{support.free_port()}"
    compose_files = labels.render_compose_files(
        workdir,
        {
            "llm_node_fqdn": LLM_HOST,
            "monitoring_fqdn": MONITORING_HOST,
            # With API keys, the role renders the bearer-key router and the edge-key header.
            "llm_node_api_keys": ["a-vault-key"] if edge_api_key else [],
            "llm_node_edge_api_key": edge_api_key,
        },
    )
    routers = labels.file_provider_config(
        compose_files,
        {
            "llm": llm_node_url,
            "grafana": f"http://127.0.0.1:{grafana_port}",
            "prometheus": closed,
            "alertmanager": closed,
        },
    )
    (workdir / "dynamic" / "routers.yml").write_text(yaml.safe_dump(routers, sort_keys=False))
    argv = [traefik, f"--configFile={workdir / 'traefik.yml'}"]
    env = {"LEGO_CA_CERTIFICATES": str(pebble["ca"])}
    with procs.running("traefik", argv, workdir / "traefik.log", env) as program:
        program.wait_until(
            lambda: httpx.get(f"http://127.0.0.1:{internal_port}/ping").text == "OK", "ping"
        )
        edge = Edge(
            web_port=int(pebble["http_port"]),  # type: ignore[call-overload]
            websecure_port=int(pebble["tls_port"]),  # type: ignore[call-overload]
            internal_port=internal_port,
            llm_node_url=llm_node_url,
            pebble_root=Path(str(pebble["root"])),
            acme_storage=workdir / "acme" / "acme.json",
            workdir=workdir,
            users_file=workdir / "users",
        )
        for host in (LLM_HOST, MONITORING_HOST):
            program.wait_until(
                lambda host=host: peer_names(edge, host),
                f"a Pebble certificate for {host}",
                timeout=CERT_TIMEOUT,
            )
        yield edge


def peer_names(edge: Edge, host: str) -> list[str]:
    """DNS names of the certificate Traefik serves for `host`, verified against Pebble's
    issuing root (Traefik's self-signed default certificate fails the handshake)."""
    context = ssl.create_default_context(cafile=str(edge.pebble_root))
    with (
        socket.create_connection(("127.0.0.1", edge.websecure_port), timeout=10) as sock,
        context.wrap_socket(sock, server_hostname=host) as tls,
    ):
        cert = tls.getpeercert()
    return [value for kind, value in cert.get("subjectAltName", ()) if kind == "DNS"]


@pytest.fixture(scope="session")
def edge(
    pebble: dict[str, object], llm_node: str, grafana_standin: int, users_file: Path
) -> Iterator[Edge]:
    """Traefik in front of llm-node and the Grafana stand-in; certificates over HTTP-01."""
    with start_traefik(users_file.parent, pebble, llm_node, grafana_standin, "http") as started:
        yield started


@pytest.fixture(scope="session")
def node_exporter(edge_dir: Path) -> Iterator[str]:
    program_path = procs.require_programs("prometheus-node-exporter")["prometheus-node-exporter"]
    address = f"127.0.0.1:{support.free_port()}"
    argv = [program_path, f"--web.listen-address={address}"]
    with procs.running("node exporter", argv, edge_dir / "node-exporter.log") as program:
        program.wait_until(
            lambda: "node_cpu_seconds_total" in httpx.get(f"http://{address}/metrics").text,
            "metrics",
        )
        yield address


@pytest.fixture(scope="session")
def alertmanager(edge_dir: Path) -> Iterator[str]:
    program_path = procs.require_programs("prometheus-alertmanager")["prometheus-alertmanager"]
    workdir = edge_dir / "alertmanager"
    render_to("monitoring/alertmanager/alertmanager.yml.j2", workdir / "alertmanager.yml")
    address = f"127.0.0.1:{support.free_port()}"
    argv = [
        program_path,
        f"--config.file={workdir / 'alertmanager.yml'}",
        f"--storage.path={workdir / 'data'}",
        f"--web.listen-address={address}",
        "--cluster.listen-address=",  # no gossip port: a single Alertmanager
    ]
    with procs.running("alertmanager", argv, workdir / "alertmanager.log") as program:
        program.wait_until(
            lambda: httpx.get(f"http://{address}/-/ready").status_code == 200, "ready"
        )
        yield address


def render_rules(directory: Path) -> Path:
    """recording.yml and the rendered alerts.yml, as a deployment installs them."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(procs.REPO / "monitoring/prometheus/rules/recording.yml", directory)
    render_to(
        "monitoring/prometheus/rules/alerts.yml.j2",
        directory / "alerts.yml",
        monitoring_runbook_url=RUNBOOK_URL,
    )
    return directory


@pytest.fixture(scope="session")
def prometheus(edge_dir: Path, edge: Edge, node_exporter: str, alertmanager: str) -> Iterator[str]:
    """The real Prometheus with the project's configuration and rules; yields its URL."""
    program_path = procs.require_programs("prometheus")["prometheus"]
    workdir = edge_dir / "prometheus"
    rules = render_rules(workdir / "rules")
    address = f"127.0.0.1:{support.free_port()}"
    render_to(
        "monitoring/prometheus/prometheus.yml.j2",
        workdir / "prometheus.yml",
        prometheus_scrape_interval=SCRAPE_INTERVAL,
        prometheus_evaluation_interval=SCRAPE_INTERVAL,
        prometheus_scrape_timeout=SCRAPE_INTERVAL,
        prometheus_rules_dir=str(rules),
        prometheus_self_target=address,
        prometheus_alertmanager_target=alertmanager,
        prometheus_llm_node_target=edge.llm_node_url.removeprefix("http://"),
        prometheus_traefik_target=f"127.0.0.1:{edge.internal_port}",
        prometheus_node_exporter_target=node_exporter,
    )
    argv = [
        program_path,
        f"--config.file={workdir / 'prometheus.yml'}",
        f"--storage.tsdb.path={workdir / 'data'}",
        "--storage.tsdb.retention.time=1d",
        "--storage.tsdb.retention.size=256MB",
        f"--web.listen-address={address}",
    ]
    with procs.running("prometheus", argv, workdir / "prometheus.log") as program:
        url = f"http://{address}"
        program.wait_until(lambda: httpx.get(f"{url}/-/ready").status_code == 200, "ready")
        yield url
