"""The persistent data volume: created per server, attached, outlives the server, and named
in the outputs and in the inventory the playbook mounts it from (tfcheck evaluates them with
the real Terraform over sample attributes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_terraform_outputs import ANSIBLE_DIR, ANSIBLE_INVENTORY, Evaluate, ansible_inventory_list
from tfcheck import resources, variables

Config = dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
def inventory_bin() -> Path:
    if not ANSIBLE_INVENTORY.exists():
        pytest.skip(f"{ANSIBLE_INVENTORY} missing: run `make venv` (ansible-core)")
    return ANSIBLE_INVENTORY


def volume(tf_config: Config) -> dict[str, Any]:
    return resources(tf_config, "hcloud_volume")["data"]


def attachment(tf_config: Config) -> dict[str, Any]:
    return resources(tf_config, "hcloud_volume_attachment")["data"]


def test_data_volume_is_on_by_default_with_room_for_two_models(tf_config: Config) -> None:
    assert variables(tf_config)["data_volume_size_gb"]["default"] >= 10


def test_data_volume_one_per_server_unless_switched_off(tf_config: Config) -> None:
    assert volume(tf_config)["count"] == "${var.data_volume_size_gb > 0 ? var.node_count : 0}"


def test_data_volume_is_a_resource_of_its_own_next_to_the_server(tf_config: Config) -> None:
    """Not a server attribute: replacing the server leaves the volume as it is."""
    vol = volume(tf_config)
    assert (vol["location"], vol["delete_protection"]) == (
        "${var.location}",
        "${var.delete_protection}",
    )


def test_data_volume_is_formatted_ext4_once_by_hetzner(tf_config: Config) -> None:
    assert volume(tf_config)["format"] == '"ext4"'


def test_data_volume_attachment_joins_each_volume_to_its_server(tf_config: Config) -> None:
    att = attachment(tf_config)
    assert (att["volume_id"], att["server_id"]) == (
        "${hcloud_volume.data[count.index].id}",
        "${hcloud_server.this[count.index].id}",
    )


def test_data_volume_is_mounted_by_the_playbook_not_by_hetzner(tf_config: Config) -> None:
    assert attachment(tf_config)["automount"] is False


@pytest.mark.parametrize(("size", "count"), [(15, 1), (0, 0)], ids=["default", "off"])
def test_data_volume_outputs_name_each_volume(evaluate: Evaluate, size: int, count: int) -> None:
    out = evaluate({"data_volume_size_gb": size})
    assert (len(out["data_volume_ids"]), len(out["data_volume_devices"])) == (count, count)


def test_data_volume_device_is_the_stable_by_id_path(evaluate: Evaluate) -> None:
    out = evaluate({})
    assert out["data_volume_devices"] == [
        f"/dev/disk/by-id/scsi-0HC_Volume_{out['data_volume_ids'][0]}"
    ]


def test_data_volume_device_reaches_the_inventory(
    evaluate: Evaluate, inventory_bin: Path, tmp_path: Path
) -> None:
    out = evaluate({"node_count": 2})
    listed = ansible_inventory_list(inventory_bin, out["ansible_inventory"], tmp_path)
    hostvars = listed["_meta"]["hostvars"]
    devices = [hostvars[h]["llm_data_volume_device"] for h in listed["llm_nodes"]["hosts"]]
    assert devices == out["data_volume_devices"]


def test_data_volume_off_leaves_the_inventory_without_a_device(
    evaluate: Evaluate, inventory_bin: Path, tmp_path: Path
) -> None:
    out = evaluate({"data_volume_size_gb": 0})
    listed = ansible_inventory_list(inventory_bin, out["ansible_inventory"], tmp_path, ANSIBLE_DIR)
    assert "llm_data_volume_device" not in listed["_meta"]["hostvars"]["llm-1"]
