"""Drives one generation from the event loop: submission, events, disconnect watch, deadline."""

from __future__ import annotations

import asyncio
import time
from typing import Literal

from fastapi import Request

from llm_node.api import errors
from llm_node.api.errors import APIError
from llm_node.api.retry_after import queue_retry_after
from llm_node.api.state import RequestState, request_state
from llm_node.config import Settings
from llm_node.engine import (
    Delta,
    Engine,
    EngineUnavailable,
    Event,
    Failed,
    Finished,
    Job,
    QueueFull,
    SamplingParams,
)
from llm_node.metrics import Metrics

# How long after its deadline a job may still report before the route gives up on it.
DEADLINE_GRACE_SECONDS = 1.0


class ClientGone(Exception):
    """The client disconnected while its request was waiting or generating."""


# Markers the driver posts to a job's own event queue (compared by identity, never sent).
_CLIENT_GONE = Failed("cancelled", "the client went away")
_TIMED_OUT = Failed("deadline", "the request took longer than the deadline")


def not_ready_reason(engine: Engine) -> str | None:
    """Readiness, decided here for /ready and for every generating route: None when ready."""
    if engine.ready:
        return None
    return engine.load_error or "the model is loading"


def require_ready(engine: Engine) -> None:
    reason = not_ready_reason(engine)
    if reason is not None:
        raise errors.not_ready(reason)


class Generation:
    """Submits one job and reads its events; a disconnect or the deadline interrupts the wait.

    The worker posts each token to the job's event queue, and the route awaits that queue and
    nothing else: the disconnect watcher and the deadline timer post their own event to it
    (after the tokens already there), so a token costs one queue hand-off on the event loop.
    """

    def __init__(
        self, request: Request, endpoint: str, prompt_param: Literal["messages", "prompt"]
    ) -> None:
        self.request = request
        self.endpoint = endpoint
        self.prompt_param: Literal["messages", "prompt"] = prompt_param
        self.engine: Engine = request.app.state.engine
        self.metrics: Metrics = request.app.state.metrics
        self.settings: Settings = request.app.state.settings
        self.state: RequestState = request_state(request.scope)
        self.job: Job | None = None
        self.watcher: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.first_token_seen = False
        self.text_parts: list[str] = []

    def submit(self, prompt: str, params: SamplingParams, *, special: bool) -> None:
        loop = asyncio.get_running_loop()
        job = Job(
            prompt,
            params,
            special=special,
            timeout=self.settings.request_timeout_seconds,
            loop=loop,
        )
        try:
            self.engine.submit(job)
        except QueueFull:
            timeout = self.settings.request_timeout_seconds
            raise errors.queue_full(queue_retry_after(self.engine, timeout)) from None
        except EngineUnavailable as exc:
            raise errors.not_ready(str(exc)) from None
        self.job = job
        self.watcher = asyncio.create_task(self._watch_disconnect())
        # The worker stops a job at its deadline itself; this timer covers a worker that does
        # not report (a job still queued, a prompt being processed) a little after it.
        wait = job.deadline + DEADLINE_GRACE_SECONDS - time.monotonic()
        self.timer = loop.call_later(max(wait, 0.0), self._interrupt, _TIMED_OUT)
        if self.settings.log_prompts:
            self.state.prompt = prompt

    def _interrupt(self, event: Failed) -> None:
        """Stop the job and wake the route with `event` (a private marker, see next_event)."""
        if self.job is not None:
            self.job.cancel()
            self.job.events.put_nowait(event)

    async def _watch_disconnect(self) -> None:
        while True:
            message = await self.request.receive()
            if message["type"] == "http.disconnect":
                self._interrupt(_CLIENT_GONE)
                return

    async def next_event(self) -> Event:
        assert self.job is not None
        event = await self.job.events.get()
        if event is _CLIENT_GONE:
            self.state.client_gone = True
            raise ClientGone
        if event is _TIMED_OUT:
            raise errors.deadline(self.settings.request_timeout_seconds)
        if isinstance(event, Delta):
            self.text_parts.append(event.text)
            if not self.first_token_seen:
                self.first_token_seen = True
                self.metrics.time_to_first_token.labels(endpoint=self.endpoint).observe(
                    time.perf_counter() - self.state.started
                )
        elif isinstance(event, Finished):
            self.state.prompt_tokens = event.prompt_tokens
            self.state.completion_tokens = event.completion_tokens
            self.state.cached_tokens = event.cached_tokens
            self.state.finish_reason = event.finish_reason
            if self.settings.log_prompts:
                self.state.completion = "".join(self.text_parts)
        elif event.kind == "cancelled":
            self.state.client_gone = True
            raise ClientGone
        return event

    def failure_error(self, event: Failed) -> APIError:
        if event.kind == "deadline":
            return errors.deadline(self.settings.request_timeout_seconds)
        if event.kind == "deadline_unreachable_alone":
            return errors.deadline_unreachable(
                self.settings.request_timeout_seconds, event.estimated_seconds, event.message
            )
        if event.kind == "deadline_unreachable_queued":
            return errors.deadline_unreachable_queued(
                self.settings.request_timeout_seconds,
                event.remaining_seconds,
                event.message,
                queue_retry_after(self.engine, self.settings.request_timeout_seconds),
            )
        if event.kind == "context_length_exceeded":
            return errors.context_length(
                self.settings.n_ctx,
                event.prompt_tokens,
                event.requested_tokens,
                event.message,
                self.prompt_param,
            )
        if event.kind == "shutdown":
            return errors.shutting_down(event.message)
        return APIError(500, "the generation failed", "internal_error")

    async def first_event(self) -> Event:
        """Wait for the first event before answering, so queue-time failures keep their status."""
        event = await self.next_event()
        if isinstance(event, Failed):
            raise self.failure_error(event)
        return event

    async def collect(self) -> tuple[str, Finished]:
        """Wait for the whole answer (non-streaming)."""
        while True:
            event = await self.next_event()
            if isinstance(event, Finished):
                return "".join(self.text_parts), event
            if isinstance(event, Failed):
                raise self.failure_error(event)

    def close(self) -> None:
        if self.job is not None and not self.job.done:
            self.job.cancel()  # stops the worker at its next token
        if self.watcher is not None:
            self.watcher.cancel()
        if self.timer is not None:
            self.timer.cancel()
