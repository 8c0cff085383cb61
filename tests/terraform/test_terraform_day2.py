"""Day-2 settings in the rendered inventory: the SSH address family, the exact authorised
keys, the cloud firewall as the SSH gate, only the deploy key, and the pinned host keys.
Evaluated by the real Terraform and read by the real ansible-inventory, as in
test_terraform_outputs.py (whose helpers and fixtures this module uses)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_terraform_outputs import (
    ANSIBLE_DIR,
    Evaluate,
    ansible_inventory_bin,
    ansible_inventory_list,
    single_node_listing,
)
from tfcheck import sample_host_keys, sample_ssh_key

__all__ = ["ansible_inventory_bin", "single_node_listing"]  # fixtures used here


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({}, ("203.0.113.10", "deploy@203.0.113.10")),
        (
            {"ssh_address_family": "ipv6", "admin_cidrs": ["2001:db8:1::/48"]},
            ("2001:db8:10::1", "deploy@2001:db8:10::1"),
        ),
    ],
    ids=["ipv4", "ipv6"],
)
def test_ansible_host_and_ssh_command_follow_ssh_address_family(
    evaluate: Evaluate,
    ansible_inventory_bin: Path,
    tmp_path: Path,
    variables: dict[str, Any],
    expected: tuple[str, str],
) -> None:
    outputs = evaluate(variables)
    listed = ansible_inventory_list(ansible_inventory_bin, outputs["ansible_inventory"], tmp_path)
    host = listed["_meta"]["hostvars"]["llm-1"]
    assert (host["ansible_host"], outputs["ssh_command"].rsplit(" ", 1)[1]) == expected


def test_inventory_makes_the_authorised_keys_exactly_ssh_public_keys(
    evaluate: Evaluate, ansible_inventory_bin: Path, tmp_path: Path
) -> None:
    keys = [sample_ssh_key("first"), sample_ssh_key("second")]
    inventory = evaluate({"ssh_public_keys": keys})["ansible_inventory"]
    listed = ansible_inventory_list(ansible_inventory_bin, inventory, tmp_path, ANSIBLE_DIR)
    host = listed["_meta"]["hostvars"]["llm-1"]
    assert (
        host["common_deploy_user_authorized_keys"],
        host["common_deploy_user_authorized_keys_exclusive"],
    ) == (keys, True)


def test_inventory_makes_the_cloud_firewall_the_ssh_gate(
    single_node_listing: dict[str, Any],
) -> None:
    host = single_node_listing["_meta"]["hostvars"]["llm-1"]
    assert host["common_ssh_source_gate"] == "cloud"


@pytest.mark.parametrize(
    ("identity_file", "expected"),
    [("", (None, False)), ("~/.ssh/llm.pub", ("~/.ssh/llm.pub", True))],
    ids=["ssh-defaults", "only-the-deploy-key"],
)
def test_inventory_offers_only_the_deploy_key_when_given(
    evaluate: Evaluate,
    ansible_inventory_bin: Path,
    tmp_path: Path,
    identity_file: str,
    expected: tuple[str | None, bool],
) -> None:
    inventory = evaluate({"ssh_identity_file": identity_file})["ansible_inventory"]
    listed = ansible_inventory_list(ansible_inventory_bin, inventory, tmp_path, ANSIBLE_DIR)
    host = listed["_meta"]["hostvars"]["llm-1"]
    assert (
        host.get("ansible_ssh_private_key_file"),
        "-o IdentitiesOnly=yes" in host["ansible_ssh_common_args"].split(" -o ", 1)[-1],
    ) == expected


def test_known_hosts_pins_each_servers_host_key_to_its_addresses(evaluate: Evaluate) -> None:
    keys = sample_host_keys(2)
    keys["2"] = {**keys["2"], "public": sample_ssh_key("server-2")}
    outputs = evaluate({"node_count": 2, "host_keys": keys})
    assert outputs["known_hosts"] == (
        f"203.0.113.10,2001:db8:10::1 {keys['1']['public']}\n"
        f"203.0.113.11,2001:db8:11::1 {sample_ssh_key('server-2')}\n"
    )


def test_inventory_checks_host_keys_strictly_against_the_known_hosts(
    single_node: dict[str, Any], single_node_listing: dict[str, Any]
) -> None:
    args = single_node_listing["_meta"]["hostvars"]["llm-1"]["ansible_ssh_common_args"]
    known_hosts = single_node["ansible_inventory_path"].replace("terraform.yml", "known_hosts")
    assert args.split(" -o IdentitiesOnly")[0] == (
        f"-o StrictHostKeyChecking=yes -o UserKnownHostsFile={known_hosts}"
    )
