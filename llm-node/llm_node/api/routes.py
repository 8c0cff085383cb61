"""The endpoints. Blocking work never runs here: generations go to the engine's worker."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ValidationError

from llm_node.api.errors import APIError
from llm_node.api.middleware import CLIENT_CLOSED, QUEUE_FULL_MESSAGE, RETRY_AFTER_SECONDS
from llm_node.chat_template import TemplateError
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
from llm_node.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    GenerateRequest,
    Sampling,
)

log = logging.getLogger(__name__)
router = APIRouter()
Body = TypeVar("Body", bound=BaseModel)

# How long after its deadline a job may still report before the route gives up on it.
DEADLINE_GRACE_SECONDS = 1.0


class ClientGone(Exception):
    """The client disconnected while its request was waiting or generating."""


# Markers the route posts to a job's own event queue (compared by identity, never sent).
_CLIENT_GONE = Failed("cancelled", "the client went away")
_TIMED_OUT = Failed("deadline", "the request took longer than the deadline")


# -- request parsing ----------------------------------------------------------------------------
async def parse_body(request: Request, model: type[Body]) -> Body:
    raw = await request.body()
    try:
        return model.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        request.app.state.metrics.rejections.labels(reason="invalid").inc()
        error = exc.errors(include_url=False)[0]
        if error["type"] == "json_invalid":
            raise APIError(
                400, f"the body is not valid JSON: {error['msg']}", "invalid_json"
            ) from None
        if error["type"] == "model_type" and not error["loc"]:
            raise APIError(422, "the body must be a JSON object", "invalid_value") from None
        param = ".".join(str(part) for part in error["loc"] if _is_field(part)) or None
        message = f"{param}: {error['msg']}" if param else error["msg"]
        raise APIError(422, message, "invalid_value", param=param) from None


_UNION_TAGS = frozenset({"str", "int", "float", "bool", "list", "dict", "none"})


def _is_field(part: int | str) -> bool:
    """Keep field names and list indices; drop pydantic's union member tags (`list[str]`)."""
    return isinstance(part, int) or (part.isidentifier() and part not in _UNION_TAGS)


def sampling_params(body: Sampling, settings: Settings, max_tokens: int | None) -> SamplingParams:
    if max_tokens is not None and max_tokens > settings.max_tokens_limit:
        raise APIError(
            422,
            f"max_tokens: must be at most {settings.max_tokens_limit} on this server",
            "invalid_value",
            param="max_tokens",
            reason="invalid",
        )
    return SamplingParams(
        max_tokens=max_tokens or settings.effective_default_max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        top_k=body.top_k,
        repeat_penalty=body.repeat_penalty,
        repeat_last_n=body.repeat_last_n,
        stop=body.stop_list(),
        max_tokens_explicit=max_tokens is not None,
    )


