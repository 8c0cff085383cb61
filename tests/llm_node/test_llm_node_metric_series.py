"""Each endpoint's request series exist (at 0) before its first request, so rate() sees it."""

from __future__ import annotations

from pathlib import Path

import pytest
from llm_node.main import create_app
from node_harness import make_settings
from prometheus_client import generate_latest

from tests.support import Samples, parse_metrics

ENDPOINTS = ["/generate", "/v1/chat/completions", "/v1/completions", "/v1/models"]
GENERATING = ENDPOINTS[:3]


@pytest.fixture(scope="module")
def fresh_samples(tmp_path_factory: pytest.TempPathFactory) -> Samples:
    """The exposition of an app that has served nothing (its model is never even loaded)."""
    model: Path = tmp_path_factory.mktemp("fresh") / "absent.gguf"
    app = create_app(make_settings(model_path=model))
    return parse_metrics(generate_latest(app.state.metrics.registry).decode())


@pytest.mark.parametrize(
    ("name", "labels"),
    [
        *[("llm_requests_total", {"endpoint": e, "status": "200"}) for e in ENDPOINTS],
        *[("llm_requests_total", {"endpoint": e, "status": "503"}) for e in GENERATING],
        *[("llm_request_duration_seconds_count", {"endpoint": e}) for e in ENDPOINTS],
        *[("llm_time_to_first_token_seconds_count", {"endpoint": e}) for e in GENERATING],
    ],
)
def test_series_is_exported_at_zero_before_any_request(
    fresh_samples: Samples, name: str, labels: dict[str, str]
) -> None:
    assert fresh_samples.get((name, tuple(sorted(labels.items())))) == 0.0
