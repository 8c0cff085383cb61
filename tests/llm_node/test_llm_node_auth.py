"""Optional bearer API keys (LLM_API_KEYS): checked before the body is read or parsed."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from node_harness import LiveServer, metric

GEN = {"prompt": "Hi"}


@pytest.fixture
def keyed(keyed_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=keyed_server.url, timeout=30) as c:
        yield c


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Basic a2V5LW9uZQ=="},
        {"Authorization": "Bearer"},
    ],
)
def test_missing_or_wrong_key_is_401(keyed: httpx.Client, headers: dict[str, str]) -> None:
    response = keyed.post("/generate", json=GEN, headers=headers)
    assert (
        response.status_code,
        response.json()["error"]["code"],
        response.headers["www-authenticate"],
    ) == (
        401,
        "invalid_api_key",
        "Bearer",
    )


@pytest.mark.parametrize("key", ["key-one", "key-two"])
def test_each_configured_key_passes(keyed: httpx.Client, key: str) -> None:
    # Past authentication the request meets the missing model: 503, not 401.
    response = keyed.post("/generate", json=GEN, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 503


def test_key_is_checked_before_the_body(keyed: httpx.Client) -> None:
    response = keyed.post("/v1/chat/completions", content=b"{not json")
    assert response.status_code == 401


def test_models_needs_a_key(keyed: httpx.Client) -> None:
    assert keyed.get("/v1/models").status_code == 401


@pytest.mark.parametrize("path", ["/health", "/ready", "/metrics"])
def test_probes_need_no_key(keyed: httpx.Client, path: str) -> None:
    assert keyed.get(path).status_code in (200, 503)


def test_unauthorized_is_counted(keyed: httpx.Client) -> None:
    before = metric(keyed, "llm_rejections_total", reason="unauthorized")
    keyed.post("/generate", json=GEN)
    assert metric(keyed, "llm_rejections_total", reason="unauthorized") == before + 1


def test_keys_are_off_by_default(client: httpx.Client) -> None:
    assert client.get("/v1/models").status_code == 200
