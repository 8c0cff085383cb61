"""Two nodes: the edge (Traefik, monitoring, llm-node) and a worker (llm-node only), two
Debian 13 containers joined by a private network of their own, converged by the real
site.yml from a terraform-shaped inventory. Runs after the single-node tests of this
package (same gate: LOCALVPS=1, root on Linux).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.localvps import deploy, multinode, services, vps

pytestmark = pytest.mark.slow
SHORT = {"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 1}


@dataclass
class Cluster:
    edge: vps.LocalVPS
    worker: vps.LocalVPS
    network: multinode.PrivateNetwork
    inventory: Path
    variables: dict[str, object]
    first: dict[str, deploy.Recap]
    second: dict[str, deploy.Recap] | None
    second_log: str

    @property
    def worker_private(self) -> str:
        return self.network.address(1)

    def counters(self) -> dict[str, float]:
        """llm_requests_total of each node, read on the node itself."""
        name = "llm_requests_total"
        return {
            "edge": multinode.metric_total(self.edge, "http://127.0.0.1:8000", name),
            "worker": multinode.metric_total(
                self.worker, f"http://{self.worker_private}:8000", name
            ),
        }

    @property
    def api_key(self) -> str:
        return str(self.variables["vault_llm_node_api_keys"][0])  # type: ignore[index]

    def https(
        self, path: str, body: dict[str, object], *extra: str, key: str | None = None
    ) -> tuple[int, str]:
        """curl through the real Traefik on the edge, verifying Pebble's certificate; with
        basic auth, or with `key` as a bearer API key."""
        users = self.variables["vault_traefik_basic_auth_users"]
        user = users[0]  # type: ignore[index]
        host = f"llm.{vps.TEST_DOMAIN}"
        auth = (
            ["-H", f"authorization: Bearer {key}"]
            if key is not None
            else ["-u", f"{user['name']}:{user['password']}"]
        )
        cmd = [
            "curl", "-sS", "--max-time", "60",
            "--resolve", f"{host}:443:{self.edge.addr}",
            "--cacert", str(self.variables["verify_ca_bundle"]),
            *auth,
            "-H", "content-type: application/json", "-d", json.dumps(body),
            "-o", "-", "-w", "\n%{http_code}", *extra, f"https://{host}{path}",
        ]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=90).stdout
        text, _, code = out.rpartition("\n")
        return int(code or 0), text

    def chat(self, key: str | None = None) -> int:
        return self.https("/v1/chat/completions", SHORT, key=key)[0]


@pytest.fixture(scope="module")
def cluster(localvps_stack: contextlib.ExitStack) -> Cluster:
    reason = services.pebble_missing()
    if reason:
        pytest.skip(reason)
    model = Path(os.environ.get("LLM_TEST_MODEL", ""))
    if not model.is_file():
        pytest.skip("LLM_TEST_MODEL is not set to the tiny model (make model)")
    stack = localvps_stack
    with vps.PHASES.phase("multi-node: boot 2 nodes + private network"):
        vps.build_rootfs()
        network = multinode.PrivateNetwork(multinode.pick_private_subnet(), stack)
        network.create()
        edge, worker = multinode.boot_nodes(2, network, stack)
    with vps.PHASES.phase("multi-node: stand-ins"):
        pebble = services.Pebble(
            bind=edge.host_addr, vps_addr=edge.addr, workdir=edge.workdir, stack=stack
        )
        pebble.start()
        base_url, _ = vps.serve_directory(model.parent, edge.host_addr, stack)
        proxy = services.ConnectProxy(edge.host_addr, stack)
        stand_ins = deploy.StandIns(pebble, f"{base_url}/{model.name}", vps.md5sum(model), proxy)
    with vps.PHASES.phase("multi-node: docker + images on both"):
        built = multinode.prepare_images([edge, worker])
    inventory, variables = multinode.write_inventory([edge, worker], network, built, stand_ins)
    with vps.PHASES.phase("multi-node: site.yml, first run"):
        first, _ = multinode.run_site(inventory, edge.workdir / "site-1.log")
    second, second_log = None, ""
    if first and all(r.failed == 0 and r.unreachable == 0 for r in first.values()):
        with vps.PHASES.phase("multi-node: site.yml, second run"):
            second, second_log = multinode.run_site(inventory, edge.workdir / "site-2.log")
    return Cluster(edge, worker, network, inventory, variables, first, second, second_log)


def test_multi_node_site_yml_converges_both_nodes(cluster: Cluster) -> None:
    assert sorted(cluster.first) == sorted([cluster.edge.name, cluster.worker.name])
    assert {(r.failed, r.unreachable) for r in cluster.first.values()} == {(0, 0)}


def test_multi_node_a_second_site_yml_run_changes_nothing(cluster: Cluster) -> None:
    assert cluster.second is not None, "the first run failed"
    changed = {host: (r.changed, r.failed) for host, r in cluster.second.items()}
    assert changed == dict.fromkeys(cluster.second, (0, 0)), deploy.changed_tasks(
        cluster.second_log
    )


def test_multi_node_requests_through_traefik_are_served_by_both_nodes(cluster: Cluster) -> None:
    before = cluster.counters()
    statuses = [cluster.chat() for _ in range(16)]
    after = cluster.counters()
    assert statuses == [200] * 16
    assert {node: after[node] > before[node] for node in before} == dict.fromkeys(before, True)


def test_multi_node_bearer_key_requests_are_served_by_both_nodes(cluster: Cluster) -> None:
    """The balanced route's bearer-key router; the basic-auth test above also shows that
    every node accepts the edge's own key (a worker without it would answer 401)."""
    before = cluster.counters()
    statuses = [cluster.chat(key=cluster.api_key) for _ in range(16)]
    after = cluster.counters()
    assert statuses == [200] * 16
    assert {node: after[node] > before[node] for node in before} == dict.fromkeys(before, True)


