"""A request that cannot finish before its deadline at the node's measured speed is refused
before anything of it is evaluated (llm_node.admission), on a real server with the tiny model.

The rates are not injected: each server measures them on its own first requests, and the
deadline is made tiny instead, so that a long max_tokens is impossible at the tiny model's
real speed.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from llm_node.admission import Estimate, Rates
from llm_node.api import errors
from llm_node.engine import Engine, Event, Failed, Finished, Job, SamplingParams
from llm_node.metrics import Metrics
from node_harness import LiveServer, make_settings, metric

from tests.support import COUNTING

DEADLINE = 3.0
LIMITS = {"n_ctx": 2048, "max_tokens_limit": 2000}


# -- the arithmetic -----------------------------------------------------------------------------
def test_estimate_at_8b_rates() -> None:
    # Issue 15's 8B figures: 1,000 fresh prompt tokens at 6.2 tokens/s, 256 new at 3.1.
    assert Estimate(1000, 256, 6.2, 3.1).seconds == pytest.approx(1000 / 6.2 + 256 / 3.1)


def test_an_unmeasured_rate_counts_nothing() -> None:
    assert Estimate(1000, 256, None, 3.1).seconds == pytest.approx(256 / 3.1)


def test_nothing_measured_estimates_zero() -> None:
    assert Rates().estimate(1000, 256).seconds == 0.0


def test_rate_is_total_tokens_over_total_seconds() -> None:
    rates = Rates()
    rates.record_decode(10, 1.0)
    rates.record_decode(30, 9.0)
    assert rates.decode_rate == pytest.approx(4.0)


def test_rates_follow_the_last_16_generations() -> None:
    rates = Rates()
    rates.record_prompt(1000, 1.0)
    for _ in range(16):
        rates.record_prompt(6, 1.0)
    assert rates.prompt_rate == pytest.approx(6.0)


def test_the_message_names_the_counts_and_rates() -> None:
    text = Estimate(812, 1024, 6.2, 3.3).describe()
    assert text == (
        "812 uncached prompt tokens at 6.2 tokens/s and up to 1024 new tokens at 3.3 tokens/s "
        "take about 441 s"
    )


# -- on a real server ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fresh_server(tiny_model: Path) -> Iterator[LiveServer]:
    settings = make_settings(model_path=tiny_model, request_timeout_seconds=DEADLINE, **LIMITS)
    with LiveServer(settings) as live:
        live.wait_ready()
        yield live


def post(live: LiveServer, max_tokens: int) -> httpx.Response:
    with httpx.Client(base_url=live.url, timeout=60) as c:
        return c.post("/v1/completions", json={**COUNTING, "max_tokens": max_tokens})


def decode_rate(message: str) -> float:
    found = re.search(r"new tokens at ([0-9.]+) tokens/s", message)
    assert found, message
    return float(found.group(1))


def test_before_any_measurement_a_request_is_accepted(fresh_server: LiveServer) -> None:
    # 2,000 tokens in 3 s is beyond the tiny model too, but nothing says so yet: it runs (and
    # finishes or meets the deadline).
    assert post(fresh_server, 2000).status_code in (200, 504)


@pytest.fixture(scope="module")
def refused(fresh_server: LiveServer) -> httpx.Response:
    """After a measured request, one that needs far more than the deadline at that speed."""
    assert post(fresh_server, 8).status_code == 200
    with httpx.Client(base_url=fresh_server.url, timeout=60) as c:
        evaluated = metric(c, "llm_prompt_tokens_total")
        deadlines = metric(c, "llm_rejections_total", reason="deadline")
        response = post(fresh_server, 2000)
        response.extensions["evaluated"] = metric(c, "llm_prompt_tokens_total") - evaluated
        response.extensions["counted"] = (
            metric(c, "llm_rejections_total", reason="deadline") - deadlines
        )
    return response


def test_an_impossible_request_is_refused_with_400(refused: httpx.Response) -> None:
    assert (refused.status_code, refused.json()["error"]["code"]) == (400, "deadline_unreachable")


@pytest.mark.parametrize(
    "words", ["up to 2000 new tokens at", "tokens/s", "LLM_REQUEST_TIMEOUT_SECONDS", "estimated"]
)
def test_the_refusal_names_estimate_rates_and_setting(refused: httpx.Response, words: str) -> None:
    assert words in refused.json()["error"]["message"]


def test_the_refused_request_evaluated_no_token(refused: httpx.Response) -> None:
    assert refused.extensions["evaluated"] == 0


def test_the_refusal_is_counted_as_a_deadline_rejection(refused: httpx.Response) -> None:
    assert refused.extensions["counted"] == 1


def test_a_request_that_fits_is_still_served(
    fresh_server: LiveServer, refused: httpx.Response
) -> None:
    assert post(fresh_server, 4).status_code == 200


@pytest.fixture(scope="module")
def rate(refused: httpx.Response) -> float:
    """The tiny model's decode rate on this machine now, as the refusal told it."""
    return decode_rate(refused.json()["error"]["message"])


