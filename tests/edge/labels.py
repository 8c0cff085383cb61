"""The routers the roles really declare, for Traefik's file provider (the tests have no Docker).

Each role's `templates/compose.yaml.j2` is rendered by Ansible's own template module (a
one-off playbook on localhost, with the role's defaults), and the `traefik.*` labels of every
container with `traefik.enable: "true"` become the same routers, services and middlewares in
the file provider's syntax. A label this module does not know fails the test, so a new label
in a role cannot be silently left out of the edge tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
ROLES = REPO / "ansible" / "roles"
ROUTED_ROLES = ("llm_node", "monitoring")
# Docker labels are case-insensitive; the file provider's YAML names are camelCase.
CANONICAL = {
    "entrypoints": "entryPoints",
    "certresolver": "certResolver",
    "stripprefix": "stripPrefix",
    "customrequestheaders": "customRequestHeaders",
    "authorization": "Authorization",
}
LIST_VALUES = {"entrypoints", "middlewares", "prefixes"}  # comma-separated in a label
# The label paths (after `traefik.http.<kind>.<name>.`) this module translates.
KNOWN = {
    "routers": {
        ("rule",),
        ("entrypoints",),
        ("middlewares",),
        ("service",),
        ("tls", "certresolver"),
        ("priority",),
    },
    "middlewares": {
        ("stripprefix", "prefixes"),
        ("headers", "customrequestheaders", "authorization"),
    },
}


def render_compose_files(workdir: Path, overrides: dict[str, Any]) -> dict[str, str]:
    """{role: rendered compose.yaml} for the routed roles, rendered by ansible-playbook."""
    tasks = []
    for role in ROUTED_ROLES:
        variables = yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text()) or {}
        variables.update(overrides)
        tasks.append(
            {
                "name": f"Render the {role} role's compose.yaml",
                "ansible.builtin.template": {
                    "src": str(ROLES / role / "templates" / "compose.yaml.j2"),
                    "dest": str(workdir / f"{role}-compose.yaml"),
                    "mode": "0644",
                },
                "vars": variables,
            }
        )
    playbook = workdir / "render-compose.yml"
    play = {"hosts": "localhost", "connection": "local", "gather_facts": False, "tasks": tasks}
    playbook.write_text(json.dumps([play]))
    bin_dir = Path(sys.executable).parent
    done = subprocess.run(
        [
            str(bin_dir / "ansible-playbook"),
            "-i",
            "localhost,",
            "-e",
            json.dumps({"ansible_python_interpreter": sys.executable}),
            str(playbook),
        ],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "ANSIBLE_NOCOLOR": "1", "HOME": str(workdir)},
    )
    if done.returncode != 0:
        raise RuntimeError(f"ansible-playbook could not render the compose files:\n{done.stdout}")
    return {role: (workdir / f"{role}-compose.yaml").read_text() for role in ROUTED_ROLES}


def _value(name: str, value: str) -> Any:
    if name in LIST_VALUES:
        # A middleware the labels declare (`@docker`) is, in the file provider, `@file`.
        items = [item.strip() for item in value.split(",") if item.strip()]
        return [
            item.removesuffix("@docker") + "@file" if item.endswith("@docker") else item
            for item in items
        ]
    if name == "priority":
        return int(value)
    return value


def file_provider_config(compose_files: dict[str, str], urls: dict[str, str]) -> dict[str, Any]:
    """The dynamic configuration the labels declare; `urls` gives each service's address here.

    As Traefik's Docker provider does, a router without a `service` label goes to the one
    service its container declares.
    """
    http: dict[str, dict[str, Any]] = {"routers": {}, "services": {}, "middlewares": {}}
    for text in compose_files.values():
        for container in (yaml.safe_load(text).get("services") or {}).values():
            labels = {str(k): str(v) for k, v in (container.get("labels") or {}).items()}
            if labels.get("traefik.enable", "").lower() != "true":
                continue
            routers, services = set(), set()
            for key, value in labels.items():
                parts = tuple(key.lower().split("."))
                if parts in {("traefik", "enable"), ("traefik", "docker", "network")}:
                    continue
                if parts[:2] != ("traefik", "http") or len(parts) < 5:
                    raise ValueError(f"a label the edge tests do not know: {key}")
                kind, name, rest = parts[2], parts[3], parts[4:]
                if kind == "services":
                    if rest != ("loadbalancer", "server", "port"):
                        raise ValueError(f"a service label the edge tests do not know: {key}")
                    http["services"][name] = {"loadBalancer": {"servers": [{"url": urls[name]}]}}
                    services.add(name)
                    continue
                if rest not in KNOWN.get(kind, set()):
                    raise ValueError(f"a label the edge tests do not know: {key}")
                node = http[kind].setdefault(name, {})
                for part in rest[:-1]:
                    node = node.setdefault(CANONICAL.get(part, part), {})
                node[CANONICAL.get(rest[-1], rest[-1])] = _value(rest[-1], value)
                if kind == "routers":
                    routers.add(name)
            for router in routers:
                if "service" not in http["routers"][router]:
                    (only,) = services
                    http["routers"][router]["service"] = only
    return {"http": {kind: items for kind, items in http.items() if items}}
