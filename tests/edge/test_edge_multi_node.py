"""More than one node: the real Traefik, configured with traefik/dynamic/llm-nodes.yml.j2
(what the traefik role renders on the edge of a multi-node deployment), in front of two real
llm-nodes on the tiny model. Certificates come from Pebble, as for the single-node edge.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests import support
from tests.edge import procs
from tests.edge.conftest import (
    CERT_TIMEOUT,
    LLM_HOST,
    PASSWORD,
    USER,
    Edge,
    peer_names,
    start_pebble,
    traefik_variables,
)
from tests.edge.render import render_to

NODES = ("node-a", "node-b")
HEALTH_INTERVAL = "1s"
SHORT = {"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 1}
LONG = {
    "messages": [{"role": "user", "content": "Write a long story about a dragon."}],
    "max_tokens": 256,
    "temperature": 0,  # greedy: the tiny model writes all the tokens, run after run
    "stream": True,
}


class Node:
    """One real llm-node (`python -m llm_node`) that a test may stop and start again."""

    def __init__(self, name: str, workdir: Path, model: str) -> None:
        self.name = name
        self.workdir = workdir
        self.port = support.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            "PYTHONPATH": str(procs.REPO / "llm-node"),
            "LLM_MODEL_PATH": model,
            "LLM_HOST": "127.0.0.1",
            "LLM_PORT": str(self.port),
            "LLM_N_THREADS": "1",
            # No queue: a second request while one generates gets 503 queue_full at once.
            "LLM_QUEUE_SIZE": "0",
            "LLM_LOG_LEVEL": "warning",
        }
        self.program: support.Program | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = self.workdir / f"{self.name}-{self.starts}.log"
        self.program = support.Program(self.name, [sys.executable, "-m", "llm_node"], log, self.env)
        self.program.wait_until(
            lambda: httpx.get(f"{self.url}/ready", timeout=5).status_code == 200,
            "model loaded (/ready 200)",
            timeout=180,
        )

    def stop(self) -> None:
        if self.program is not None:
            self.program.stop()
            self.program = None

    def metric(self, name: str) -> float:
        """The sum of one metric family's samples, straight from this node's /metrics."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            if family.name == name:
                return sum(
                    sample.value
                    for sample in family.samples
                    if not sample.name.endswith("_created")
                )
        raise AssertionError(f"{self.name} exports no {name}")

    def chat_requests(self) -> float:
        return self.metric("llm_requests")


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Node]]:
    model = os.environ.get("LLM_TEST_MODEL", "")
    if not model or not Path(model).is_file():
        pytest.skip("LLM_TEST_MODEL is not set to the tiny model (make test sets it: make model)")
    workdir = tmp_path_factory.mktemp("multi-node")
    started = {name: Node(name, workdir, model) for name in NODES}
    try:
        for node in started.values():
            node.start()
        yield started
    finally:
        for node in started.values():
            node.stop()


@contextlib.contextmanager
def start_balanced_edge(
    workdir: Path, nodes: dict[str, Node], health_interval: str, **extra: object
) -> Iterator[Edge]:
    """Traefik with the multi-node route over both nodes, holding a certificate for llm.*."""
    traefik = procs.require_programs("traefik")["traefik"]
    with start_pebble(workdir / "pebble") as pebble:
        internal_port = support.free_port()
        variables = traefik_variables(workdir, pebble, internal_port)
        # The tests send more than one client's burst; the limits are tested elsewhere.
        variables.update(traefik_api_rate_average=100, traefik_api_rate_burst=200, **extra)
        (workdir / "acme").mkdir(mode=0o700)
        subprocess.run(
            [sys.executable, str(procs.REPO / "traefik/htpasswd.py"), "--password-stdin",
             str(workdir / "users"), USER],
            input=f"{PASSWORD}\n", text=True, check=True, capture_output=True,
        )  # fmt: skip
        render_to("traefik/traefik.yml.j2", workdir / "traefik.yml", **variables)
        dynamic = workdir / "dynamic"
        render_to("traefik/dynamic/middlewares.yml.j2", dynamic / "middlewares.yml", **variables)
        render_to(
            "traefik/dynamic/llm-nodes.yml.j2",
            dynamic / "llm-nodes.yml",
            traefik_llm_backends=[{"name": n.name, "url": n.url} for n in nodes.values()],
            traefik_llm_fqdn=LLM_HOST,
            traefik_llm_health_interval=health_interval,
        )
        argv = [traefik, f"--configFile={workdir / 'traefik.yml'}"]
        env = {"LEGO_CA_CERTIFICATES": str(pebble["ca"])}
        with procs.running("traefik", argv, workdir / "traefik.log", env) as program:
            program.wait_until(
                lambda: httpx.get(f"http://127.0.0.1:{internal_port}/ping").text == "OK", "ping"
            )
            edge = Edge(
                web_port=int(pebble["http_port"]),  # type: ignore[call-overload]
                websecure_port=int(pebble["tls_port"]),  # type: ignore[call-overload]
                internal_port=internal_port,
                llm_node_url=nodes[NODES[0]].url,
                pebble_root=Path(str(pebble["root"])),
                acme_storage=workdir / "acme" / "acme.json",
                workdir=workdir,
                users_file=workdir / "users",
            )
            program.wait_until(
                lambda: peer_names(edge, LLM_HOST), "a certificate for llm.*", CERT_TIMEOUT
            )
            yield edge


