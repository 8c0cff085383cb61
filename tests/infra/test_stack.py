"""The containers: all healthy, only Traefik publishes (80 and 443), llm-node confined.

A worker of a multi-node deployment runs llm-node and a node exporter only, publishes
nothing, and has no Traefik data (tests marked edge skip there)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from infra_support import EDGE_CONTAINERS, STACK_DIR, WORKER_CONTAINERS, Target


def _inspect(host: Any, name: str) -> dict[str, Any]:
    with host.sudo():
        result = host.run(f"docker inspect {name}")
    assert result.rc == 0, f"container {name} does not exist: {result.stderr.strip()}"
    data: dict[str, Any] = json.loads(result.stdout)[0]
    return data


def _all_containers(host: Any) -> list[dict[str, Any]]:
    with host.sudo():
        ids = host.check_output("docker ps -q").split()
        data: list[dict[str, Any]] = json.loads(
            host.check_output(f"docker inspect {' '.join(ids)}")
        )
    return data


def _skip_if_not_run(target: Target, name: str) -> None:
    if target.worker and name not in WORKER_CONTAINERS:
        pytest.skip(f"a worker runs no {name} (only {', '.join(WORKER_CONTAINERS)})")
    if name == "grafana" and not target.grafana:
        pytest.skip("this deployment runs without Grafana (monitoring_grafana_enabled: false)")


@pytest.mark.parametrize("name", EDGE_CONTAINERS)
def test_container_is_running(host: Any, target: Target, name: str) -> None:
    _skip_if_not_run(target, name)
    assert _inspect(host, name)["State"]["Status"] == "running"


@pytest.mark.parametrize("name", EDGE_CONTAINERS)
def test_container_is_healthy(host: Any, target: Target, name: str) -> None:
    _skip_if_not_run(target, name)
    state = _inspect(host, name)["State"]
    if "Health" not in state:
        pytest.skip(f"{name} has no health check configured")
    assert state["Health"]["Status"] == "healthy"


def test_only_traefik_publishes_host_ports(host: Any, target: Target) -> None:
    published = {}
    for container in _all_containers(host):
        ports = {
            int(binding["HostPort"])
            for bindings in (container["NetworkSettings"]["Ports"] or {}).values()
            for binding in bindings or []
        }
        if ports:
            published[container["Name"].lstrip("/")] = ports
    if target.worker:
        assert published == {}, "a worker publishes no port (llm-node is on the host network)"
    else:
        assert published == {"traefik": {target.http_port, target.https_port}}


@pytest.mark.worker
def test_worker_llm_node_listens_on_the_private_address_only(host: Any, target: Target) -> None:
    """On the host network (so the host firewall, not Docker, decides who reaches it)."""
    assert _inspect(host, "llm-node")["HostConfig"]["NetworkMode"] == "host"
    with host.sudo():
        listeners = host.check_output("ss -Htln 'sport = :8000'").split("\n")
    addresses = {line.split()[3].rsplit(":", 1)[0] for line in listeners if line.strip()}
    assert addresses == {target.private_ip}


def test_llm_node_root_filesystem_is_read_only(host: Any) -> None:
    assert _inspect(host, "llm-node")["HostConfig"]["ReadonlyRootfs"] is True


def test_llm_node_model_is_mounted_read_only(host: Any) -> None:
    mounts = [
        m for m in _inspect(host, "llm-node")["Mounts"] if m["Destination"].startswith("/models")
    ]
    assert mounts and all(m["RW"] is False for m in mounts)


def test_llm_node_has_a_memory_limit(host: Any) -> None:
    with host.sudo():
        supported = host.check_output("docker info --format '{{.MemoryLimit}}'").strip()
    if supported != "true":
        pytest.skip("this Docker engine has no memory cgroup (e.g. inside a container)")
    assert _inspect(host, "llm-node")["HostConfig"]["Memory"] > 0


# A worker's llm-node runs on the host network: its egress is the host's (not confined).
@pytest.mark.edge
def test_llm_node_has_no_route_to_the_internet(host: Any) -> None:
    networks = _inspect(host, "llm-node")["NetworkSettings"]["Networks"]
    with host.sudo():
        internal = {
            name: json.loads(host.check_output(f"docker network inspect {name}"))[0]["Internal"]
            for name in networks
        }
    assert all(internal.values()), internal


def _mounted_from(host: Any, container: str, destination: str) -> str:
    """The host directory a container's destination is mounted from: the data volume's
    directory (group_vars), or wherever a hand-made inventory put it."""
    mounts = {m["Destination"]: m["Source"] for m in _inspect(host, container)["Mounts"]}
    assert destination in mounts, f"{container} has no mount at {destination}"
    return str(mounts[destination])


def _acme_json(host: Any) -> str:
    return f"{_mounted_from(host, 'traefik', '/etc/traefik/acme')}/acme.json"


@pytest.mark.edge
def test_acme_json_is_private(host: Any) -> None:
    path = _acme_json(host)
    with host.sudo():
        acme = host.file(path)
        assert (acme.mode, acme.user) == (0o600, "root")


@pytest.mark.edge
def test_acme_json_holds_the_certificate_of_the_api(host: Any, target: Target) -> None:
    path = _acme_json(host)
    with host.sudo():
        content = host.file(path).content_string
    assert target.llm_fqdn in content


@pytest.mark.edge
def test_basic_auth_users_file_is_private(host: Any) -> None:
    with host.sudo():
        users = host.file(f"{STACK_DIR}/traefik/users/htpasswd")
        assert users.mode == 0o600


def test_model_file_matches_its_checksum(host: Any, target: Target) -> None:
    algorithm, _, expected = target.model_checksum.partition(":")
    path = f"{_mounted_from(host, 'llm-node', '/models')}/{target.model_file}"
    with host.sudo():
        actual = host.check_output(f"{algorithm}sum {path}").split()[0]
    assert actual == expected