# -- driving a job from the event loop ----------------------------------------------------------
class Generation:
    """Submits one job and reads its events; a disconnect or the deadline interrupts the wait.

    The worker posts each token to the job's event queue, and the route awaits that queue and
    nothing else: the disconnect watcher and the deadline timer post their own event to it
    (after the tokens already there), so a token costs one queue hand-off on the event loop.
    """

    def __init__(self, request: Request, endpoint: str) -> None:
        self.request = request
        self.endpoint = endpoint
        self.engine: Engine = request.app.state.engine
        self.metrics: Metrics = request.app.state.metrics
        self.settings: Settings = request.app.state.settings
        self.state = request.scope.setdefault("state", {})
        self.started: float = self.state.get("started", time.perf_counter())
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
            raise APIError(
                503,
                QUEUE_FULL_MESSAGE,
                "queue_full",
                reason="queue_full",
                headers={"Retry-After": RETRY_AFTER_SECONDS},
            ) from None
        except EngineUnavailable as exc:
            raise APIError(
                503,
                f"the model is not ready: {exc}",
                "model_not_ready",
                reason="not_ready",
                headers={"Retry-After": "10"},
            ) from None
        self.job = job
        self.watcher = asyncio.create_task(self._watch_disconnect())
        # The worker stops a job at its deadline itself; this timer covers a worker that does
        # not report (a job still queued, a prompt being processed) a little after it.
        wait = job.deadline + DEADLINE_GRACE_SECONDS - time.monotonic()
        self.timer = loop.call_later(max(wait, 0.0), self._interrupt, _TIMED_OUT)
        if self.settings.log_prompts:
            self.state.setdefault("log_fields", {})["prompt"] = prompt

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
            self.state["client_gone"] = True
            raise ClientGone
        if event is _TIMED_OUT:
            raise self._deadline_error()
        if isinstance(event, Delta):
            self.text_parts.append(event.text)
            if not self.first_token_seen:
                self.first_token_seen = True
                self.metrics.time_to_first_token.labels(endpoint=self.endpoint).observe(
                    time.perf_counter() - self.started
                )
        elif isinstance(event, Finished):
            fields = self.state.setdefault("log_fields", {})
            fields.update(
                prompt_tokens=event.prompt_tokens,
                completion_tokens=event.completion_tokens,
                finish_reason=event.finish_reason,
            )
            if self.settings.log_prompts:
                fields["completion"] = "".join(self.text_parts)
        elif event.kind == "cancelled":
            self.state["client_gone"] = True
            raise ClientGone
        return event

    def _deadline_error(self) -> APIError:
        return APIError(
            504,
            f"the request took longer than {self.settings.request_timeout_seconds:g} s",
            "timeout",
            reason="deadline",
        )

    def failure_error(self, event: Failed) -> APIError:
        if event.kind == "deadline":
            return self._deadline_error()
        if event.kind == "context_length_exceeded":
            return APIError(
                400,
                f"{event.message} (n_ctx={self.settings.n_ctx})",
                "context_length_exceeded",
                param="messages",
                reason="invalid",
            )
        if event.kind == "shutdown":
            return APIError(503, event.message, "shutting_down", headers={"Retry-After": "10"})
        return APIError(500, "the generation failed", "internal_error")

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


def client_gone_response() -> Response:
    return Response(status_code=CLIENT_CLOSED)