@pytest.fixture(scope="module")
def balanced_edge(
    tmp_path_factory: pytest.TempPathFactory, nodes: dict[str, Node]
) -> Iterator[Edge]:
    """The multi-node edge with a /ready check every second."""
    workdir = tmp_path_factory.mktemp("multi-node-edge")
    with start_balanced_edge(workdir, nodes, HEALTH_INTERVAL) as edge:
        yield edge


@pytest.fixture(scope="module")
def slow_check_edge(
    tmp_path_factory: pytest.TempPathFactory, nodes: dict[str, Node]
) -> Iterator[Edge]:
    """The same, with the /ready check once a minute: whatever keeps a node out of the
    rotation for the next seconds is the passive check, not /ready."""
    workdir = tmp_path_factory.mktemp("multi-node-slow-check")
    with start_balanced_edge(workdir, nodes, "60s") as edge:
        yield edge


def chat(edge: Edge, body: dict[str, object] = SHORT) -> httpx.Response:
    with edge.client() as client:
        return client.post(
            edge.https_url(LLM_HOST, "/v1/chat/completions"), json=body, auth=(USER, PASSWORD)
        )


def test_multi_node_a_request_avoids_the_busy_node_and_both_nodes_serve(
    balanced_edge: Edge, nodes: dict[str, Node]
) -> None:
    """While one node streams a long answer, the next request goes to the idle one (p2c
    compares the requests in flight), and the stream arrives event by event."""
    before = {name: node.chat_requests() for name, node in nodes.items()}
    events: list[str] = []
    first_event = threading.Event()
    stream_done = threading.Event()

    def stream() -> None:
        with (
            balanced_edge.client() as client,
            client.stream(
                "POST",
                balanced_edge.https_url(LLM_HOST, "/v1/chat/completions"),
                json=LONG,
                auth=(USER, PASSWORD),
            ) as response,
        ):
            for line in response.iter_lines():
                if line.startswith("data: "):
                    events.append(line)
                    first_event.set()
        stream_done.set()

    streamer = threading.Thread(target=stream, daemon=True)
    streamer.start()
    assert first_event.wait(timeout=120), "no SSE event came through Traefik"
    busy = [name for name, node in nodes.items() if node.metric("llm_inflight_requests") == 1]
    short = chat(balanced_edge)
    stream_still_running = not stream_done.is_set()
    streamer.join(timeout=300)
    after = {name: node.chat_requests() for name, node in nodes.items()}

    assert short.status_code == 200, short.text
    assert len(busy) == 1, f"exactly one node should be generating the stream, saw {busy}"
    assert stream_still_running, "the stream ended before the second request: nothing tested"
    assert {name: after[name] - before[name] for name in nodes} == dict.fromkeys(nodes, 1)
    assert events[-1] == "data: [DONE]"


