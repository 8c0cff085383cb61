"""Each validation in terraform/variables.tf, evaluated by Terraform on good and bad values.

A scratch module holding a copy of variables.tf is planned with -var values: Terraform
itself evaluates every condition (no provider is needed for that), so these tests check
the real HCL, not a re-implementation of it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from tfcheck import (
    BASE_VARS,
    TF_DIR,
    run_terraform,
    sample_host_keys,
    sample_ssh_key,
    tf_var_args,
    unquote,
    variables,
)

ANYWHERE_V4 = "0.0.0.0/0"
ANYWHERE_V6 = "::/0"

# (variable, value, extra variables, fragment of the expected error or None if accepted)
Case = tuple[str, Any, dict[str, Any], str | None]
CASES: list[Case] = [
    ("hcloud_token", "a" * 64, {}, None),
    ("hcloud_token", "a" * 63, {}, "64 letters and digits"),
    ("hcloud_token", "a" * 63 + "!", {}, "64 letters and digits"),
    ("name", "llm", {}, None),
    ("name", "Bad_Name", {}, "lower-case letters, digits or hyphens"),
    ("name", "llm-", {}, "lower-case letters, digits or hyphens"),
    ("domain", "example.com", {}, None),
    ("domain", "ai.example.co.uk", {}, None),
    ("domain", "xn--bcher-kva.example", {}, None),
    ("domain", "https://example.com", {}, "bare lower-case domain name"),
    ("domain", "example.com.", {}, "bare lower-case domain name"),
    ("domain", "Example.com", {}, "bare lower-case domain name"),
    ("domain", "localhost", {}, "bare lower-case domain name"),
    ("domain", "example.com:443", {}, "bare lower-case domain name"),
    ("domain", "-bad.example.com", {}, "bare lower-case domain name"),
    ("dns_ttl", 300, {}, None),
    ("dns_ttl", 30, {}, "from 60"),
    ("dns_ttl", 90.5, {}, "from 60"),
    ("location", "hel1", {}, None),
    ("location", "ash", {"server_type": "cpx32"}, None),
    ("location", "fsn1-dc14", {}, "location must be one of"),
    ("server_type", "cx33", {}, None),
    ("server_type", "cx53", {}, None),
    ("server_type", "cpx32", {"location": "hil"}, None),
    ("server_type", "ccx13", {}, None),
    ("server_type", "cx23", {}, "needs about 7 GB"),
    ("server_type", "cpx22", {}, "needs about 7 GB"),
    ("server_type", "cpx12", {}, "needs about 7 GB"),
    ("server_type", "cax21", {}, "x86 type with at least 8 GB"),
    ("server_type", "cx32", {}, "x86 type with at least 8 GB"),
    ("server_type", "cx33", {"location": "ash"}, "exist only in fsn1, nbg1 and hel1"),
    ("image", "debian-13", {}, None),
    ("image", "ubuntu-24.04", {}, "Debian image from debian-13 on"),
    ("image", "debian-12", {}, "Debian image from debian-13 on"),
    ("ssh_public_keys", [sample_ssh_key(), sample_ssh_key("second key")], {}, None),
    ("ssh_public_keys", [], {}, "at least one public key"),
    ("ssh_public_keys", ["-----BEGIN OPENSSH PRIVATE KEY-----"], {}, "never a private key"),
    ("ssh_public_keys", ["AAAAC3NzaC1lZDI1NTE5"], {}, "never a private key"),
    ("admin_cidrs", ["198.51.100.7/32", "2001:db8::/64"], {}, None),
    ("admin_cidrs", [], {}, "at least one network"),
    ("admin_cidrs", ["198.51.100.7"], {}, "CIDR notation"),
    ("admin_cidrs", ["198.51.100.0/33"], {}, "CIDR notation"),
    ("admin_cidrs", [ANYWHERE_V4], {}, "opens SSH to the whole internet"),
    ("admin_cidrs", ["198.51.100.7/32", ANYWHERE_V6], {}, "opens SSH to the whole internet"),
    ("admin_cidrs", [ANYWHERE_V4, ANYWHERE_V6], {"allow_ssh_from_anywhere": True}, None),
    ("ssh_address_family", "ipv4", {}, None),
    ("ssh_address_family", "ipv6", {"admin_cidrs": ["2001:db8::/64"]}, None),
    ("ssh_address_family", "ipv6", {"admin_cidrs": ["198.51.100.7/32", "2001:db8::/64"]}, None),
    ("ssh_address_family", "ipx", {}, 'must be "ipv4" or "ipv6"'),
    ("ssh_address_family", "ipv6", {}, "No network in admin_cidrs can reach"),
    ("ssh_address_family", "ipv4", {"admin_cidrs": ["2001:db8::/64"]}, "No network in admin_cidrs"),
    ("host_keys", sample_host_keys(2), {"node_count": 2}, None),
    ("host_keys", {}, {}, "no SSH host key for every server"),
    ("host_keys", sample_host_keys(1), {"node_count": 2}, "no SSH host key for every server"),
    (
        "host_keys",
        {"1": {"public": sample_ssh_key(), "private": "not a key"}},
        {},
        "ed25519 key pair in OpenSSH format",
    ),
    (
        "host_keys",
        {"1": {"public": "ssh-rsa AAAAB3", "private": sample_host_keys(1)["1"]["private"]}},
        {},
        "ed25519 key pair in OpenSSH format",
    ),
    ("deploy_user", "deploy", {}, None),
    ("deploy_user", "root", {}, "Linux user name"),
    ("deploy_user", "Deploy User", {}, "Linux user name"),
    ("labels", {"owner": "me", "env": "prod"}, {}, None),
    ("labels", {"bad key": "x"}, {}, "Label keys and values"),
    ("labels", {"owner": "not allowed!"}, {}, "Label keys and values"),
    ("node_count", 2, {}, None),
    ("data_volume_size_gb", 0, {}, None),
    ("data_volume_size_gb", 10, {}, None),
    ("data_volume_size_gb", 5, {}, "from 10 (Hetzner's smallest volume)"),
    ("data_volume_size_gb", 12.5, {}, "whole number of GB"),
    ("node_count", 0, {}, "from 1 to 10"),
    ("node_count", 1.5, {}, "from 1 to 10"),
    ("network_ip_range", "10.42.0.0/16", {}, None),
    ("network_ip_range", "10.42.0.0/24", {}, "from /8 to /23"),
    ("network_ip_range", "2001:db8::/48", {}, "from /8 to /23"),
    ("network_ip_range", "ten.net", {}, "from /8 to /23"),
    ("node_count", 11, {}, "from 1 to 10"),
    ("network_ip_range", "10.0.0.0/8", {"node_count": 3}, None),
    ("network_ip_range", "172.16.0.0/12", {"node_count": 3}, None),
    ("network_ip_range", "192.168.4.0/23", {"node_count": 3}, None),
    ("network_ip_range", "172.32.0.0/16", {"node_count": 3}, "private (RFC 1918) range"),
    ("network_ip_range", "198.51.100.0/23", {"node_count": 3}, "private (RFC 1918) range"),
    ("network_ip_range", "192.167.0.0/16", {}, "private (RFC 1918) range"),
]


def case_id(case: Case) -> str:
    name, value, extra, expected = case
    verdict = "refused" if expected else "accepted"
    return f"{name}={value!r}{'+' + repr(extra) if extra else ''}-{verdict}"


@pytest.fixture
def variables_module(terraform_bin: str, tmp_path: Path) -> Path:
    module = tmp_path / "variables-only"
    module.mkdir()
    shutil.copy(TF_DIR / "variables.tf", module / "variables.tf")
    return module


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_validation(variables_module: Path, case: Case) -> None:
    name, value, extra, expected = case
    planned = run_terraform(
        ["plan", "-no-color", *tf_var_args({**BASE_VARS, **extra, name: value})], variables_module
    )
    output = planned.stderr + planned.stdout
    if expected is None:
        assert planned.returncode == 0, output
    else:
        assert planned.returncode != 0, f"{name}={value!r} was accepted"
        assert f'variable "{name}"' in output, output
        # Terraform wraps long messages: compare with line breaks undone.
        assert expected in " ".join(output.split()), output


def test_every_validation_has_a_refusing_case(tf_config: dict[str, dict[str, Any]]) -> None:
    """A new validation block must come with a test case that triggers its message."""
    expected_fragments = {(name, fragment) for name, _, _, fragment in CASES if fragment}
    untested = []
    for name, body in variables(tf_config).items():
        for validation in body.get("validation", []):
            message = " ".join(unquote(validation["error_message"]).split())
            if not any(n == name and fragment in message for n, fragment in expected_fragments):
                untested.append(f"{name}: {message[:60]}")
    assert untested == []


def test_every_variable_has_an_accepting_case(tf_config: dict[str, dict[str, Any]]) -> None:
    validated = {name for name, body in variables(tf_config).items() if body.get("validation")}
    accepted = {name for name, _, _, fragment in CASES if fragment is None}
    assert validated - accepted == set()


def test_defaults_pass_their_own_validation(variables_module: Path) -> None:
    planned = run_terraform(["plan", "-no-color", *tf_var_args(BASE_VARS)], variables_module)
    assert planned.returncode == 0, planned.stderr
