"""testinfra suite for a deployed LLM node: the local test VPS or your real server.

The host always comes from the command line, never from this file:

    pytest tests/infra -o addopts=-ra --hosts=ssh://deploy@203.0.113.10
    pytest tests/infra -o addopts=-ra --hosts=ansible://llm_nodes \
        --ansible-inventory=ansible/inventory/terraform.yml      (what `make verify` runs)

(`-o addopts=-ra` because the repository's pytest settings leave tests/infra out of
`make test`.) Everything else comes from options, the environment, or the host's Ansible
inventory variables (with an ansible:// host), in that order:

| option                 | environment                   | inventory variable / default        |
| --domain               | VERIFY_DOMAIN                 | llm_domain                          |
| --llm-fqdn             | VERIFY_LLM_FQDN               | llm_fqdn, else llm.<domain>         |
| --monitoring-fqdn      | VERIFY_MONITORING_FQDN        | monitoring_fqdn, else monitoring.<dom> |
| --target-address       | VERIFY_TARGET_ADDRESS         | verify_target_address, ansible_host, |
|                        |                               | else the SSH host                   |
| --http-port            | VERIFY_HTTP_PORT              | traefik_http_port, else 80          |
| --https-port           | VERIFY_HTTPS_PORT             | traefik_https_port, else 443        |
| --ca-bundle            | VERIFY_CA_BUNDLE              | verify_ca_bundle, else the system's |
| --basic-auth-user      | VERIFY_BASIC_AUTH_USER        | first of vault_traefik_basic_auth_users |
| (never an option)      | VERIFY_BASIC_AUTH_PASSWORD    | that user's password, if visible    |
| --no-grafana           | VERIFY_NO_GRAFANA=1           | monitoring_grafana_enabled: false   |
| --skip-dns             | VERIFY_SKIP_DNS=1             | verify_skip_dns: true               |
| --model-file           | VERIFY_MODEL_FILE             | llm_node_model_file                 |
| --model-checksum       | VERIFY_MODEL_CHECKSUM         | llm_node_model_checksum             |
| (never an option)      | VERIFY_API_KEY                | first of vault_llm_node_api_keys    |
| --role                 | VERIFY_ROLE                   | from the groups edge and llm_nodes  |

With an inventory of more than one node (`--hosts=ansible://llm_nodes`), each node is
checked for its role: the edge like a single server, a worker for llm-node and its node
exporter on its private address, open to the edge's private address only, and no public
HTTP(S). Tests that do not fit a node's role skip and say so.

The verify_* inventory variables are for test inventories (the local VPS: Pebble's root
CA, a domain without public DNS); the roles never read them.

The password is never taken from the command line (it would land in shell history):
`read -rs VERIFY_BASIC_AUTH_PASSWORD && export VERIFY_BASIC_AUTH_PASSWORD`.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from infra_support import DEFAULT_MODEL_CHECKSUM, DEFAULT_MODEL_FILE, Target, node_role


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("llm-vps", "deployed LLM node")
    group.addoption("--domain", default=None, help="the domain (llm.<domain>, monitoring.<domain>)")
    group.addoption("--llm-fqdn", default=None, help="the API's host name")
    group.addoption("--monitoring-fqdn", default=None, help="the monitoring host name")
    group.addoption("--target-address", default=None, help="address to connect to for HTTP(S)")
    group.addoption("--http-port", default=None, type=int, help="Traefik's published HTTP port")
    group.addoption("--https-port", default=None, type=int, help="Traefik's published HTTPS port")
    group.addoption("--ca-bundle", default=None, help="PEM file of CAs trusted for HTTPS")
    group.addoption("--basic-auth-user", default=None, help="basic-auth user name")
    group.addoption("--no-grafana", action="store_true", help="the stack runs without Grafana")
    group.addoption("--skip-dns", action="store_true", help="do not check the DNS records")
    group.addoption("--model-file", default=None, help="model file name (in the /models mount)")
    group.addoption("--model-checksum", default=None, help="algorithm:hex of the model file")
    group.addoption(
        "--role",
        default=None,
        choices=["edge", "worker"],
        help="the node's role (default: from the Ansible inventory's groups, else edge)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "edge: checks of the edge (Traefik, monitoring, HTTPS)")
    config.addinivalue_line("markers", "worker: checks of a worker node only")


def _inventory_vars(host: Any) -> dict[str, Any]:
    if getattr(host.backend, "NAME", "") == "ansible":
        variables: dict[str, Any] = host.backend.get_variables()
        return variables
    return {}


def _role(config: pytest.Config, host: Any, inv: dict[str, Any]) -> tuple[str, str | None]:
    """The node's role and the edge's private address (from the inventory)."""
    role, edge = "edge", None
    if inv:
        role, edge = node_role(inv["inventory_hostname"], inv.get("groups") or {})
    role = _pick(config, "role", "VERIFY_ROLE", role)
    edge_ip = None
    if edge and edge != inv.get("inventory_hostname"):
        edge_ip = host.backend.ansible_runner.get_variables(edge).get("llm_private_ip")
    return role, edge_ip


def _pick(config: pytest.Config, option: str, env: str, fallback: Any) -> Any:
    value = config.getoption(option)
    if value is None or value is False:
        value = os.environ.get(env) or None
    return fallback if value is None else value


@pytest.fixture(scope="module")
def target(request: pytest.FixtureRequest, host: Any) -> Target:
    config = request.config
    inv = _inventory_vars(host)
    domain = _pick(config, "domain", "VERIFY_DOMAIN", inv.get("llm_domain"))
    llm_fqdn = _pick(
        config, "llm_fqdn", "VERIFY_LLM_FQDN", inv.get("llm_fqdn") or (domain and f"llm.{domain}")
    )
    monitoring_fqdn = _pick(
        config,
        "monitoring_fqdn",
        "VERIFY_MONITORING_FQDN",
        inv.get("monitoring_fqdn") or (domain and f"monitoring.{domain}"),
    )
    if not llm_fqdn or not monitoring_fqdn:
        pytest.fail("give the domain: --domain, VERIFY_DOMAIN or the inventory's llm_domain")
    users = inv.get("vault_traefik_basic_auth_users") or []
    user = _pick(config, "basic_auth_user", "VERIFY_BASIC_AUTH_USER", None)
    password = os.environ.get("VERIFY_BASIC_AUTH_PASSWORD") or None
    if user is None and users:
        user = users[0].get("name")
    if password is None:
        password = next((u.get("password") for u in users if u.get("name") == user), None)
    no_grafana = config.getoption("no_grafana") or os.environ.get("VERIFY_NO_GRAFANA") == "1"
    grafana = not no_grafana and str(inv.get("monitoring_grafana_enabled", True)).lower() not in {
        "false",
        "no",
        "0",
    }
    skip_dns = (
        config.getoption("skip_dns")
        or os.environ.get("VERIFY_SKIP_DNS") == "1"
        or str(inv.get("verify_skip_dns", "")).lower() in {"true", "yes", "1"}
    )
    role, edge_private_ip = _role(config, host, inv)
    return Target(
        llm_fqdn=llm_fqdn,
        monitoring_fqdn=monitoring_fqdn,
        address=_pick(
            config,
            "target_address",
            "VERIFY_TARGET_ADDRESS",
            inv.get("verify_target_address")
            or inv.get("ansible_host")
            or host.backend.get_hostname(),
        ),
        http_port=int(
            _pick(config, "http_port", "VERIFY_HTTP_PORT", inv.get("traefik_http_port", 80))
        ),
        https_port=int(
            _pick(config, "https_port", "VERIFY_HTTPS_PORT", inv.get("traefik_https_port", 443))
        ),
        ca_bundle=_pick(config, "ca_bundle", "VERIFY_CA_BUNDLE", inv.get("verify_ca_bundle")),
        user=user,
        password=password,
        grafana=grafana,
        check_dns=not skip_dns,
        model_file=_pick(
            config,
            "model_file",
            "VERIFY_MODEL_FILE",
            inv.get("llm_node_model_file", DEFAULT_MODEL_FILE),
        ),
        model_checksum=_pick(
            config,
            "model_checksum",
            "VERIFY_MODEL_CHECKSUM",
            inv.get("llm_node_model_checksum", DEFAULT_MODEL_CHECKSUM),
        ),
        api_key=os.environ.get("VERIFY_API_KEY")
        or next(iter(inv.get("vault_llm_node_api_keys") or []), None),
        ssh_source_gate=str(inv.get("common_ssh_source_gate", "host")),
        role=role,
        private_ip=inv.get("llm_private_ip"),
        edge_private_ip=edge_private_ip,
    )


@pytest.fixture(autouse=True)
def _fits_the_role(request: pytest.FixtureRequest) -> None:
    """Skips a test marked for the other role (edge: Traefik, monitoring, HTTPS; worker)."""
    markers = {m.name for m in request.node.iter_markers()} & {"edge", "worker"}
    if not markers:
        return
    target: Target = request.getfixturevalue("target")
    if target.role not in markers:
        pytest.skip(f"a {' and '.join(sorted(markers))} check: this node is the {target.role}")


@pytest.fixture(scope="module")
def credentials(target: Target) -> tuple[str, str]:
    if not target.user or not target.password:
        pytest.skip(
            "no basic-auth credentials: set VERIFY_BASIC_AUTH_USER and VERIFY_BASIC_AUTH_PASSWORD"
        )
    return target.user, target.password
