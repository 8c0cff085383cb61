"""Through Traefik over HTTPS, as a user does: basic auth everywhere, HTTP redirected."""

from __future__ import annotations

import json
import socket
import time

import pytest
from infra_http import Response, request
from infra_support import Target

# HTTPS is served by the edge (every single-node server); a worker has no public HTTP(S).
pytestmark = pytest.mark.edge


def _get(
    target: Target,
    fqdn: str,
    path: str,
    auth: tuple[str, str] | None = None,
    method: str = "GET",
    body: bytes | None = None,
) -> Response:
    return request(
        scheme="https",
        fqdn=fqdn,
        address=target.address,
        port=target.https_port,
        path=path,
        method=method,
        auth=auth,
        body=body,
        ca_bundle=target.ca_bundle,
    )


def _monitoring_paths(target: Target) -> list[str]:
    paths = ["/prometheus/-/healthy", "/alertmanager/-/healthy"]
    return [*paths, "/api/health"] if target.grafana else paths


@pytest.mark.parametrize("path", ["/v1/models", "/health", "/generate"])
def test_api_without_credentials_is_refused(target: Target, path: str) -> None:
    assert _get(target, target.llm_fqdn, path).status == 401


def test_api_with_a_wrong_password_is_refused(target: Target, credentials: tuple[str, str]) -> None:
    user, _ = credentials
    assert _get(target, target.llm_fqdn, "/v1/models", (user, "wrong-password")).status == 401


def test_api_lists_the_model_with_credentials(target: Target, credentials: tuple[str, str]) -> None:
    response = _get(target, target.llm_fqdn, "/v1/models", credentials)
    assert response.status == 200, response.body[:300]


def test_api_metrics_are_not_served_on_the_public_host(
    target: Target, credentials: tuple[str, str]
) -> None:
    # Valid credentials, so a refusal cannot come from basic auth: no router matches
    # /metrics on the public host. Prometheus reads it on the internal network instead
    # (test_prometheus_scrapes_every_target).
    metrics = _get(target, target.llm_fqdn, "/metrics", credentials)
    models = _get(target, target.llm_fqdn, "/v1/models", credentials)
    assert (metrics.status, models.status) == (404, 200), metrics.body[:300]


def test_generate_answers_with_credentials(target: Target, credentials: tuple[str, str]) -> None:
    body = json.dumps({"prompt": "Say hello.", "max_tokens": 8}).encode()
    response = _get(target, target.llm_fqdn, "/generate", credentials, "POST", body)
    assert response.status == 200, response.body[:300]
    assert isinstance(json.loads(response.body)["response"], str)


def test_https_responses_carry_hsts(target: Target, credentials: tuple[str, str]) -> None:
    response = _get(target, target.llm_fqdn, "/health", credentials)
    assert "max-age=" in response.headers.get("strict-transport-security", "")


@pytest.mark.parametrize("name", ["llm", "monitoring"])
def test_http_redirects_to_https(target: Target, name: str) -> None:
    fqdn = target.llm_fqdn if name == "llm" else target.monitoring_fqdn
    response = request(
        scheme="http", fqdn=fqdn, address=target.address, port=target.http_port, path="/v1/models"
    )
    assert response.status in (301, 308)
    assert response.headers.get("location", "").startswith(f"https://{fqdn}")


def test_monitoring_without_credentials_is_refused(target: Target) -> None:
    statuses = {
        p: _get(target, target.monitoring_fqdn, p).status for p in _monitoring_paths(target)
    }
    assert set(statuses.values()) == {401}, statuses


def test_monitoring_answers_with_credentials(target: Target, credentials: tuple[str, str]) -> None:
    statuses = {
        p: _get(target, target.monitoring_fqdn, p, credentials).status
        for p in _monitoring_paths(target)
    }
    assert set(statuses.values()) == {200}, statuses


@pytest.mark.parametrize("name", ["llm", "monitoring"])
def test_dns_points_at_the_server(target: Target, name: str) -> None:
    if not target.check_dns:
        pytest.skip("DNS check switched off (--skip-dns / VERIFY_SKIP_DNS=1)")
    fqdn = target.llm_fqdn if name == "llm" else target.monitoring_fqdn
    addresses = {info[4][0] for info in socket.getaddrinfo(fqdn, None)}
    assert target.address in addresses


def _scrape_health(target: Target, credentials: tuple[str, str]) -> dict[str, str]:
    """Every active target's health by job and instance (one instance a node per job)."""
    response = _get(target, target.monitoring_fqdn, "/prometheus/api/v1/targets", credentials)
    assert response.status == 200, response.body[:300]
    active = json.loads(response.body)["data"]["activeTargets"]
    return {f"{t['labels']['job']} {t['labels']['instance']}": t["health"] for t in active}


def test_prometheus_scrapes_every_target(target: Target, credentials: tuple[str, str]) -> None:
    # Right after a deployment a target may not have been scraped yet ("unknown"): wait for
    # the first scrapes, at most a minute, then every target must be up.
    health = _scrape_health(target, credentials)
    for _ in range(12):
        if "unknown" not in health.values():
            break
        time.sleep(5)
        health = _scrape_health(target, credentials)
    expected = {"prometheus", "alertmanager", "llm-node", "traefik", "node"}
    assert {key.split(" ")[0] for key in health} == expected
    assert health == dict.fromkeys(health, "up")
