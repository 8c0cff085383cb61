"""Outputs, the Ansible inventory and the cloud-init user data, rendered by Terraform.

The locals and outputs of terraform/ are evaluated by the real Terraform over sample
resource attributes (see tfcheck.py); the rendered inventory is then read by the real
ansible-inventory, and the user data is parsed as the YAML cloud-init reads.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from tfcheck import resources, sample_host_keys, sample_ssh_key

Evaluate = Callable[..., dict[str, Any]]
ANSIBLE_INVENTORY = Path(sys.executable).parent / "ansible-inventory"
ANSIBLE_DIR = Path(__file__).resolve().parents[2] / "ansible"
# Python types of the argument spec types the inventory may set.
SPEC_TYPES: dict[str, type] = {"str": str, "list": list, "bool": bool, "int": int, "dict": dict}


@pytest.fixture(scope="module")
def ansible_inventory_bin() -> Path:
    if not ANSIBLE_INVENTORY.exists():
        pytest.skip(f"{ANSIBLE_INVENTORY} missing: run `make venv` (ansible-core)")
    return ANSIBLE_INVENTORY


def ansible_inventory_list(
    binary: Path, inventory: str, tmp_path: Path, playbook_dir: Path | None = None
) -> dict[str, Any]:
    """What ansible-inventory makes of the inventory text (fails on any parse problem).

    With playbook_dir, that directory's group_vars/ are merged in with the precedence
    ansible-playbook gives them (they override the inventory file's group variables).
    """
    path = tmp_path / "terraform.yml"
    path.write_text(inventory)
    extra = ["--playbook-dir", str(playbook_dir)] if playbook_dir else []
    listed = subprocess.run(
        [str(binary), "-i", str(path), *extra, "--list"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={
            "PATH": str(binary.parent),
            "HOME": str(tmp_path),
            "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true",
        },
    )
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)


@pytest.fixture(scope="module")
def single_node_listing(
    single_node: dict[str, Any],
    ansible_inventory_bin: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    """`ansible-inventory --list` of the inventory rendered for one node."""
    return ansible_inventory_list(
        ansible_inventory_bin, single_node["ansible_inventory"], tmp_path_factory.mktemp("inv")
    )


def test_addresses_are_the_primary_ips(single_node: dict[str, Any]) -> None:
    assert (single_node["ipv4_addresses"], single_node["ipv6_addresses"]) == (
        ["203.0.113.10"],
        ["2001:db8:10::1"],
    )


def test_fqdns_and_url(single_node: dict[str, Any]) -> None:
    assert (single_node["llm_fqdn"], single_node["monitoring_fqdn"], single_node["llm_url"]) == (
        "llm.example.com",
        "monitoring.example.com",
        "https://llm.example.com/v1",
    )


def test_ssh_command_logs_in_as_the_deploy_user(single_node: dict[str, Any]) -> None:
    known_hosts = single_node["ansible_inventory_path"].replace("terraform.yml", "known_hosts")
    assert (
        single_node["ssh_command"] == f"ssh -o UserKnownHostsFile={known_hosts} deploy@203.0.113.10"
    )


def test_no_private_network_with_one_node(single_node: dict[str, Any]) -> None:
    assert single_node["private_ips"] == []


@pytest.mark.parametrize(
    ("create_zone", "nameservers"),
    [(True, ["hydrogen.ns.example.net."]), (False, ["oxygen.ns.example.net."])],
)
def test_nameservers_come_from_the_created_or_the_existing_zone(
    evaluate: Evaluate, create_zone: bool, nameservers: list[str]
) -> None:
    assert evaluate({"create_dns_zone": create_zone})["dns_nameservers"] == nameservers


def test_inventory_path_is_in_the_ansible_directory(single_node: dict[str, Any]) -> None:
    assert single_node["ansible_inventory_path"].endswith("/ansible/inventory/terraform.yml")


def test_inventory_is_accepted_by_ansible_inventory(single_node_listing: dict[str, Any]) -> None:
    listed = single_node_listing
    assert listed["llm_nodes"]["hosts"] == ["llm-1"]


def test_inventory_host_has_address_and_deploy_user(single_node_listing: dict[str, Any]) -> None:
    listed = single_node_listing
    host = listed["_meta"]["hostvars"]["llm-1"]
    assert (host["ansible_host"], host["ansible_user"]) == ("203.0.113.10", "deploy")


def test_inventory_carries_the_domain_variables_the_playbook_needs(
    single_node_listing: dict[str, Any],
) -> None:
    listed = single_node_listing
    host = listed["_meta"]["hostvars"]["llm-1"]
    assert {key: host[key] for key in ("llm_domain", "llm_fqdn", "monitoring_fqdn")} == {
        "llm_domain": "example.com",
        "llm_fqdn": "llm.example.com",
        "monitoring_fqdn": "monitoring.example.com",
    }


def test_inventory_uses_a_custom_deploy_user(
    evaluate: Evaluate, ansible_inventory_bin: Path, tmp_path: Path
) -> None:
    inventory = evaluate({"deploy_user": "ops"})["ansible_inventory"]
    listed = ansible_inventory_list(ansible_inventory_bin, inventory, tmp_path)
    assert listed["_meta"]["hostvars"]["llm-1"]["ansible_user"] == "ops"


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({}, {"common_deploy_user": "deploy", "common_admin_cidrs": ["198.51.100.7/32"]}),
        (
            {"deploy_user": "ops", "admin_cidrs": ["198.51.100.7/32", "2001:db8:1::/48"]},
            {
                "common_deploy_user": "ops",
                "common_admin_cidrs": ["198.51.100.7/32", "2001:db8:1::/48"],
            },
        ),
    ],
    ids=["defaults", "custom-user-and-ipv6"],
)
def test_inventory_hands_deploy_user_and_admin_cidrs_to_the_common_role(
    evaluate: Evaluate,
    ansible_inventory_bin: Path,
    tmp_path: Path,
    variables: dict[str, Any],
    expected: dict[str, Any],
) -> None:
    """sshd's AllowUsers and the host firewall get Terraform's user and SSH sources.

    Listed together with the playbook's group_vars, so a value set there (which would
    override the inventory's group variables) fails this test.
    """
    inventory = evaluate(variables)["ansible_inventory"]
    listed = ansible_inventory_list(ansible_inventory_bin, inventory, tmp_path, ANSIBLE_DIR)
    for host in listed["llm_nodes"]["hosts"]:
        hostvars = listed["_meta"]["hostvars"][host]
        assert {key: hostvars.get(key) for key in expected} == expected


def role_options() -> dict[str, dict[str, Any]]:
    """Every role's argument spec options (roles/<role>/meta/argument_specs.yml), by name."""
    options: dict[str, dict[str, Any]] = {}
    for spec_file in sorted(ANSIBLE_DIR.glob("roles/*/meta/argument_specs.yml")):
        specs = yaml.safe_load(spec_file.read_text())["argument_specs"]
        for entry in specs.values():
            options.update(entry.get("options", {}))
    return options


def matches_spec(value: Any, option: dict[str, Any] | None) -> bool:
    """Whether an argument spec option (None: undeclared) accepts the value as it is."""
    if option is None or not isinstance(value, SPEC_TYPES[option.get("type", "str")]):
        return False
    elements = SPEC_TYPES.get(option.get("elements", ""))
    return elements is None or all(isinstance(item, elements) for item in value)


def test_inventory_role_variables_are_declared_with_matching_types(
    single_node_listing: dict[str, Any],
) -> None:
    """Each role variable the inventory sets (<role>_*) is an option of that role's
    argument spec, of the type the value Terraform wrote has."""
    roles = [path.name for path in (ANSIBLE_DIR / "roles").iterdir() if path.is_dir()]
    options = role_options()
    hostvars = single_node_listing["_meta"]["hostvars"]["llm-1"]
    role_vars = [key for key in hostvars if any(key.startswith(f"{role}_") for role in roles)]
    mismatched = [key for key in role_vars if not matches_spec(hostvars[key], options.get(key))]
    assert {"common_admin_cidrs", "common_deploy_user", "monitoring_fqdn"} <= set(role_vars)
    assert mismatched == []


def test_two_nodes_are_both_in_the_inventory_with_private_addresses(
    evaluate: Evaluate, ansible_inventory_bin: Path, tmp_path: Path
) -> None:
    inventory = evaluate({"node_count": 2})["ansible_inventory"]
    listed = ansible_inventory_list(ansible_inventory_bin, inventory, tmp_path)
    hostvars = listed["_meta"]["hostvars"]
    assert {name: hostvars[name]["llm_private_ip"] for name in listed["llm_nodes"]["hosts"]} == {
        "llm-1": "10.42.1.10",
        "llm-2": "10.42.1.11",
    }


def test_two_nodes_output_their_private_addresses(evaluate: Evaluate) -> None:
    assert evaluate({"node_count": 2})["private_ips"] == ["10.42.1.10", "10.42.1.11"]


def test_dns_points_at_the_first_node(evaluate: Evaluate) -> None:
    evaluated = evaluate({"node_count": 2}, extra_outputs={"a": "${local.ipv4_address}"})
    assert evaluated["a"] == evaluated["ipv4_addresses"][0]


@pytest.fixture
def user_data(evaluate: Evaluate, tf_config: dict[str, dict[str, Any]]) -> str:
    """The servers' user_data expression from main.tf, evaluated by Terraform."""
    (server,) = resources(tf_config, "hcloud_server").values()
    assert server["user_data"] == "${local.user_data[count.index]}"
    keys = [sample_ssh_key("first@example"), sample_ssh_key("second@example")]
    evaluated = evaluate(
        {"ssh_public_keys": keys},
        extra_outputs={"user_data": "${nonsensitive(local.user_data[0])}"},
    )
    return evaluated["user_data"]


@pytest.fixture
def cloud_config(user_data: str) -> dict[str, Any]:
    return yaml.safe_load(user_data)


def test_user_data_is_cloud_config(user_data: str) -> None:
    assert user_data.startswith("#cloud-config\n")


def test_deploy_user_gets_the_ssh_keys(cloud_config: dict[str, Any]) -> None:
    (user,) = cloud_config["users"]
    assert (user["name"], user["ssh_authorized_keys"]) == (
        "deploy",
        [sample_ssh_key("first@example"), sample_ssh_key("second@example")],
    )


def test_deploy_user_has_sudo_and_no_password(cloud_config: dict[str, Any]) -> None:
    (user,) = cloud_config["users"]
    assert (user["sudo"], user["lock_passwd"], "sudo" in user["groups"]) == (
        "ALL=(ALL) NOPASSWD:ALL",
        True,
        True,
    )


def test_root_and_password_logins_are_off(cloud_config: dict[str, Any]) -> None:
    assert (cloud_config["disable_root"], cloud_config["ssh_pwauth"]) == (True, False)


def test_sshd_refuses_root_and_passwords(cloud_config: dict[str, Any]) -> None:
    (sshd,) = [f for f in cloud_config["write_files"] if f["path"].startswith("/etc/ssh/")]
    assert set(sshd["content"].splitlines()) >= {"PermitRootLogin no", "PasswordAuthentication no"}


def test_unattended_upgrades_are_installed_and_enabled(cloud_config: dict[str, Any]) -> None:
    (periodic,) = [f for f in cloud_config["write_files"] if f["path"].startswith("/etc/apt/")]
    assert ("unattended-upgrades" in cloud_config["packages"], periodic["content"]) == (
        True,
        'APT::Periodic::Update-Package-Lists "1";\nAPT::Periodic::Unattended-Upgrade "1";\n',
    )


def test_cloud_init_installs_the_projects_host_key_only(
    cloud_config: dict[str, Any],
) -> None:
    expected = sample_host_keys(1)["1"]
    assert (
        cloud_config["ssh_deletekeys"],
        cloud_config["ssh_genkeytypes"],
        cloud_config["ssh_keys"]["ed25519_public"],
        cloud_config["ssh_keys"]["ed25519_private"].startswith("-----BEGIN OPENSSH PRIVATE KEY"),
    ) == (True, [], expected["public"], True)


@pytest.mark.parametrize("create_zone", [True, False], ids=["created-zone", "existing-zone"])
def test_inventory_names_the_zone_nameservers_for_the_first_deploy_message(
    evaluate: Evaluate, ansible_inventory_bin: Path, tmp_path: Path, create_zone: bool
) -> None:
    """The playbook's DNS gate tells the user where to delegate the domain."""
    evaluated = evaluate({"create_dns_zone": create_zone})
    listed = ansible_inventory_list(ansible_inventory_bin, evaluated["ansible_inventory"], tmp_path)
    host = listed["_meta"]["hostvars"]["llm-1"]
    assert host["llm_dns_nameservers"] == evaluated["dns_nameservers"]


def test_multi_node_one_node_is_the_edge_and_the_only_llm_node(
    single_node_listing: dict[str, Any],
) -> None:
    groups = {name: single_node_listing[name]["hosts"] for name in ("edge", "llm_nodes")}
    assert groups == {"edge": ["llm-1"], "llm_nodes": ["llm-1"]}


@pytest.fixture
def three_node_listing(
    evaluate: Evaluate, ansible_inventory_bin: Path, tmp_path: Path
) -> dict[str, Any]:
    inventory = evaluate({"node_count": 3})["ansible_inventory"]
    return ansible_inventory_list(ansible_inventory_bin, inventory, tmp_path)


def test_multi_node_three_nodes_the_first_is_the_edge(three_node_listing: dict[str, Any]) -> None:
    assert three_node_listing["edge"]["hosts"] == ["llm-1"]


def test_multi_node_three_nodes_every_server_runs_llm_node(
    three_node_listing: dict[str, Any],
) -> None:
    assert three_node_listing["llm_nodes"]["hosts"] == ["llm-1", "llm-2", "llm-3"]


def test_multi_node_three_nodes_each_have_a_private_address(
    three_node_listing: dict[str, Any],
) -> None:
    hostvars = three_node_listing["_meta"]["hostvars"]
    private = {name: hostvars[name]["llm_private_ip"] for name in ("llm-1", "llm-2", "llm-3")}
    assert private == {"llm-1": "10.42.1.10", "llm-2": "10.42.1.11", "llm-3": "10.42.1.12"}


def test_multi_node_edge_group_adds_no_host_variables(three_node_listing: dict[str, Any]) -> None:
    """The edge entry only names the host: its variables come from llm_nodes, once."""
    assert three_node_listing["_meta"]["hostvars"]["llm-1"]["ansible_host"] == "203.0.113.10"