def sse(payload: dict[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {data}\n\n".encode()


def usage(finished: Finished) -> dict[str, Any]:
    return {
        "prompt_tokens": finished.prompt_tokens,
        "completion_tokens": finished.completion_tokens,
        "total_tokens": finished.prompt_tokens + finished.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": finished.cached_tokens},
    }


async def stream_events(
    gen: Generation,
    first: Event,
    chunk: Callable[[str | None, str | None], dict[str, Any]],
    include_usage: bool,
    usage_chunk: Callable[[dict[str, Any]], dict[str, Any]],
) -> AsyncIterator[bytes]:
    """SSE body: one chunk per piece of text, a final chunk with finish_reason, `[DONE]`."""
    try:
        event = first
        while True:
            if isinstance(event, Delta):
                yield sse(chunk(event.text, None))
            elif isinstance(event, Finished):
                yield sse(chunk(None, event.finish_reason))
                if include_usage:
                    yield sse(usage_chunk(usage(event)))
                yield sse("[DONE]")
                return
            else:
                err = gen.failure_error(event)
                if err.reason is not None:
                    gen.metrics.rejections.labels(reason=err.reason).inc()
                yield sse(
                    {"error": {"message": err.message, "type": "server_error", "code": err.code}}
                )
                yield sse("[DONE]")
                return
            event = await gen.next_event()
    except ClientGone:
        return
    except APIError as err:  # deadline while streaming: the status line is already sent
        if err.reason is not None:
            gen.metrics.rejections.labels(reason=err.reason).inc()
        yield sse({"error": {"message": err.message, "type": "timeout", "code": err.code}})
        yield sse("[DONE]")
    finally:
        gen.close()


async def first_event(gen: Generation) -> Event:
    """Wait for the first event before answering, so queue-time failures keep their status."""
    event = await gen.next_event()
    if isinstance(event, Failed):
        raise gen.failure_error(event)
    return event


SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


# -- endpoints ----------------------------------------------------------------------------------
@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: answers at once, whatever the model is doing."""
    return {"status": "ok"}


@router.get("/ready")
async def ready(request: Request) -> JSONResponse:
    """Readiness: 200 only once the model is loaded."""
    engine: Engine = request.app.state.engine
    if engine.ready:
        return JSONResponse(
            {"status": "ready", "model": request.app.state.settings.served_model_name}
        )
    reason = engine.load_error or "the model is loading"
    return JSONResponse({"status": "not ready", "reason": reason}, status_code=503)


@router.get("/metrics")
async def metrics(request: Request) -> PlainTextResponse:
    registry = request.app.state.metrics.registry
    return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    settings: Settings = request.app.state.settings
    return {
        "object": "list",
        "data": [
            {
                "id": settings.served_model_name,
                "object": "model",
                "created": request.app.state.started_at,
                "owned_by": "llm-node",
            }
        ],
    }


def render_chat(request: Request, messages: list[dict[str, str]]) -> str:
    engine: Engine = request.app.state.engine
    if not engine.ready:
        raise APIError(
            503,
            f"the model is not ready: {engine.load_error or 'the model is loading'}",
            "model_not_ready",
            reason="not_ready",
            headers={"Retry-After": "10"},
        )
    try:
        return engine.chat_format.render(messages)
    except TemplateError as exc:
        raise APIError(
            422, str(exc), "invalid_messages", param="messages", reason="invalid"
        ) from None


@router.post("/generate")
async def generate(request: Request) -> Response:
    """The simple API: {"prompt": "..."} -> {"response": "..."} (chat-formatted)."""
    body = await parse_body(request, GenerateRequest)
    settings: Settings = request.app.state.settings
    params = sampling_params(body, settings, body.max_tokens)
    messages = [{"role": "user", "content": body.prompt}]
    if body.system is not None:
        messages.insert(0, {"role": "system", "content": body.system})
    prompt = render_chat(request, messages)
    gen = Generation(request, "/generate")
    try:
        gen.submit(prompt, params, special=True)
        text, finished = await gen.collect()
    except ClientGone:
        return client_gone_response()
    finally:
        gen.close()
    return JSONResponse(
        {"response": text, "finish_reason": finished.finish_reason, "usage": usage(finished)}
    )


@router.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    body = await parse_body(request, ChatCompletionRequest)
    settings: Settings = request.app.state.settings
    params = sampling_params(body, settings, body.max_tokens)
    messages = [
        {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
        for m in body.messages
    ]
    prompt = render_chat(request, messages)
    gen = Generation(request, "/v1/chat/completions")
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    model = settings.served_model_name
    try:
        gen.submit(prompt, params, special=True)
        if not body.stream:
            text, finished = await gen.collect()
        else:
            first = await first_event(gen)
    except ClientGone:
        gen.close()
        return client_gone_response()
    except BaseException:
        gen.close()
        raise
    if not body.stream:
        gen.close()
        return JSONResponse(
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "logprobs": None,
                        "finish_reason": finished.finish_reason,
                    }
                ],
                "usage": usage(finished),
            }
        )
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    role_sent = False

    def chunk(text: str | None, finish: str | None) -> dict[str, Any]:
        nonlocal role_sent
        delta: dict[str, Any] = {} if text is None else {"content": text}
        if not role_sent:
            delta["role"] = "assistant"
            delta.setdefault("content", "")
            role_sent = True
        return {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    def usage_chunk(counts: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [],
            "usage": counts,
        }

    return StreamingResponse(
        stream_events(gen, first, chunk, include_usage, usage_chunk),
        media_type="text/event-stream",
        headers=SSE_HEADERS,
    )


@router.post("/v1/completions")
async def completions(request: Request) -> Response:
    """Raw text completion: the prompt goes to the model as is (special tokens not parsed)."""
    body = await parse_body(request, CompletionRequest)
    settings: Settings = request.app.state.settings
    params = sampling_params(body, settings, body.max_tokens)
    gen = Generation(request, "/v1/completions")
    completion_id = f"cmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    model = settings.served_model_name
    try:
        gen.submit(body.prompt_text(), params, special=False)
        if not body.stream:
            text, finished = await gen.collect()
        else:
            first = await first_event(gen)
    except ClientGone:
        gen.close()
        return client_gone_response()
    except BaseException:
        gen.close()
        raise
    if not body.stream:
        gen.close()
        return JSONResponse(
            {
                "id": completion_id,
                "object": "text_completion",
                "created": created,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "text": text,
                        "logprobs": None,
                        "finish_reason": finished.finish_reason,
                    }
                ],
                "usage": usage(finished),
            }
        )
    include_usage = bool(body.stream_options and body.stream_options.include_usage)

    def chunk(text: str | None, finish: str | None) -> dict[str, Any]:
        return {
            "id": completion_id,
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": [
                {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}
            ],
        }

    def usage_chunk(counts: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": completion_id,
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": [],
            "usage": counts,
        }

    return StreamingResponse(
        stream_events(gen, first, chunk, include_usage, usage_chunk),
        media_type="text/event-stream",
        headers=SSE_HEADERS,
    )
