"""Pure ASGI middleware (they must not buffer streams or hide client disconnects).

Order, outermost first: AccessLog (request id, JSON log line, request metrics) -> ApiKeys
(bearer keys, checked before the body is read) -> Overload (503 while the queue is full, before
the body is read) -> BodyLimit (413 before the JSON is parsed).
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

from llm_node.api.errors import error_payload
from llm_node.metrics import Metrics

access_log = logging.getLogger("llm_node.access")

# Only the API routes are counted in llm_requests_total (not /health, /ready or /metrics), and
# unknown paths are not used as label values so a scanner cannot blow up the series count.
COUNTED_ENDPOINTS = frozenset(
    {"/generate", "/v1/chat/completions", "/v1/completions", "/v1/models"}
)
PROTECTED_PREFIXES = ("/generate", "/v1/")
GENERATING_ENDPOINTS = frozenset({"/generate", "/v1/chat/completions", "/v1/completions"})
RETRY_AFTER_SECONDS = "1"
QUEUE_FULL_MESSAGE = "the server is busy: every queue slot is taken, retry shortly"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
CLIENT_CLOSED = 499  # nginx's status for "client closed the request": used in logs and metrics


async def send_json(send: Send, status: int, body: dict[str, Any], headers: list[Any]) -> None:
    raw = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
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
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["started"] = started
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
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
            if state.get("client_gone"):
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
            fields.update(state.get("log_fields", {}))
            level = logging.INFO if path in COUNTED_ENDPOINTS else logging.DEBUG
            access_log.log(level, "request", extra=fields)


class ApiKeyMiddleware:
    """Bearer keys for /generate and /v1/*; compared in constant time against every key."""

    def __init__(self, app: ASGIApp, keys: list[str], metrics: Metrics) -> None:
        self.app = app
        self.keys = [key.encode() for key in keys]
        self.metrics = metrics

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
            self.metrics.rejections.labels(reason="unauthorized").inc()
            await send_json(
                send,
                401,
                error_payload(401, "missing or invalid API key", "invalid_api_key"),
                [(b"www-authenticate", b"Bearer")],
            )
            return
        await self.app(scope, receive, send)


class OverloadMiddleware:
    """Answers 503 + Retry-After at once when the queue is full, before the body is read.

    Under a burst, the refusals are most of the requests: this path skips reading and
    validating the body, routing and the exception handlers. The route still checks (under
    the engine's lock) when it submits, so a queue that fills meanwhile is refused there.
    """

    def __init__(self, app: ASGIApp, state: State, metrics: Metrics) -> None:
        self.app = app
        self.state = state  # the app's state: the engine is created by the lifespan
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope.get("method") == "POST"
            and scope.get("path") in GENERATING_ENDPOINTS
        ):
            engine = getattr(self.state, "engine", None)
            if engine is not None and engine.is_full():
                await reject_queue_full(send, self.metrics)
                return
        await self.app(scope, receive, send)


async def reject_queue_full(send: Send, metrics: Metrics) -> None:
    metrics.rejections.labels(reason="queue_full").inc()
    await send_json(
        send,
        503,
        error_payload(503, QUEUE_FULL_MESSAGE, "queue_full"),
        [(b"retry-after", RETRY_AFTER_SECONDS.encode())],
    )


class BodyLimitMiddleware:
    """Reads the body up front (at most `max_bytes`), answers 413 beyond, then replays it."""

    def __init__(self, app: ASGIApp, max_bytes: int, metrics: Metrics) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.metrics = metrics

    async def _reject(self, send: Send) -> None:
        self.metrics.rejections.labels(reason="too_large").inc()
        message = f"the request body is larger than {self.max_bytes} bytes"
        await send_json(send, 413, error_payload(413, message, "request_too_large"), [])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                scope.setdefault("state", {})["client_gone"] = True
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._reject(send)
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
