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
