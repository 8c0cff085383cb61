"""The edge, proven with the real Traefik running the project's traefik/ configuration:
certificates from Pebble (the ACME server Let's Encrypt publishes for testing), basic auth,
redirects, headers, rate limit and unbuffered streaming in front of the real llm-node."""

from __future__ import annotations

import base64
import json
import shutil
import socket
import ssl
import stat
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests import support
from tests.edge.conftest import (
    LLM_HOST,
    MONITORING_HOST,
    PASSWORD,
    USER,
    Edge,
    peer_names,
    start_pebble,
    start_traefik,
)

pytestmark = pytest.mark.slow

GENERATE = {"prompt": "Say hello.", "max_tokens": 8}
CHAT = {"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8}


@pytest.mark.parametrize("host", [LLM_HOST, MONITORING_HOST])
def test_certificate_is_issued_over_http_01_for_each_host(edge: Edge, host: str) -> None:
    assert peer_names(edge, host) == [host]


@pytest.fixture(scope="module")
def edge_tls_alpn(edge_dir: Path, grafana_standin: int, users_file: Path) -> Iterator[Edge]:
    """A second Pebble and Traefik, with traefik_acme_challenge=tlsalpn (both routers go to
    the stand-in: only the certificates matter here)."""
    workdir = edge_dir / "tls-alpn"
    (workdir / "traefik").mkdir(parents=True)
    shutil.copy(users_file, workdir / "traefik" / "users")
    standin = f"http://127.0.0.1:{grafana_standin}"
    with (
        start_pebble(workdir / "pebble") as pebble,
        start_traefik(workdir / "traefik", pebble, standin, grafana_standin, "tlsalpn") as edge,
    ):
        yield edge


@pytest.mark.parametrize("host", [LLM_HOST, MONITORING_HOST])
def test_certificate_is_issued_over_tls_alpn_01_when_selected(
    edge_tls_alpn: Edge, host: str
) -> None:
    assert peer_names(edge_tls_alpn, host) == [host]


def test_acme_storage_is_private(edge: Edge) -> None:
    assert stat.S_IMODE(edge.acme_storage.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [("POST", "/generate", GENERATE), ("POST", "/v1/chat/completions", CHAT)],
)
@pytest.mark.parametrize(
    "auth",
    [None, (USER, "wrong-password-123"), ("mallory", PASSWORD)],
    ids=["no-credentials", "wrong-password", "unknown-user"],
)
def test_api_refuses_missing_or_wrong_credentials(
    edge: Edge, method: str, path: str, body: dict, auth: tuple[str, str] | None
) -> None:
    with edge.client() as client:
        response = client.request(method, edge.https_url(LLM_HOST, path), json=body, auth=auth)
    assert response.status_code == 401


def test_monitoring_refuses_missing_credentials(edge: Edge) -> None:
    with edge.client() as client:
        response = client.get(edge.https_url(MONITORING_HOST, "/"))
    assert response.status_code == 401


def test_monitoring_answers_with_credentials(edge: Edge) -> None:
    with edge.client() as client:
        response = client.get(edge.https_url(MONITORING_HOST, "/"), auth=(USER, PASSWORD))
    assert response.text == "grafana stand-in\n"


def test_generate_answers_with_credentials(edge: Edge) -> None:
    with edge.client() as client:
        response = client.post(
            edge.https_url(LLM_HOST, "/generate"), json=GENERATE, auth=(USER, PASSWORD)
        )
    assert response.status_code == 200, response.text
    assert response.json()["response"]


def test_chat_completions_answer_with_credentials(edge: Edge) -> None:
    with edge.client() as client:
        response = client.post(
            edge.https_url(LLM_HOST, "/v1/chat/completions"), json=CHAT, auth=(USER, PASSWORD)
        )
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"]


def generating_now(edge: Edge) -> float:
    """llm_inflight_requests straight from llm-node: 1 while a generation runs."""
    samples = support.scrape(f"{edge.llm_node_url}/metrics")
    assert ("llm_inflight_requests", ()) in samples, "llm-node exports no llm_inflight_requests"
    return support.sample(samples, "llm_inflight_requests")


def test_stream_reaches_the_client_chunk_by_chunk(edge: Edge) -> None:
    """The first SSE event gets through Traefik while llm-node is still generating: nothing
    on the way (buffering middleware, compression) holds the stream back."""
    body = {
        "messages": [{"role": "user", "content": "Write a long story about a dragon."}],
        "max_tokens": 64,
        "temperature": 0,  # greedy: the tiny model writes all 64 tokens, run after run
        "stream": True,
    }
    events = []
    with (
        edge.client() as client,
        client.stream(
            "POST",
            edge.https_url(LLM_HOST, "/v1/chat/completions"),
            json=body,
            auth=(USER, PASSWORD),
        ) as response,
    ):
        assert response.status_code == 200
        lines = response.iter_lines()
        for line in lines:
            if line.startswith("data: "):
                events.append(line)
                break
        still_generating_at_first_event = generating_now(edge)
        events += [line for line in lines if line.startswith("data: ")]
    assert still_generating_at_first_event == 1
    assert events[-1] == "data: [DONE]"
    assert len(events) > 10


@pytest.mark.parametrize("host", [LLM_HOST, MONITORING_HOST])
def test_plain_http_redirects_permanently_to_https(edge: Edge, host: str) -> None:
    response = httpx.get(f"http://127.0.0.1:{edge.web_port}/v1/models", headers={"Host": host})
    assert (response.status_code, response.headers["location"]) in {
        (301, f"https://{host}:{edge.websecure_port}/v1/models"),
        (308, f"https://{host}:{edge.websecure_port}/v1/models"),
    }


def test_unknown_host_gets_404(edge: Edge) -> None:
    with edge.client() as client:
        response = client.get(
            edge.https_url(LLM_HOST, "/v1/models"),
            headers={"Host": "unknown.edge.test"},
            auth=(USER, PASSWORD),
        )
    assert response.status_code == 404


def test_llm_node_metrics_are_not_public(edge: Edge) -> None:
    with edge.client() as client:
        response = client.get(edge.https_url(LLM_HOST, "/metrics"), auth=(USER, PASSWORD))
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("strict-transport-security", "max-age=31536000; includeSubDomains"),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
    ],
)
@pytest.mark.parametrize("host", [LLM_HOST, MONITORING_HOST])
def test_security_headers_are_set(edge: Edge, host: str, header: str, value: str) -> None:
    with edge.client() as client:
        response = client.get(edge.https_url(host, "/"), auth=(USER, PASSWORD))
    assert response.headers.get(header) == value


