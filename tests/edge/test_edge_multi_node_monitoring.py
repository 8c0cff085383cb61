"""Monitoring of more than one node: the alerts' promtool cases for two nodes
(monitoring/prometheus/tests/multi_node_test.yml) and the scrape configuration the
monitoring role renders on the edge, checked with the real promtool."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.edge import procs
from tests.edge.conftest import render_rules
from tests.edge.render import render_to

MONITORING = procs.REPO / "monitoring"
REMOTE_NODES = [
    {"name": "llm-2", "address": "10.42.1.11"},
    {"name": "llm-3", "address": "10.42.1.12"},
]


def run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def promtool() -> str:
    return procs.require_programs("promtool")["promtool"]


def test_multi_node_promtool_cases_of_the_alerts_pass(promtool: str, tmp_path: Path) -> None:
    render_rules(tmp_path / "rules")
    shutil.copy(MONITORING / "prometheus/tests/multi_node_test.yml", tmp_path)
    result = run([promtool, "test", "rules", "multi_node_test.yml"], cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def multi_node_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render_to(
        "monitoring/prometheus/prometheus.yml.j2",
        tmp_path_factory.mktemp("prometheus") / "prometheus.yml",
        prometheus_rules_dir="/etc/prometheus/rules",
        prometheus_instance_name="llm-1",
        prometheus_llm_node_instance="llm-1",
        prometheus_remote_nodes=REMOTE_NODES,
    )


def test_multi_node_prometheus_config_passes_promtool(
    promtool: str, multi_node_config: Path
) -> None:
    result = run([promtool, "check", "config", "--syntax-only", str(multi_node_config)])
    assert result.returncode == 0, result.stdout + result.stderr


def targets(config: Path, job: str) -> dict[str, str]:
    """{instance label: target address} of one job's static targets."""
    parsed: dict[str, Any] = yaml.safe_load(config.read_text())
    (scrape,) = [item for item in parsed["scrape_configs"] if item["job_name"] == job]
    return {
        static["labels"]["instance"]: target
        for static in scrape["static_configs"]
        for target in static["targets"]
    }


@pytest.mark.parametrize(
    ("job", "expected"),
    [
        (
            "llm-node",
            {"llm-1": "llm-node:8000", "llm-2": "10.42.1.11:8000", "llm-3": "10.42.1.12:8000"},
        ),
        (
            "node",
            {
                "llm-1": "host.docker.internal:9100",
                "llm-2": "10.42.1.11:9100",
                "llm-3": "10.42.1.12:9100",
            },
        ),
    ],
)
def test_multi_node_every_node_is_scraped_with_its_server_name(
    multi_node_config: Path, job: str, expected: dict[str, str]
) -> None:
    assert targets(multi_node_config, job) == expected