def tokens_for(rate: float, share: float) -> int:
    """max_tokens that take `share` of the deadline at `rate`."""
    tokens = int(share * DEADLINE * rate)
    if tokens + 20 > LIMITS["n_ctx"]:
        pytest.skip(f"the tiny model decodes too fast here ({rate} tokens/s) for this deadline")
    return tokens


def test_a_request_whose_queue_wait_left_too_little_is_refused_before_evaluation(
    tiny_model: Path,
) -> None:
    """It fits in the deadline (600 s), but not in the 0.5 s its job has left, as after a
    long wait in the queue: the worker refuses it without evaluating it (the real model; the
    job's own short deadline stands in for the wait)."""
    settings = make_settings(model_path=tiny_model, request_timeout_seconds=600.0, **LIMITS)
    engine = Engine(settings, Metrics())
    engine.start()
    try:
        assert engine.wait_loaded(120)

        async def run(max_tokens: int, seconds: float) -> Event:
            job = Job(
                COUNTING["prompt"],
                SamplingParams(max_tokens=max_tokens, temperature=0),
                special=False,
                timeout=seconds,
                loop=asyncio.get_running_loop(),
            )
            engine.submit(job)
            while True:
                event = await job.events.get()
                if isinstance(event, Finished | Failed):
                    return event

        assert isinstance(asyncio.run(run(8, 60.0)), Finished)  # measures the rates
        refused = asyncio.run(run(1500, 0.5))
    finally:
        engine.stop()
    assert isinstance(refused, Failed)
    assert refused.kind == "deadline_unreachable_queued"


def test_the_api_answers_a_queue_refusal_with_503_and_retry_after() -> None:
    error = errors.deadline_unreachable_queued(600, 40, "up to 256 new tokens at 3.1 tokens/s", 95)
    assert (error.status, error.code, error.headers) == (
        503,
        "deadline_unreachable",
        {"Retry-After": "95"},
    )


def idle_engine(deadline: float, job_seconds: list[float], waiting: int) -> Engine:
    """An engine whose worker measured `job_seconds` and has `waiting` jobs queued (no model:
    only the queue's arithmetic is under test)."""
    settings = make_settings(model_path=Path("/nonexistent.gguf"), request_timeout_seconds=deadline)
    engine = Engine(settings, Metrics())
    engine._job_seconds.extend(job_seconds)
    loop = asyncio.new_event_loop()
    for _ in range(waiting):
        engine._waiting.append(
            Job("", SamplingParams(max_tokens=1), special=False, timeout=1, loop=loop)
        )
    loop.close()
    return engine


@pytest.mark.parametrize(
    ("job_seconds", "waiting", "full"),
    [
        ([100.0], 5, False),  # 5 x 100 s < 600 s: a 6th may wait
        ([100.0], 6, True),  # 6 x 100 s: the queue cannot drain before the deadline
        ([], 6, False),  # nothing measured yet: only LLM_QUEUE_SIZE (8 here) counts
        ([0.2], 9, True),  # the queue size still applies (8, +1 for the idle worker)
    ],
)
def test_a_queue_that_cannot_drain_in_time_counts_as_full(
    job_seconds: list[float], waiting: int, full: bool
) -> None:
    assert idle_engine(600.0, job_seconds, waiting)._full() is full
