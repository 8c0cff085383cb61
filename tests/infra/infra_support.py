"""What the testinfra suite checks, shared by conftest.py and the test modules."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MODEL_FILE = "Meta-Llama-3-8B-Instruct.Q4_0.gguf"
DEFAULT_MODEL_CHECKSUM = "md5:c87ad09e1e4c8f9c35a5fcef52b6f1c9"
STACK_DIR = "/opt/llm-vps"


@dataclass(frozen=True)
class Target:
    """What the suite checks, resolved once per host."""

    llm_fqdn: str
    monitoring_fqdn: str
    address: str
    http_port: int
    https_port: int
    ca_bundle: str | None
    user: str | None
    password: str | None
    grafana: bool
    check_dns: bool
    model_file: str
    model_checksum: str
    # A bearer key of vault_llm_node_api_keys (None: the deployment has none, or not given).
    api_key: str | None = None
    # common_ssh_source_gate: "cloud" when a cloud firewall, not the host, limits SSH sources.
    ssh_source_gate: str = "host"
    # "edge" (Traefik, monitoring, llm-node: every single-node server) or "worker" (only
    # llm-node and a node exporter, on private_ip, reachable from edge_private_ip alone).
    role: str = "edge"
    private_ip: str | None = None
    edge_private_ip: str | None = None

    @property
    def worker(self) -> bool:
        return self.role == "worker"


# The containers each role runs (tests/infra/test_stack.py).
EDGE_CONTAINERS = ["traefik", "prometheus", "alertmanager", "node-exporter", "llm-node", "grafana"]
WORKER_CONTAINERS = ["llm-node", "node-exporter"]
# A worker's llm-node and node exporter, on its private address, for the edge alone.
WORKER_PRIVATE_PORTS = {8000, 9100}


def node_role(host_name: str, groups: dict[str, list[str]]) -> tuple[str, str | None]:
    """("edge" or "worker", the edge's inventory name) as site.yml sorts the nodes
    (ansible/group_vars/all/multi_node.yml): the host of group edge, else the first of
    llm_nodes, is the edge; with one node, that node is."""
    nodes = groups.get("llm_nodes") or []
    edge = next(iter(groups.get("edge") or nodes[:1]), None)
    if len(nodes) > 1 and host_name in nodes and host_name != edge:
        return "worker", edge
    return "edge", edge
