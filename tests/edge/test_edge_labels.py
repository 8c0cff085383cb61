"""tests/edge/labels.py reads the routers from the roles' rendered compose labels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.edge import labels

URLS = {
    name: f"http://127.0.0.1:{port}"
    for port, name in enumerate(["llm", "grafana", "prometheus", "alertmanager"], start=1)
}


@pytest.fixture(scope="module")
def routed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    workdir = tmp_path_factory.mktemp("labels")
    files = labels.render_compose_files(
        workdir, {"llm_node_fqdn": "llm.edge.test", "monitoring_fqdn": "monitoring.edge.test"}
    )
    config: dict[str, Any] = labels.file_provider_config(files, URLS)
    return config


def test_every_labelled_container_gets_its_router(routed: dict[str, Any]) -> None:
    assert sorted(routed["http"]["routers"]) == ["alertmanager", "grafana", "llm", "prometheus"]


def test_the_llm_router_is_the_one_ansible_renders(routed: dict[str, Any]) -> None:
    assert routed["http"]["routers"]["llm"] == {
        "rule": "Host(`llm.edge.test`) && !Path(`/metrics`)",
        "entryPoints": ["websecure"],
        "tls": {"certResolver": "letsencrypt"},
        "middlewares": ["llm-api@file"],
        "service": "llm",
    }


def test_the_prefix_strip_middlewares_are_declared(routed: dict[str, Any]) -> None:
    middlewares = routed["http"]["middlewares"]
    assert middlewares["prometheus-strip"] == {"stripPrefix": {"prefixes": ["/prometheus"]}}


COMPOSE = """
services:
  app:
    labels:
      traefik.enable: "true"
      traefik.http.routers.app.rule: "Host(`a.test`)"
      {label}
      traefik.http.services.app.loadbalancer.server.port: "80"
"""


@pytest.mark.parametrize(
    "label",
    [
        "traefik.http.routers.app.observability.accesslogs: 'false'",  # unknown here: refused
        "traefik.tcp.routers.app.rule: HostSNI(`*`)",
        "traefik.http.services.app.loadbalancer.sticky: 'true'",
    ],
)
def test_a_label_the_tests_do_not_map_fails_loudly(label: str) -> None:
    with pytest.raises(ValueError, match="do not know"):
        labels.file_provider_config({"x": COMPOSE.format(label=label)}, {"app": "http://x"})


def test_a_container_without_traefik_enable_is_not_routed(tmp_path: Path) -> None:
    text = COMPOSE.format(label="").replace('traefik.enable: "true"', 'traefik.enable: "false"')
    assert labels.file_provider_config({"x": text}, {"app": "http://x"}) == {"http": {}}
