"""Bearer API keys and basic auth together, decided by the real Traefik in front of the real
llm-node: the routers a deployment gets with vault_llm_node_api_keys (traefik/LABELS.md)."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest

from tests.edge.conftest import (
    LLM_HOST,
    PASSWORD,
    USER,
    Edge,
    start_llm_node,
    start_pebble,
    start_traefik,
)

pytestmark = pytest.mark.slow

# Made up per run: one key of the "vault", one the server makes for the edge itself.
API_KEY = secrets.token_urlsafe(24)
EDGE_KEY = secrets.token_urlsafe(36)
CHAT = {"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 4}


@pytest.fixture(scope="module")
def edge_keys(edge_dir: Path, grafana_standin: int, users_file: Path) -> Iterator[Edge]:
    """llm-node with LLM_API_KEYS behind its own Pebble and Traefik with the key routers."""
    workdir = edge_dir / "api-keys"
    (workdir / "traefik").mkdir(parents=True)
    shutil.copy(users_file, workdir / "traefik" / "users")
    keys = {"LLM_API_KEYS": f"{API_KEY},{EDGE_KEY}"}
    with (
        start_llm_node(workdir / "llm-node.log", keys) as node,
        start_pebble(workdir / "pebble") as pebble,
        start_traefik(
            workdir / "traefik", pebble, node, grafana_standin, "http", edge_api_key=EDGE_KEY
        ) as edge,
    ):
        yield edge


def _chat(edge: Edge, **kwargs: object) -> tuple[int, str]:
    with edge.client() as client:
        response = client.post(
            edge.https_url(LLM_HOST, "/v1/chat/completions"),
            json=CHAT,
            **kwargs,  # type: ignore[arg-type]
        )
    return response.status_code, response.text


def _bearer(key: str) -> dict[str, dict[str, str]]:
    return {"headers": {"Authorization": f"Bearer {key}"}}


def test_api_key_through_edge_bearer_key_answers_200(edge_keys: Edge) -> None:
    status, text = _chat(edge_keys, **_bearer(API_KEY))
    assert status == 200, text


@pytest.mark.parametrize("scheme", ["bearer", "BEARER"])
def test_api_key_through_edge_scheme_is_case_insensitive(edge_keys: Edge, scheme: str) -> None:
    status, text = _chat(edge_keys, headers={"Authorization": f"{scheme} {API_KEY}"})
    assert status == 200, text


def test_api_key_through_edge_wrong_key_gets_401(edge_keys: Edge) -> None:
    status, text = _chat(edge_keys, **_bearer(API_KEY + "x"))
    assert (status, "invalid_api_key" in text) == (401, True)


def test_api_key_through_edge_no_credentials_get_401(edge_keys: Edge) -> None:
    status, _ = _chat(edge_keys)
    assert status == 401


def test_api_key_through_edge_basic_auth_still_answers_200(edge_keys: Edge) -> None:
    status, text = _chat(edge_keys, auth=(USER, PASSWORD))
    assert status == 200, text


def test_api_key_through_edge_wrong_password_gets_401(edge_keys: Edge) -> None:
    status, _ = _chat(edge_keys, auth=(USER, PASSWORD + "x"))
    assert status == 401


def test_api_key_through_edge_metrics_stay_internal(edge_keys: Edge) -> None:
    with edge_keys.client() as client:
        response = client.get(edge_keys.https_url(LLM_HOST, "/metrics"), **_bearer(API_KEY))
    assert response.status_code == 404


def test_api_key_through_edge_openai_sdk_with_the_key_answers(edge_keys: Edge) -> None:
    with openai.OpenAI(
        base_url=edge_keys.https_url(LLM_HOST, "/v1"),
        api_key=API_KEY,
        http_client=edge_keys.client(),
        max_retries=0,
    ) as sdk:
        completion = sdk.chat.completions.create(
            model="tiny", messages=CHAT["messages"], max_tokens=4
        )
    assert completion.choices[0].finish_reason in {"length", "stop"}


def test_api_key_through_edge_openai_sdk_with_a_wrong_key_is_refused(edge_keys: Edge) -> None:
    with (
        openai.OpenAI(
            base_url=edge_keys.https_url(LLM_HOST, "/v1"),
            api_key="not-a-key",
            http_client=edge_keys.client(),
            max_retries=0,
        ) as sdk,
        pytest.raises(openai.AuthenticationError),
    ):
        sdk.models.list()


def test_api_key_through_edge_key_guessing_is_rate_limited(edge_keys: Edge) -> None:
    """The key router has the same per-IP limit as the basic-auth one (own source address,
    so the other tests keep their budget): wrong keys get 401 until the limiter's 429."""
    url = edge_keys.https_url(LLM_HOST, "/v1/models")
    with (
        edge_keys.client(local_address="127.0.0.3") as client,
        ThreadPoolExecutor(max_workers=10) as pool,
    ):
        statuses = list(
            pool.map(lambda _: client.get(url, **_bearer("guess")).status_code, range(100))
        )
    assert (401 in statuses, 429 in statuses) == (True, True)


def test_api_key_through_edge_bearer_without_keys_configured_gets_401(edge: Edge) -> None:
    """The default deployment (no API keys) has no key router: a bearer header cannot
    bypass basic auth."""
    status, _ = _chat(edge, **_bearer(API_KEY))
    assert status == 401
