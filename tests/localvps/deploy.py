"""Running the real site.yml and tests/infra against the local VPS.

Only the inventory and its variables differ from a real deployment: they point the roles
at the stand-ins (Pebble instead of Let's Encrypt, the tiny model on a local URL, images
built locally) and switch off what a container cannot have (a swap file, Grafana).
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests.localvps.images import PYTHON_IMAGE
from tests.localvps.services import ConnectProxy, Pebble
from tests.localvps.vps import DATA_DIR, REPO, ROOTFS, TEST_DOMAIN, LocalVPS, log

BIN = Path(sys.executable).parent
PEM = re.compile(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", re.DOTALL)
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
RECAP = re.compile(
    r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M
)


@dataclass
class Recap:
    ok: int
    changed: int
    unreachable: int
    failed: int


@dataclass
class StandIns:
    pebble: Pebble
    model_url: str
    model_md5: str
    proxy: ConnectProxy


@dataclass
class SiteRuns:
    inventory: Path
    variables: dict[str, object] = field(repr=False)
    first: Recap
    second: Recap | None
    second_log: str


def extra_ca_certificates() -> str:
    """The host's CA certificates that Debian 13's ca-certificates does not ship.

    Only these go into the build argument: the whole bundle, base64'd, is longer than one
    argument may be (128 KiB) once the Dockerfile's RUN expands it.
    """
    image_bundle = ROOTFS / "etc/ssl/certs/ca-certificates.crt"
    shipped = set(PEM.findall(image_bundle.read_text()))
    return "\n".join(c for c in PEM.findall(HOST_CA_BUNDLE.read_text()) if c not in shipped)


def write_inventory(
    machine: LocalVPS,
    images: dict[str, str],
    *,
    pebble_directory: str,
    pebble_listener_ca: str,
    model_url: str,
    model_md5: str,
    proxy_url: str,
    apt_proxy_url: str,
    issuing_root: str,
    dns_resolver: tuple[str, int] | None = None,
) -> tuple[Path, dict[str, object]]:
    """Inventory in the shape terraform writes, plus the test's variables and secrets."""
    password = secrets.token_urlsafe(18)
    model_file = model_url.rsplit("/", 1)[1]
    build_args = {
        "PYTHON_IMAGE": PYTHON_IMAGE,
        # pip inside the build must trust what the host trusts (a TLS-inspecting proxy).
        "EXTRA_CA_CERTS_B64": base64.b64encode(extra_ca_certificates().encode()).decode(),
        # pip reaches the package index through the CONNECT proxy; apt goes to the cache.
        "HTTPS_PROXY": proxy_url,
        "https_proxy": proxy_url,
        "HTTP_PROXY": apt_proxy_url,
        "http_proxy": apt_proxy_url,
    }
    root = machine.workdir / "pebble-issuing-root.pem"
    root.write_text(issuing_root)
    variables: dict[str, object] = {
        "llm_domain": TEST_DOMAIN,
        "llm_fqdn": f"llm.{TEST_DOMAIN}",
        "monitoring_fqdn": f"monitoring.{TEST_DOMAIN}",
        # The vault's secrets, made up for this run only.
        "vault_traefik_acme_email": f"admin@{TEST_DOMAIN}",
        "vault_traefik_basic_auth_users": [{"name": "tester", "password": password}],
        "vault_monitoring_grafana_admin_password": secrets.token_urlsafe(18),
        # SSH only from our side of the veth pair, like admin CIDRs on a real server.
        "common_admin_cidrs": [str(machine.subnet)],
        # As Terraform's inventory: the cloud firewall is the SSH gate (tests/localvps/day2.py
        # stands in for it), the authorised keys are exactly its ssh_public_keys.
        "common_ssh_source_gate": "cloud",
        "common_deploy_user_authorized_keys": [machine.key.with_suffix(".pub").read_text().strip()],
        "common_deploy_user_authorized_keys_exclusive": True,
        # The data volume is a bind-mounted host directory (conftest.py): the same variable
        # a real server's playbook run gets, without a device to mount.
        "llm_data_dir": DATA_DIR,
        # swapon in the container would add swap to the machine running the test.
        "common_swap_size_mb": 0,
        # Let's Encrypt -> Pebble on the host side of the veth pair.
        "traefik_acme_ca_server": pebble_directory,
        "traefik_acme_ca_certificates": Path(pebble_listener_ca).read_text(),
        # Public DNS -> pebble-challtestsrv, for the traefik role's first-start DNS gate.
        **(
            {
                "traefik_dns_resolvers": [dns_resolver[0]],
                "traefik_dns_resolver_port": dns_resolver[1],
                "traefik_dns_wait_seconds": 20,
                "traefik_dns_gate_interval_seconds": 5,
            }
            if dns_resolver
            else {}
        ),
        # Docker Hub -> images built in the VPS (tests/localvps/images.py).
        **images,
        "traefik_pull": "never",
        "monitoring_pull": "never",
        # No Grafana binary is reachable from the test machines.
        "monitoring_grafana_enabled": False,
        # The 4.7 GB Llama 3 -> the tiny SmolLM2 with its real checksum, from a local URL.
        "llm_node_model_url": model_url,
        "llm_node_model_file": model_file,
        "llm_node_model_checksum": f"md5:{model_md5}",
        "llm_node_threads": 2,
        "llm_node_build_args": build_args,
        # For tests/infra only (the roles never read verify_*): trust Pebble's root; the
        # test domain has no public DNS.
        "verify_ca_bundle": str(root),
        "verify_skip_dns": True,
    }
    inventory = {
        "all": {
            "children": {
                "llm_nodes": {
                    "hosts": {
                        machine.name: {
                            "ansible_host": machine.addr,
                            "ansible_user": "deploy",
                            "ansible_ssh_private_key_file": str(machine.key),
                            "ansible_ssh_common_args": " ".join(machine.ssh_opts),
                        }
                    },
                    "vars": variables,
                }
            }
        }
    }
    path = machine.workdir / "inventory.yml"
    path.write_text(yaml.safe_dump(inventory, sort_keys=False))
    path.chmod(0o600)
    return path, variables


