"""Policy checks on terraform/, read with python-hcl2 (checkov has no Hetzner policies)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from tfcheck import TF_DIR, load_hcl, outputs, resources, run_terraform, unquote, variables

Config = dict[str, dict[str, Any]]
ANYWHERE = ["0.0.0.0/0", "::/0"]


def literal(value: Any) -> Any:
    """A string literal's value; expressions (${...}) and other values unchanged."""
    if isinstance(value, str) and value.startswith('"'):
        return unquote(value)
    if isinstance(value, list):
        return [literal(item) for item in value]
    return value


def test_terraform_fmt_is_clean(terraform_bin: str) -> None:
    checked = run_terraform(["fmt", "-check", "-recursive", "-diff", "-no-color", "."], TF_DIR)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_terraform_version_is_at_least_1_9(tf_config: Config) -> None:
    (terraform,) = tf_config["versions.tf"]["terraform"]
    assert literal(terraform["required_version"]) == ">= 1.9"


def test_the_terraform_the_tests_run_meets_the_required_version(
    terraform_bin: str, tf_config: Config, tmp_path: Path
) -> None:
    """Terraform itself checks versions.tf's constraint against its own version."""
    (terraform,) = tf_config["versions.tf"]["terraform"]
    constraint = terraform["required_version"]
    (tmp_path / "versions.tf").write_text(f"terraform {{\n  required_version = {constraint}\n}}\n")
    checked = run_terraform(["validate", "-no-color"], tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize(
    ("provider", "source"),
    [("hcloud", "hetznercloud/hcloud"), ("local", "hashicorp/local")],
)
def test_providers_are_pinned_to_a_minor_version(
    tf_config: Config, provider: str, source: str
) -> None:
    (terraform,) = tf_config["versions.tf"]["terraform"]
    (required,) = terraform["required_providers"]
    assert literal(required[provider]["source"]) == source
    assert re.fullmatch(r"~> \d+\.\d+", literal(required[provider]["version"]))


def test_hcloud_provider_is_recent_enough_for_cloud_dns_and_primary_ip_locations(
    tf_config: Config,
) -> None:
    (terraform,) = tf_config["versions.tf"]["terraform"]
    (required,) = terraform["required_providers"]
    major, minor = literal(required["hcloud"]["version"]).removeprefix("~> ").split(".")
    assert (int(major), int(minor)) >= (1, 63)


def test_every_variable_is_typed_and_described(tf_config: Config) -> None:
    untyped = [name for name, body in variables(tf_config).items() if "type" not in body]
    undescribed = [
        name
        for name, body in variables(tf_config).items()
        if not literal(body.get("description", '""'))
    ]
    assert (untyped, undescribed) == ([], [])


def test_the_api_token_is_sensitive(tf_config: Config) -> None:
    assert variables(tf_config)["hcloud_token"]["sensitive"] is True


def test_the_provider_takes_the_token_variable(tf_config: Config) -> None:
    (provider,) = tf_config["versions.tf"]["provider"]
    assert provider['"hcloud"']["token"] == "${var.hcloud_token}"


def test_default_server_type_is_cx33(tf_config: Config) -> None:
    assert literal(variables(tf_config)["server_type"]["default"]) == "cx33"


def test_default_image_is_debian_13(tf_config: Config) -> None:
    assert literal(variables(tf_config)["image"]["default"]) == "debian-13"


def test_ssh_is_not_open_to_the_world_by_default(tf_config: Config) -> None:
    assert variables(tf_config)["allow_ssh_from_anywhere"]["default"] is False


def test_every_output_is_described(tf_config: Config) -> None:
    undescribed = [
        name
        for name, body in outputs(tf_config).items()
        if not literal(body.get("description", '""'))
    ]
    assert undescribed == []


def firewall_rules(tf_config: Config) -> list[dict[str, Any]]:
    return resources(tf_config, "hcloud_firewall")["this"]["rule"]


def test_firewall_opens_exactly_ssh_http_https_and_icmp(tf_config: Config) -> None:
    opened = sorted(
        (literal(rule["direction"]), literal(rule["protocol"]), literal(rule.get("port", '""')))
        for rule in firewall_rules(tf_config)
    )
    assert opened == [
        ("in", "icmp", ""),
        ("in", "tcp", "22"),
        ("in", "tcp", "443"),
        ("in", "tcp", "80"),
    ]


def test_firewall_limits_ssh_to_the_admin_networks(tf_config: Config) -> None:
    (ssh,) = [rule for rule in firewall_rules(tf_config) if literal(rule.get("port", '""')) == "22"]
    assert ssh["source_ips"] == "${var.admin_cidrs}"


@pytest.mark.parametrize("port", ["80", "443"])
def test_firewall_opens_web_ports_to_ipv4_and_ipv6(tf_config: Config, port: str) -> None:
    (rule,) = [
        rule for rule in firewall_rules(tf_config) if literal(rule.get("port", '""')) == port
    ]
    assert literal(rule["source_ips"]) == ANYWHERE


def server(tf_config: Config) -> dict[str, Any]:
    (only,) = resources(tf_config, "hcloud_server").values()
    return only


def test_servers_get_the_firewall_at_creation(tf_config: Config) -> None:
    assert server(tf_config)["firewall_ids"] == (
        "${count.index == 0 ? [hcloud_firewall.this.id] : [hcloud_firewall.workers[0].id]}"
    )


def test_multi_node_workers_firewall_opens_only_ssh_and_icmp(tf_config: Config) -> None:
    workers = resources(tf_config, "hcloud_firewall")["workers"]
    opened = sorted(
        (literal(rule["direction"]), literal(rule["protocol"]), literal(rule.get("port", '""')))
        for rule in workers["rule"]
    )
    assert opened == [("in", "icmp", ""), ("in", "tcp", "22")]


def test_multi_node_workers_firewall_limits_ssh_to_the_admin_networks(tf_config: Config) -> None:
    workers = resources(tf_config, "hcloud_firewall")["workers"]
    (ssh,) = [rule for rule in workers["rule"] if literal(rule.get("port", '""')) == "22"]
    assert ssh["source_ips"] == "${var.admin_cidrs}"


def test_multi_node_workers_firewall_exists_only_with_workers(tf_config: Config) -> None:
    assert resources(tf_config, "hcloud_firewall")["workers"]["count"] == (
        "${local.multi_node ? 1 : 0}"
    )


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_servers_use_the_primary_ips(tf_config: Config, family: str) -> None:
    (public_net,) = server(tf_config)["public_net"]
    assert public_net[f"{family}_enabled"] is True
    assert public_net[family] == f"${{hcloud_primary_ip.{family}[count.index].id}}"


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_primary_ips_outlive_the_server(tf_config: Config, family: str) -> None:
    primary_ip = resources(tf_config, "hcloud_primary_ip")[family]
    assert literal(primary_ip["type"]) == family
    assert primary_ip["auto_delete"] is False
    assert primary_ip["delete_protection"] == "${var.delete_protection}"


def test_delete_protection_is_on_by_default(tf_config: Config) -> None:
    assert variables(tf_config)["delete_protection"]["default"] is True


def test_server_ignores_later_changes_to_keys_and_user_data(tf_config: Config) -> None:
    (lifecycle,) = server(tf_config)["lifecycle"]
    assert {literal(item) for item in lifecycle["ignore_changes"]} >= {"ssh_keys", "user_data"}


def test_server_user_data_is_the_cloud_init_template(tf_config: Config) -> None:
    (main_locals,) = tf_config["main.tf"]["locals"]
    assert (
        server(tf_config)["user_data"],
        "templates/cloud-init.yaml.tftpl" in main_locals["user_data"],
    ) == ("${local.user_data[count.index]}", True)


def test_private_network_only_with_more_than_one_node(tf_config: Config) -> None:
    counts = {
        rtype: next(iter(resources(tf_config, rtype).values()))["count"]
        for rtype in ("hcloud_network", "hcloud_network_subnet")
    }
    assert counts == {
        "hcloud_network": "${local.multi_node ? 1 : 0}",
        "hcloud_network_subnet": "${local.multi_node ? 1 : 0}",
    }


def test_multi_node_means_more_than_one_node(tf_config: Config) -> None:
    (main_locals,) = tf_config["main.tf"]["locals"]
    assert main_locals["multi_node"] == "${var.node_count > 1}"


def rrsets(tf_config: Config) -> dict[str, dict[str, Any]]:
    return resources(tf_config, "hcloud_zone_rrset")


@pytest.mark.parametrize("record_type", ["A", "AAAA", "CAA"])
def test_llm_and_monitoring_names_have_each_record_type(
    tf_config: Config, evaluate: Any, record_type: str
) -> None:
    (rrset,) = [r for r in rrsets(tf_config).values() if literal(r["type"]) == record_type]
    assert rrset["name"] == "${each.key}"
    for_each = rrset["for_each"].removeprefix("${").removesuffix("}")
    names = evaluate({}, extra_outputs={"names": f"${{{for_each}}}"})["names"]
    assert sorted(names) == ["llm", "monitoring"]


def test_caa_allows_only_lets_encrypt_and_no_wildcards(tf_config: Config) -> None:
    (caa,) = [r for r in rrsets(tf_config).values() if literal(r["type"]) == "CAA"]
    values = sorted(literal(record["value"]) for record in caa["records"])
    assert values == ['0 issue "letsencrypt.org"', '0 issuewild ";"']


@pytest.mark.parametrize("record_type", ["A", "AAAA", "CAA"])
def test_records_use_the_short_ttl_variable(tf_config: Config, record_type: str) -> None:
    (rrset,) = [r for r in rrsets(tf_config).values() if literal(r["type"]) == record_type]
    assert rrset["ttl"] == "${var.dns_ttl}"


def test_default_ttl_is_short(tf_config: Config) -> None:
    assert variables(tf_config)["dns_ttl"]["default"] <= 300


def test_inventory_is_written_where_ansible_expects_it(tf_config: Config) -> None:
    inventory = resources(tf_config, "local_file")["ansible_inventory"]
    assert literal(inventory["filename"]) == "${path.module}/../ansible/inventory/terraform.yml"


def test_known_hosts_is_written_next_to_the_inventory(tf_config: Config) -> None:
    (inventory_locals,) = tf_config["inventory.tf"]["locals"]
    known_hosts = resources(tf_config, "local_file")["known_hosts"]
    assert (literal(known_hosts["filename"]), inventory_locals["known_hosts_path"]) == (
        "${local.known_hosts_path}",
        '${abspath("${path.module}/../ansible/inventory/known_hosts")}',
    )


@pytest.mark.parametrize(
    "path",
    [
        "ansible/inventory/terraform.yml",
        "ansible/inventory/known_hosts",
        "terraform/host-keys.auto.tfvars.json",
    ],
)
def test_written_inventory_known_hosts_and_host_keys_are_git_ignored(path: str) -> None:
    ignored = (TF_DIR.parent / ".gitignore").read_text().splitlines()
    assert path in ignored


@pytest.mark.parametrize("pattern", ["*.tfstate", "*.tfvars", ".terraform/"])
def test_state_variables_and_provider_cache_are_git_ignored(pattern: str) -> None:
    ignored = (TF_DIR.parent / ".gitignore").read_text().splitlines()
    assert pattern in ignored


def test_tfvars_example_is_not_ignored() -> None:
    ignored = (TF_DIR.parent / ".gitignore").read_text().splitlines()
    assert "!*.tfvars.example" in ignored


def test_tfvars_example_sets_only_declared_variables(tf_config: Config) -> None:
    example = load_hcl(TF_DIR / "terraform.tfvars.example")
    assert set(example) - set(variables(tf_config)) == set()


def test_tfvars_example_sets_every_required_variable(tf_config: Config) -> None:
    example = load_hcl(TF_DIR / "terraform.tfvars.example")
    required = {name for name, body in variables(tf_config).items() if "default" not in body}
    assert required - set(example) == set()
