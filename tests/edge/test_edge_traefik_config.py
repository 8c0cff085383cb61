"""The traefik/ templates' switches, by rendering them as the Ansible role does (the real
Traefik runs the rendered files in test_edge_traefik.py)."""

from __future__ import annotations

import pytest
import yaml

from tests.edge.render import render

REQUIRED = {"traefik_acme_email": "admin@example.com"}
PRODUCTION = "https://acme-v02.api.letsencrypt.org/directory"
STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"


def static(**variables: object) -> dict:
    return dict(yaml.safe_load(render("traefik/traefik.yml.j2", **REQUIRED, **variables)))


def acme(**variables: object) -> dict:
    return dict(static(**variables)["certificatesResolvers"]["letsencrypt"]["acme"])


@pytest.mark.parametrize(
    ("variables", "ca_server"),
    [
        ({}, PRODUCTION),
        ({"traefik_acme_staging": True}, STAGING),
        ({"traefik_acme_staging": "false"}, PRODUCTION),
        ({"traefik_acme_staging": True, "traefik_acme_ca_server": "https://ca.test/dir"},
         "https://ca.test/dir"),
    ],
    ids=["default-production", "staging", "staging-false-string", "override-wins"],
)  # fmt: skip
def test_ca_server_switch(variables: dict, ca_server: str) -> None:
    assert acme(**variables)["caServer"] == ca_server


@pytest.mark.parametrize(
    ("challenge", "expected"),
    [("http", {"httpChallenge": {"entryPoint": "web"}}), ("tlsalpn", {"tlsChallenge": {}})],
)
def test_challenge_switch(challenge: str, expected: dict) -> None:
    config = acme(traefik_acme_challenge=challenge)
    assert {key: config[key] for key in ("httpChallenge", "tlsChallenge") if key in config} == (
        expected
    )


def test_acme_storage_and_email() -> None:
    assert (acme()["storage"], acme()["email"]) == (
        "/etc/traefik/acme/acme.json",
        "admin@example.com",
    )


def test_docker_provider_exposes_nothing_by_default() -> None:
    docker = static()["providers"]["docker"]
    assert (docker["exposedByDefault"], docker["network"]) == (False, "edge")


def test_docker_provider_can_be_switched_off() -> None:
    assert "docker" not in static(traefik_docker_enabled=False)["providers"]


def test_no_api_or_dashboard() -> None:
    assert "api" not in static()


def test_metrics_and_ping_are_on_the_internal_entry_point_only() -> None:
    config = static()
    assert (config["metrics"]["prometheus"]["entryPoint"], config["ping"]["entryPoint"]) == (
        "internal",
        "internal",
    )


def test_web_redirects_permanently_to_websecure() -> None:
    redirect = static()["entryPoints"]["web"]["http"]["redirections"]["entryPoint"]
    assert redirect == {"to": "websecure", "scheme": "https", "permanent": True}


def test_access_log_is_json() -> None:
    assert static()["accessLog"]["format"] == "json"


def test_tls_minimum_is_1_2() -> None:
    dynamic = yaml.safe_load(render("traefik/dynamic/middlewares.yml.j2"))
    assert dynamic["tls"]["options"]["default"]["minVersion"] == "VersionTLS12"


def test_api_chain_never_buffers_responses() -> None:
    """A `buffering` middleware would hold SSE streams until the generation ends."""
    middlewares = yaml.safe_load(render("traefik/dynamic/middlewares.yml.j2"))["http"][
        "middlewares"
    ]
    chain = middlewares["llm-api"]["chain"]["middlewares"]
    assert [name for name in chain if "buffering" in middlewares[name]] == []
