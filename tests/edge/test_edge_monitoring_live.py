"""The real Prometheus, with the project's configuration and rules, scraping the real
llm-node, Traefik, node exporter, Alertmanager and itself: every target is up, every rule
loads, and after some traffic through Traefik every dashboard panel's query returns data."""

from __future__ import annotations

import json

import httpx
import pytest

from tests import support
from tests.edge.conftest import LLM_HOST, PASSWORD, USER, Edge
from tests.edge.test_edge_monitoring_static import ALERT_RULES, PANELS, RECORDING_RULES

pytestmark = pytest.mark.slow

JOBS = ["prometheus", "alertmanager", "llm-node", "traefik", "node"]
QUERIES = [
    pytest.param(target["expr"], id=f"{panel['title']}/{target['refId']}")
    for panel in PANELS
    for target in panel["targets"]
]
# Grafana's own variables, set as Grafana would for a short time range.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "5m"}


def query(prometheus: str, expr: str) -> list[dict]:
    response = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=30)
    response.raise_for_status()
    return list(response.json()["data"]["result"])


def send_traffic(edge: Edge) -> None:
    """Answers on both API routes, a refused (422) request and a wrong password."""
    auth = (USER, PASSWORD)
    with edge.client() as client:
        url = edge.https_url(LLM_HOST, "")
        client.post(f"{url}/generate", json={"prompt": "Hi", "max_tokens": 4}, auth=auth)
        client.post(
            f"{url}/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4},
            auth=auth,
        )
        client.post(f"{url}/generate", json={"max_tokens": "many"}, auth=auth)
        client.post(f"{url}/generate", json={"prompt": "Hi"}, auth=(USER, "wrong-password"))


@pytest.fixture(scope="module")
def traffic(prometheus: str, edge: Edge) -> str:
    """Two rounds of traffic through Traefik. A labelled series appears at its first
    observation, so rate() sees only what happens after Prometheus has scraped it once:
    the second round is what the rates and quantiles measure."""
    send_traffic(edge)
    support.wait_until(
        lambda: query(prometheus, "count(llm_time_to_first_token_seconds_count) >= 2"),
        "Prometheus to scrape the first round",
    )
    send_traffic(edge)
    support.wait_until(
        lambda: query(prometheus, "sum(increase(llm_requests_total[1m])) > 0"),
        "Prometheus to scrape the second round",
    )
    return prometheus


@pytest.mark.parametrize("job", JOBS)
def test_target_is_up(prometheus: str, job: str) -> None:
    result = support.wait_until(
        lambda: query(prometheus, f'up{{job="{job}"}} == 1'), f"{job} up", timeout=30
    )
    assert len(result) == 1


def loaded_rules(prometheus: str) -> dict[str, str]:
    groups = httpx.get(f"{prometheus}/api/v1/rules").json()["data"]["groups"]
    return {rule["name"]: rule["health"] for group in groups for rule in group["rules"]}


@pytest.mark.parametrize(
    "name",
    sorted({rule.get("alert") or rule["record"] for rule in ALERT_RULES + RECORDING_RULES}),
)
def test_rule_is_loaded_and_evaluates(prometheus: str, name: str) -> None:
    health = support.wait_until(
        lambda: (
            loaded_rules(prometheus).get(name) not in (None, "unknown")
            and loaded_rules(prometheus)[name]
        ),
        f"rule {name} evaluated",
        timeout=30,
    )
    assert health == "ok"


@pytest.mark.parametrize("expr", QUERIES)
def test_dashboard_query_returns_data(traffic: str, expr: str) -> None:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)

    # Recording rules need two scrapes after the traffic: wait until the query has a
    # sample that is a number (a histogram quantile without observations is NaN).
    def numbers() -> list[str]:
        return [s["value"][1] for s in query(traffic, expr) if s["value"][1] != "NaN"]

    values = support.wait_until(numbers, f"a number from {expr}", timeout=45)
    assert values, json.dumps(values)


def test_alertmanager_is_prometheus_alert_target(prometheus: str) -> None:
    data = httpx.get(f"{prometheus}/api/v1/alertmanagers").json()["data"]
    assert len(data["activeAlertmanagers"]) == 1