def test_multi_node_a_node_that_answered_503_is_not_picked_next(
    slow_check_edge: Edge, nodes: dict[str, Node]
) -> None:
    """node-a is kept busy by a stream sent to it directly (not through Traefik, so p2c does
    not see it), so it answers 503 queue_full: once Traefik has got that 503, the next
    requests all go to node-b."""
    busy, idle = nodes[NODES[0]], nodes[NODES[1]]
    saturated = threading.Event()
    release = threading.Event()

    def keep_busy() -> None:
        body = {**LONG, "max_tokens": 1024}
        with (
            httpx.Client(timeout=300) as client,
            client.stream("POST", f"{busy.url}/v1/chat/completions", json=body) as response,
        ):
            for line in response.iter_lines():
                saturated.set()
                if release.is_set() or line == "data: [DONE]":
                    break

    holder = threading.Thread(target=keep_busy, daemon=True)
    holder.start()
    try:
        assert saturated.wait(timeout=120), f"{busy.name} did not start generating"
        statuses = []
        while 503 not in statuses and len(statuses) < 20:
            statuses.append(chat(slow_check_edge).status_code)
        served_before = idle.chat_requests()
        after_503 = [chat(slow_check_edge).status_code for _ in range(5)]
        busy_still_generating = busy.metric("llm_inflight_requests") == 1
        served_after = idle.chat_requests()
    finally:
        release.set()
        holder.join(timeout=300)
    assert 503 in statuses, f"{busy.name} was never picked in {len(statuses)} requests"
    assert busy_still_generating, "the stream holding node-a ended early: nothing tested"
    assert after_503 == [200] * 5
    assert served_after - served_before == 5


def consecutive_successes(edge: Edge, count: int) -> bool:
    return all(chat(edge).status_code == 200 for _ in range(count))


def test_multi_node_a_stopped_node_leaves_the_rotation(
    balanced_edge: Edge, nodes: dict[str, Node]
) -> None:
    nodes[NODES[1]].stop()
    support.wait_until(
        lambda: consecutive_successes(balanced_edge, 3), "requests succeed again", timeout=15
    )
    statuses = [chat(balanced_edge).status_code for _ in range(8)]
    assert statuses == [200] * 8


def test_multi_node_a_restarted_node_comes_back_into_rotation(
    balanced_edge: Edge, nodes: dict[str, Node]
) -> None:
    node = nodes[NODES[1]]
    if node.program is None:
        node.start()
    served_before = node.chat_requests()
    support.wait_until(
        lambda: chat(balanced_edge).status_code == 200 and node.chat_requests() > served_before,
        f"{node.name} serving through Traefik again",
        timeout=60,
    )
    assert node.chat_requests() > served_before


def test_multi_node_a_node_that_goes_down_costs_no_request_a_502(
    slow_check_edge: Edge, nodes: dict[str, Node]
) -> None:
    """With /ready asked once a minute, only a failed request tells Traefik that a node is
    gone: the llm-retry middleware sends that request again to the other node, so the
    first requests after a node stops succeed too (without it, about every second run of
    eight requests met the stopped node first and got a 502)."""
    stopping = nodes[NODES[1]]
    if stopping.program is None:
        stopping.start()
    served = {name: node.chat_requests() for name, node in nodes.items()}
    support.wait_until(
        lambda: (
            chat(slow_check_edge).status_code == 200
            and all(node.chat_requests() > served[name] for name, node in nodes.items())
        ),
        "both nodes serving through Traefik",
        timeout=60,
    )
    stopping.stop()
    try:
        statuses = [chat(slow_check_edge).status_code for _ in range(8)]
    finally:
        stopping.start()
    assert statuses == [200] * 8


@pytest.fixture(scope="module")
def short_read_timeout_edge(
    tmp_path_factory: pytest.TempPathFactory, nodes: dict[str, Node]
) -> Iterator[Edge]:
    """The same, with the entry point's readTimeout at 1 s."""
    workdir = tmp_path_factory.mktemp("multi-node-read-timeout")
    with start_balanced_edge(
        workdir, nodes, HEALTH_INTERVAL, traefik_read_timeout_seconds=1
    ) as edge:
        yield edge


def test_an_answer_longer_than_the_read_timeout_is_not_cut(
    short_read_timeout_edge: Edge, nodes: dict[str, Node]
) -> None:
    """readTimeout bounds reading the request, not writing the answer: a generation that
    takes minutes at 8B speed passes the default 60 s (traefik_read_timeout_seconds)."""
    for node in nodes.values():
        if node.program is None:
            node.start()
    edge = short_read_timeout_edge
    started = time.monotonic()
    with (
        edge.client() as client,
        client.stream(
            "POST", edge.https_url(LLM_HOST, "/v1/chat/completions"), json=LONG,
            auth=(USER, PASSWORD),
        ) as response,
    ):  # fmt: skip
        events = [line for line in response.iter_lines() if line.startswith("data: ")]
    lasted = time.monotonic() - started
    assert lasted > 2, f"the answer took {lasted:.1f} s: not longer than the 1 s readTimeout"
    assert response.status_code == 200
    assert events[-1] == "data: [DONE]"
