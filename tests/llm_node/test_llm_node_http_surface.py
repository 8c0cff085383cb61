"""HEAD on every GET route, the SDK's models.retrieve, and CORS behind LLM_CORS_ORIGINS."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest
from node_harness import START_TIMEOUT, LiveServer, make_settings

GET_ROUTES = ["/health", "/ready", "/v1/models", "/v1/models/tiny", "/metrics"]


@pytest.mark.parametrize("path", GET_ROUTES)
def test_head_is_200(client: httpx.Client, path: str) -> None:
    assert client.head(path).status_code == 200


@pytest.mark.parametrize("path", GET_ROUTES)
def test_head_has_no_body(client: httpx.Client, path: str) -> None:
    assert client.head(path).content == b""


def test_head_of_unknown_model_is_404(client: httpx.Client) -> None:
    assert client.head("/v1/models/other").status_code == 404


@pytest.fixture
def sdk(server: LiveServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0) as c:
        yield c


def test_sdk_models_retrieve_served_model(sdk: openai.OpenAI) -> None:
    model = sdk.models.retrieve("tiny")
    assert (model.id, model.object, model.owned_by) == ("tiny", "model", "llm-node")


def test_sdk_models_retrieve_other_model_is_not_found(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        sdk.models.retrieve("gpt-4o")
    assert raised.value.code == "model_not_found"


def test_unknown_model_is_404_in_openai_shape(client: httpx.Client) -> None:
    error = client.get("/v1/models/gpt-4o").json()["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "not_found_error",
        "model_not_found",
        "model",
    )


ALLOWED = "https://app.example.com"


@pytest.fixture(scope="module")
def cors_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """CORS for one origin, API keys on; no model (CORS is answered before anything else)."""
    missing = tmp_path_factory.mktemp("cors") / "absent.gguf"
    settings = make_settings(
        model_path=missing, cors_origins=f"{ALLOWED}, https://other.example.com", api_keys="k1"
    )
    with LiveServer(settings) as live:
        live.app.state.engine.wait_loaded(START_TIMEOUT)
        yield live


def preflight(url: str, origin: str) -> httpx.Response:
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    return httpx.options(f"{url}/v1/chat/completions", headers=headers)


def test_preflight_of_listed_origin_is_allowed(cors_server: LiveServer) -> None:
    response = preflight(cors_server.url, ALLOWED)
    assert (response.status_code, response.headers.get("access-control-allow-origin")) == (
        200,
        ALLOWED,
    )


def test_preflight_allows_the_authorization_header(cors_server: LiveServer) -> None:
    allowed = preflight(cors_server.url, ALLOWED).headers["access-control-allow-headers"]
    assert "authorization" in allowed.lower()


def test_preflight_of_other_origin_is_refused(cors_server: LiveServer) -> None:
    response = preflight(cors_server.url, "https://evil.example.net")
    assert (response.status_code, response.headers.get("access-control-allow-origin")) == (
        400,
        None,
    )


def test_answer_to_listed_origin_is_readable_by_the_browser(cors_server: LiveServer) -> None:
    response = httpx.get(
        f"{cors_server.url}/v1/models",
        headers={"Origin": ALLOWED, "Authorization": "Bearer k1"},
    )
    assert (response.status_code, response.headers.get("access-control-allow-origin")) == (
        200,
        ALLOWED,
    )


def test_refusal_to_listed_origin_is_readable_by_the_browser(cors_server: LiveServer) -> None:
    response = httpx.get(f"{cors_server.url}/v1/models", headers={"Origin": ALLOWED})
    assert (response.status_code, response.headers.get("access-control-allow-origin")) == (
        401,
        ALLOWED,
    )


def test_cors_is_off_by_default(client: httpx.Client) -> None:
    response = client.get("/v1/models", headers={"Origin": ALLOWED})
    assert "access-control-allow-origin" not in response.headers
