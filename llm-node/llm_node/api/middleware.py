"""Pure ASGI middleware (they must not buffer streams or hide client disconnects).

Order, outermost first: AccessLog (request id, request state, JSON log line, request and
rejection metrics) -> CORS (only with LLM_CORS_ORIGINS) -> ApiKeys (bearer keys, checked before
the body is read) -> Overload (503 while the queue is full, before the body is read) ->
BodyLimit (413 before the JSON is parsed).
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
import uuid
from typing import Any

from starlette.datastructures import State
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llm_node.api import errors
from llm_node.api.errors import CLIENT_CLOSED, APIError
from llm_node.api.retry_after import queue_retry_after
from llm_node.api.state import RequestState, attach, request_state
from llm_node.metrics import Metrics

access_log = logging.getLogger("llm_node.access")

# Only the API routes are counted in llm_requests_total (not /health, /ready or /metrics), and
# unknown paths are not used as label values so a scanner cannot blow up the series count.
COUNTED_ENDPOINTS = frozenset(
    {"/generate", "/v1/chat/completions", "/v1/completions", "/v1/models"}
)
PROTECTED_PREFIXES = ("/generate", "/v1/")
GENERATING_ENDPOINTS = frozenset({"/generate", "/v1/chat/completions", "/v1/completions"})
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


async def send_error(send: Send, scope: Scope, error: APIError) -> None:
    """Answer `error` from a middleware (no routing, no exception handlers)."""
    if error.reason is not None:
        request_state(scope).reject(error.reason)
    raw = json.dumps(error.payload()).encode()
    headers = [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send(
        {
            "type": "http.response.start",
            "status": error.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(raw)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": raw})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        incoming = _header(scope, b"x-request-id")
        request_id = incoming if incoming and _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        state = RequestState(request_id=request_id, started=started)
        attach(scope, state)
        status = 500
        counted = False

        def count_rejection() -> None:
            """Every rejection is counted here, once (llm_rejections_total)."""
            nonlocal counted
            if state.rejection is not None and not counted:
                counted = True
                self.metrics.rejections.labels(reason=state.rejection).inc()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            count_rejection()  # before the client can read the answer
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", ()),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            count_rejection()  # refused, but nothing was sent (the client went away)
            if state.client_gone:
                status = CLIENT_CLOSED
            duration = time.perf_counter() - started
            path = scope.get("path", "")
            if path in COUNTED_ENDPOINTS:
                self.metrics.requests.labels(endpoint=path, status=str(status)).inc()
                self.metrics.request_duration.labels(endpoint=path).observe(duration)
            fields: dict[str, Any] = {
                "request_id": request_id,
                "method": scope.get("method"),
                "path": path,
                "status": status,
                "duration_ms": round(duration * 1000, 1),
            }
            fields.update(state.log_fields())
            level = logging.INFO if path in COUNTED_ENDPOINTS else logging.DEBUG
            access_log.log(level, "request", extra=fields)


class ApiKeyMiddleware:
    """Bearer keys for /generate and /v1/*; compared in constant time against every key."""

    def __init__(self, app: ASGIApp, keys: list[str]) -> None:
        self.app = app
        self.keys = [key.encode() for key in keys]

    def _authorized(self, scope: Scope) -> bool:
        header = _header(scope, b"authorization") or ""
        scheme, _, token = header.partition(" ")
        presented = token.strip().encode() if scheme.lower() == "bearer" else b""
        matched = False
        for key in self.keys:  # no early exit: the time does not tell which key matched
            matched |= secrets.compare_digest(presented, key)
        return matched and bool(presented)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and self.keys
            and scope.get("path", "").startswith(PROTECTED_PREFIXES)
            and not self._authorized(scope)
        ):
            await send_error(send, scope, errors.unauthorized())
            return
        await self.app(scope, receive, send)


class OverloadMiddleware:
    """Answers 503 + Retry-After at once when the queue is full, before the body is read.

    Under a burst, the refusals are most of the requests: this path skips reading and
    validating the body, routing and the exception handlers. The route still checks (under
    the engine's lock) when it submits, so a queue that fills meanwhile is refused there.
    """

    def __init__(self, app: ASGIApp, state: State) -> None:
        self.app = app
        self.state = state  # the app's state: the engine is created by the lifespan

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope.get("method") == "POST"
            and scope.get("path") in GENERATING_ENDPOINTS
        ):
            engine = getattr(self.state, "engine", None)
            if engine is not None and engine.is_full():
                deadline = engine.settings.request_timeout_seconds
                retry_after = queue_retry_after(engine, deadline)
                await send_error(send, scope, errors.queue_full(retry_after))
                return
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """Reads the body up front (at most `max_bytes`), answers 413 beyond, then replays it."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await send_error(send, scope, errors.too_large(self.max_bytes))
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                request_state(scope).client_gone = True
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await send_error(send, scope, errors.too_large(self.max_bytes))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