def test_multi_node_a_wrong_bearer_key_is_refused(cluster: Cluster) -> None:
    assert [cluster.chat(key="not-a-key") for _ in range(4)] == [401] * 4


def test_multi_node_a_streamed_request_works(cluster: Cluster) -> None:
    body = {**SHORT, "max_tokens": 16, "stream": True}
    status, text = cluster.https("/v1/chat/completions", body, "-N")
    events = [line for line in text.splitlines() if line.startswith("data: ")]
    assert (status, events[-1]) == (200, "data: [DONE]")
    assert len(events) > 2


def prometheus_targets(cluster: Cluster) -> dict[tuple[str, str], str]:
    url = "http://127.0.0.1:9090/api/v1/targets"
    out = cluster.edge.ssh(f"sudo docker exec prometheus wget -qO- {url}")
    return {
        (t["labels"]["job"], t["labels"]["instance"]): t["health"]
        for t in json.loads(out)["data"]["activeTargets"]
    }


def test_multi_node_prometheus_on_the_edge_has_every_node_up(cluster: Cluster) -> None:
    wanted = {
        (job, node.name) for job in ("llm-node", "node") for node in (cluster.edge, cluster.worker)
    }

    def all_up() -> bool:
        targets = prometheus_targets(cluster)
        return all(targets.get(key) == "up" for key in wanted)

    with contextlib.suppress(TimeoutError):
        vps.wait_for("every node's targets up", all_up, timeout=60, interval=3)
    targets = prometheus_targets(cluster)
    assert {key: targets.get(key) for key in wanted} == dict.fromkeys(wanted, "up")


def connects(source: str, address: str, port: int) -> bool:
    with (
        contextlib.suppress(OSError),
        socket.create_connection((address, port), timeout=3, source_address=(source, 0)),
    ):
        return True
    return False


@pytest.mark.parametrize("port", [8000, 9100])
def test_multi_node_a_worker_port_is_closed_on_its_public_side(cluster: Cluster, port: int) -> None:
    assert not connects(cluster.worker.host_addr, cluster.worker.addr, port)


@pytest.mark.parametrize("port", [8000, 9100])
def test_multi_node_a_worker_port_is_closed_to_a_stranger_on_the_private_network(
    cluster: Cluster, port: int
) -> None:
    with cluster.network.stranger() as stranger:
        assert not connects(stranger, cluster.worker_private, port)


@pytest.mark.parametrize("port", [8000, 9100])
def test_multi_node_a_worker_port_is_open_to_the_edge(cluster: Cluster, port: int) -> None:
    path = "/ready" if port == 8000 else "/metrics"
    url = f"http://{cluster.worker_private}:{port}{path}"
    script = f"import urllib.request; print(urllib.request.urlopen('{url}', timeout=5).status)"
    assert cluster.edge.ssh(f'python3 -c "{script}"').strip() == "200"


def test_multi_node_testinfra_passes_on_every_node_for_its_role(cluster: Cluster) -> None:
    """The users' suite over the whole inventory, as `make verify` runs it: the edge gets
    the single-server checks, the worker its own (tests marked edge skip there)."""
    with vps.PHASES.phase("multi-node: tests/infra on both nodes"):
        result = deploy.run_testinfra(cluster.inventory, {}, verbose=True)
    lines = result.stdout.splitlines()
    failures = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
    assert result.returncode == 0, "\n".join([*failures, result.stdout[-3000:], result.stderr])

    def outcome(test: str, node: vps.LocalVPS) -> str:
        """PASSED or SKIPPED (or "") of one test on one node, from the verbose lines."""
        marker = f"::{test}[ansible://{node.name}] "
        return next((line.split()[1] for line in lines if marker in line), "")

    worker_only = "test_worker_ports_are_open_to_the_edge_only"
    edge_only = "test_basic_auth_users_file_is_private"
    both = "test_firewall_accepts_only_ssh_http_and_https"
    assert {
        (test, node.name): outcome(test, node)
        for test in (worker_only, edge_only, both)
        for node in (cluster.edge, cluster.worker)
    } == {
        (worker_only, cluster.edge.name): "SKIPPED",
        (worker_only, cluster.worker.name): "PASSED",
        (edge_only, cluster.edge.name): "PASSED",
        (edge_only, cluster.worker.name): "SKIPPED",
        (both, cluster.edge.name): "PASSED",
        (both, cluster.worker.name): "PASSED",
    }


@pytest.fixture
def worker_stopped(cluster: Cluster) -> Iterator[None]:
    cluster.worker.ssh("sudo docker stop llm-node")
    try:
        yield
    finally:
        cluster.worker.ssh("sudo docker start llm-node")


def test_multi_node_requests_keep_succeeding_with_the_worker_down(
    cluster: Cluster, worker_stopped: None
) -> None:
    """Right after the worker stops, before Traefik's /ready check has noticed: a request
    sent to it is retried on the edge's node (llm-retry), so no client sees a 502."""
    assert [cluster.chat() for _ in range(8)] == [200] * 8


def test_multi_node_a_restarted_worker_comes_back_into_rotation(cluster: Cluster) -> None:
    cluster.worker.ssh("sudo docker start llm-node")  # already running after the test above
    worker_url = f"http://{cluster.worker_private}:8000"

    def serving() -> bool:
        with contextlib.suppress(RuntimeError):
            before = multinode.metric_total(cluster.worker, worker_url, "llm_requests_total")
            return cluster.chat() == 200 and (
                multinode.metric_total(cluster.worker, worker_url, "llm_requests_total") > before
            )
        return False

    vps.wait_for("the worker serving through Traefik again", serving, timeout=180, interval=1)