def test_body_over_the_cap_gets_413(edge: Edge) -> None:
    body = {"prompt": "x" * 1_100_000, "max_tokens": 1}
    with edge.client() as client:
        response = client.post(
            edge.https_url(LLM_HOST, "/generate"), json=body, auth=(USER, PASSWORD)
        )
    assert response.status_code == 413


def handshake(edge: Edge, maximum: ssl.TLSVersion) -> str:
    """The TLS version negotiated by a client that offers TLS 1.0 up to `maximum`."""
    context = ssl.create_default_context(cafile=str(edge.pebble_root))
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # lets this client offer TLS 1.0/1.1 at all
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLSv1 names are deprecated
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = maximum
    with (
        socket.create_connection(("127.0.0.1", edge.websecure_port), timeout=10) as sock,
        context.wrap_socket(sock, server_hostname=LLM_HOST) as tls,
    ):
        return str(tls.version())


def test_tls_1_1_is_refused_by_the_server(edge: Edge) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        maximum = ssl.TLSVersion.TLSv1_1
    with pytest.raises(ssl.SSLError) as refused:
        handshake(edge, maximum)
    # The server's "protocol version" alert: the client did offer TLS 1.1.
    assert refused.value.reason == "TLSV1_ALERT_PROTOCOL_VERSION"


def test_tls_1_2_is_accepted(edge: Edge) -> None:
    assert handshake(edge, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"


def test_rate_limit_answers_429_past_the_burst(edge: Edge) -> None:
    """From its own source address (127.0.0.2), so the other tests keep their budget.
    Without credentials: the limiter runs before basic auth, so every answer is the
    limiter's 429 or the auth's 401 (never the in-flight limit's 429). Ten at a time, so
    even a slow machine sends them faster than the limit refills."""
    burst = 20  # traefik_api_rate_burst's default
    url = edge.https_url(LLM_HOST, "/v1/models")
    with (
        edge.client(local_address="127.0.0.2") as client,
        ThreadPoolExecutor(max_workers=10) as pool,
    ):
        statuses = list(pool.map(lambda _: client.get(url).status_code, range(5 * burst)))
    assert (statuses.count(401) >= burst, 429 in statuses) == (True, True)


def test_access_log_is_json_without_credentials(edge: Edge) -> None:
    with edge.client() as client:
        client.get(edge.https_url(LLM_HOST, "/v1/models"), auth=(USER, PASSWORD))
    credentials = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    lines = (edge.workdir / "access.log").read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    assert (
        any(entry.get("RequestHost") == LLM_HOST for entry in entries),
        credentials in "".join(lines),
    ) == (True, False)
