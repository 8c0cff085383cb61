"""The monitoring configuration, checked with the real promtool and amtool, and by structure
where no program is reachable (Grafana)."""

from __future__ import annotations

import configparser
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.edge import procs
from tests.edge.conftest import RUNBOOK_URL, render_rules
from tests.edge.render import render, render_to

MONITORING = procs.REPO / "monitoring"
DASHBOARD = json.loads((MONITORING / "grafana/dashboards/llm-node.json").read_text())
ALERTS = yaml.safe_load(
    render("monitoring/prometheus/rules/alerts.yml.j2", monitoring_runbook_url=RUNBOOK_URL)
)
ALERT_RULES = [rule for group in ALERTS["groups"] for rule in group["rules"]]
RECORDING = yaml.safe_load((MONITORING / "prometheus/rules/recording.yml").read_text())
RECORDING_RULES = [rule for group in RECORDING["groups"] for rule in group["rules"]]
PROMTOOL_TESTS = yaml.safe_load((MONITORING / "prometheus/tests/alerts_test.yml").read_text())
RUNBOOK = (MONITORING / "RUNBOOK.md").read_text()
ISSUE_ALERTS = {  # what each alert of the issue is called here
    "llm-node down": "LLMNodeDown",
    "model not loaded": "LLMNodeModelNotLoaded",
    "p95 latency high": "LLMNodeLatencyHigh",
    "queue saturated": "LLMNodeQueueSaturated",
    "error ratio high": "LLMNodeErrorRatioHigh",
    "host CPU high": "HostCPUHigh",
    "memory low": "HostMemoryLow",
    "disk filling": "HostDiskFillingUp",
    "disk almost full": "HostDiskAlmostFull",
    "OOM kills": "HostOOMKill",
    "TLS certificate expiring": "TraefikCertificateExpiring",
    "any target down": "TargetDown",
}


def run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def promtool() -> str:
    return procs.require_programs("promtool")["promtool"]


@pytest.fixture(scope="module")
def rules_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = render_rules(tmp_path_factory.mktemp("promtool") / "rules")
    shutil.copy(MONITORING / "prometheus/tests/alerts_test.yml", directory.parent)
    return directory


def test_promtool_checks_the_prometheus_config(promtool: str, rules_dir: Path) -> None:
    config = render_to(
        "monitoring/prometheus/prometheus.yml.j2",
        rules_dir.parent / "prometheus.yml",
        prometheus_rules_dir=str(rules_dir),
    )
    result = run([promtool, "check", "config", str(config)])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("rule_file", ["recording.yml", "alerts.yml"])
