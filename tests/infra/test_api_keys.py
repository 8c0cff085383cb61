"""Bearer API keys through the deployed Traefik (only when the deployment has some).

The key comes from the inventory's vault_llm_node_api_keys or VERIFY_API_KEY, never from
the command line (`read -rs VERIFY_API_KEY && export VERIFY_API_KEY`).
"""

from __future__ import annotations

import json
import ssl

import httpx
import openai
import pytest
from infra_http import Response, request
from infra_support import Target

# The keys are checked through Traefik on the edge.
pytestmark = pytest.mark.edge
CHAT = {"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 4}


@pytest.fixture(scope="module")
def api_key(target: Target) -> str:
    if not target.api_key:
        pytest.skip("no API keys: vault_llm_node_api_keys is empty (or set VERIFY_API_KEY)")
    return target.api_key


def _chat(
    target: Target, headers: dict[str, str] | None = None, auth: tuple[str, str] | None = None
) -> Response:
    return request(
        scheme="https",
        fqdn=target.llm_fqdn,
        address=target.address,
        port=target.https_port,
        path="/v1/chat/completions",
        method="POST",
        auth=auth,
        body=json.dumps(CHAT).encode(),
        ca_bundle=target.ca_bundle,
        extra_headers=headers,
    )


def test_api_key_through_edge_bearer_key_answers_200(target: Target, api_key: str) -> None:
    response = _chat(target, {"Authorization": f"Bearer {api_key}"})
    assert response.status == 200, response.body[:300]


def test_api_key_through_edge_wrong_key_gets_401(target: Target, api_key: str) -> None:
    response = _chat(target, {"Authorization": f"Bearer {api_key}-wrong"})
    assert response.status == 401


def test_api_key_through_edge_no_credentials_get_401(target: Target, api_key: str) -> None:
    assert _chat(target).status == 401


def test_api_key_through_edge_basic_auth_still_answers_200(
    target: Target, api_key: str, credentials: tuple[str, str]
) -> None:
    response = _chat(target, auth=credentials)
    assert response.status == 200, response.body[:300]


class _PinnedTransport(httpx.HTTPTransport):
    """Connect to the server's address while keeping the public name for SNI and Host."""

    def __init__(self, address: str, context: ssl.SSLContext) -> None:
        super().__init__(verify=context)
        self.address = address

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.extensions = {**request.extensions, "sni_hostname": request.url.host}
        request.headers["Host"] = request.url.netloc.decode()
        request.url = request.url.copy_with(host=self.address)
        return super().handle_request(request)


def test_api_key_through_edge_openai_sdk_with_the_key_answers(target: Target, api_key: str) -> None:
    context = ssl.create_default_context(cafile=target.ca_bundle)
    port = "" if target.https_port == 443 else f":{target.https_port}"
    with (
        httpx.Client(transport=_PinnedTransport(target.address, context), timeout=120) as http,
        openai.OpenAI(
            base_url=f"https://{target.llm_fqdn}{port}/v1",
            api_key=api_key,
            http_client=http,
            max_retries=0,
        ) as sdk,
    ):
        completion = sdk.chat.completions.create(
            model="default", messages=CHAT["messages"], max_tokens=4
        )
    assert completion.choices[0].finish_reason in {"length", "stop"}