def _env() -> dict[str, str]:
    return dict(
        os.environ,
        PATH=f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        # Strict: the inventory's ssh args name the VPS's known_hosts (LocalVPS.ssh_opts).
        ANSIBLE_HOST_KEY_CHECKING="True",
    )


def run_site(
    inventory: Path, log_path: Path, extra_env: dict[str, str] | None = None
) -> tuple[Recap, str]:
    """ansible-playbook site.yml, from ansible/ as a user would; its output goes to log_path."""
    cmd = [str(BIN / "ansible-playbook"), "-i", str(inventory), "site.yml"]
    env = {**_env(), **(extra_env or {})}
    with log_path.open("w") as out:
        proc = subprocess.run(
            cmd, cwd=REPO / "ansible", env=env, stdout=out, stderr=subprocess.STDOUT, check=False
        )
    text = log_path.read_text()
    recaps = RECAP.findall(text)
    if not recaps:
        raise AssertionError(f"no PLAY RECAP (exit {proc.returncode}):\n{text[-6000:]}")
    _, ok, changed, unreachable, failed = recaps[-1]
    recap = Recap(int(ok), int(changed), int(unreachable), int(failed))
    log(f"site.yml: {recap} (log {log_path})")
    return recap, text


def changed_tasks(text: str) -> list[str]:
    """Names of the tasks that reported changed, for a readable assertion message."""
    names, current = [], ""
    for line in text.splitlines():
        if line.startswith("TASK ["):
            current = line
        elif line.startswith("changed:"):
            names.append(f"{current} {line}")
    return names


def run_testinfra(
    inventory: Path, extra_env: dict[str, str], verbose: bool = False
) -> subprocess.CompletedProcess[str]:
    """The users' testinfra suite (tests/infra), against every host of the inventory
    (verbose: one line a test and host, with its outcome)."""
    cmd = [str(BIN / "pytest"), "tests/infra", "-o", "addopts=-ra", "-p", "no:cacheprovider"]
    cmd += ["--hosts=ansible://all", f"--ansible-inventory={inventory}", "-v" if verbose else "-q"]
    return subprocess.run(
        cmd,
        cwd=REPO,
        env={**_env(), **extra_env},
        capture_output=True,
        text=True,
        check=False,
    )