def test_promtool_checks_the_rules(promtool: str, rules_dir: Path, rule_file: str) -> None:
    result = run([promtool, "check", "rules", str(rules_dir / rule_file)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_of_the_alerts_pass(promtool: str, rules_dir: Path) -> None:
    result = run([promtool, "test", "rules", "alerts_test.yml"], cwd=rules_dir.parent)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("issue_name", sorted(ISSUE_ALERTS))
def test_every_alert_of_the_issue_exists(issue_name: str) -> None:
    assert ISSUE_ALERTS[issue_name] in {rule["alert"] for rule in ALERT_RULES}


@pytest.mark.parametrize("rule", ALERT_RULES, ids=lambda rule: rule["alert"])
def test_alert_has_a_promtool_case_that_checks_silence_and_firing(rule: dict) -> None:
    cases = [
        case
        for test in PROMTOOL_TESTS["tests"]
        for case in test.get("alert_rule_test", [])
        if case["alertname"] == rule["alert"]
    ]
    assert [bool(case["exp_alerts"]) for case in cases] == [False, True]


@pytest.mark.parametrize("rule", ALERT_RULES, ids=lambda rule: rule["alert"])
def test_alert_has_severity_summary_description_and_runbook(rule: dict) -> None:
    annotations = rule["annotations"]
    assert (
        rule["labels"]["severity"] in {"warning", "critical"},
        bool(annotations["summary"]),
        "{{" in annotations["description"],
        annotations["runbook_url"],
    ) == (True, True, True, f"{RUNBOOK_URL}#{rule['alert'].lower()}")


@pytest.mark.parametrize("rule", ALERT_RULES, ids=lambda rule: rule["alert"])
def test_alert_runbook_section_exists(rule: dict) -> None:
    headings = {
        line.lstrip("#").strip().lower() for line in RUNBOOK.splitlines() if line.startswith("#")
    }
    assert rule["alert"].lower() in headings


@pytest.mark.parametrize("rule", ALERT_RULES, ids=lambda rule: rule["alert"])
def test_alert_name_is_camel_case_and_waits_before_firing(rule: dict) -> None:
    assert (bool(re.fullmatch(r"(?:[A-Z][A-Za-z0-9]*)+", rule["alert"])), "for" in rule) == (
        True,
        True,
    )


@pytest.mark.parametrize("rule", RECORDING_RULES, ids=lambda rule: rule["record"])
def test_recording_rule_is_named_level_metric_operation(rule: dict) -> None:
    assert re.fullmatch(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", rule["record"])


ALERTMANAGER_VARIANTS = {
    "default-sends-nowhere": {},
    "email": {
        "alertmanager_email_to": "oncall@example.com",
        "alertmanager_email_from": "alertmanager@example.com",
        "alertmanager_smtp_smarthost": "smtp.example.com:587",
        "alertmanager_smtp_username": "alertmanager",
        "alertmanager_smtp_password": "not-a-real-password",
    },
    "webhook": {"alertmanager_webhook_url": "https://hooks.example.com/alerts"},
}


@pytest.mark.parametrize("variant", sorted(ALERTMANAGER_VARIANTS))
def test_amtool_accepts_the_alertmanager_config(tmp_path: Path, variant: str) -> None:
    amtool = procs.require_programs("amtool")["amtool"]
    config = render_to(
        "monitoring/alertmanager/alertmanager.yml.j2",
        tmp_path / "alertmanager.yml",
        **ALERTMANAGER_VARIANTS[variant],
    )
    result = run([amtool, "check-config", str(config)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_default_alertmanager_receiver_sends_nowhere() -> None:
    config = yaml.safe_load(render("monitoring/alertmanager/alertmanager.yml.j2"))
    assert config["receivers"] == [{"name": "default"}]


# --- Grafana (no binary here: checked by structure) ---

GRAFANA_VARS = {"grafana_domain": "monitoring.example.com"}
DATASOURCES = yaml.safe_load(
    render("monitoring/grafana/provisioning/datasources/prometheus.yml.j2")
)
PANELS = [panel for panel in DASHBOARD["panels"] if panel["type"] != "row"]


def grafana_ini() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(render("monitoring/grafana/grafana.ini.j2", **GRAFANA_VARS))
    return parser


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("server", "root_url", "https://monitoring.example.com/"),
        ("security", "admin_password", "$__file{/run/secrets/grafana_admin_password}"),
        ("security", "cookie_secure", "true"),
        ("users", "allow_sign_up", "false"),
        ("auth.anonymous", "enabled", "false"),
        ("analytics", "reporting_enabled", "false"),
    ],
)
def test_grafana_setting(section: str, key: str, value: str) -> None:
    assert grafana_ini()[section][key] == value


def test_datasource_has_a_fixed_uid() -> None:
    assert [(d["type"], d["uid"]) for d in DATASOURCES["datasources"]] == [
        ("prometheus", "prometheus")
    ]


def test_dashboard_provider_points_at_the_dashboards_directory() -> None:
    provider = yaml.safe_load(
        render("monitoring/grafana/provisioning/dashboards/dashboards.yml.j2")
    )
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_dashboard_is_the_llm_node_dashboard() -> None:
    assert (DASHBOARD["title"], DASHBOARD["uid"]) == ("LLM node", "llm-node")


@pytest.mark.parametrize("panel", PANELS, ids=lambda panel: panel["title"])
def test_panel_uses_the_fixed_datasource_uid(panel: dict) -> None:
    uids = {panel["datasource"]["uid"]} | {t["datasource"]["uid"] for t in panel["targets"]}
    assert uids == {DATASOURCES["datasources"][0]["uid"]}


@pytest.mark.parametrize(
    "metric",
    [
        "llm_requests_total",  # request rate by status
        "job_quantile:llm_request_duration_seconds:histogram_quantile5m",  # p50/p95/p99
        "job_quantile:llm_time_to_first_token_seconds:histogram_quantile5m",
        "job_quantile:llm_decode_tokens_per_second:histogram_quantile5m",  # tokens/s
        "llm_queue_depth",
        "llm_rejections_total",
        "llm_cancellations_total",
        "llm_model_loaded",
        "instance:node_cpu_utilisation:rate5m",
        "instance:node_memory_available:ratio",
        "instance_mountpoint:node_filesystem_avail:ratio",
        "traefik_entrypoint_requests_total",
        "traefik_tls_certs_not_after",
    ],
)
def test_dashboard_shows(metric: str) -> None:
    assert any(metric in target["expr"] for panel in PANELS for target in panel["targets"])


def test_dashboard_panel_ids_are_unique() -> None:
    ids = [panel["id"] for panel in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
