"""Errors in OpenAI's shape: {"error": {"message", "type", "code", "param"}}; never a traceback.

Every error answer of the API is built here, including the ones the middleware sends before
routing (401, 413, the fast 503) and the 499 of a client that went away.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from llm_node.api.retry_after import NOT_READY_SECONDS
from llm_node.api.state import request_state
from llm_node.generation import RESERVED_TOKENS as PROMPT_RESERVED_TOKENS

log = logging.getLogger(__name__)

CLIENT_CLOSED = 499  # nginx's status for "client closed the request": used in logs and metrics

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    500: "server_error",
    503: "service_unavailable",
    504: "timeout",
}


class APIError(Exception):
    """An error answer. `reason` (a llm_rejections_total label) counts it as a rejection."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str,
        *,
        param: str | None = None,
        reason: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.reason = reason
        self.headers = headers or {}

    @property
    def type(self) -> str:
        return _TYPES.get(self.status, "invalid_request_error")

    def payload(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> JSONResponse:
        return JSONResponse(self.payload(), status_code=self.status, headers=self.headers)


# -- the errors of the generating endpoints -----------------------------------------------------
QUEUE_FULL_MESSAGE = "the server is busy: every queue slot is taken, retry shortly"


def queue_full(retry_after: int) -> APIError:
    return APIError(
        503,
        QUEUE_FULL_MESSAGE,
        "queue_full",
        reason="queue_full",
        headers={"Retry-After": str(retry_after)},
    )


def not_ready(reason: str) -> APIError:
    return APIError(
        503,
        f"the model is not ready: {reason}",
        "model_not_ready",
        reason="not_ready",
        headers={"Retry-After": str(NOT_READY_SECONDS)},
    )


def shutting_down(message: str) -> APIError:
    return APIError(503, message, "shutting_down", headers={"Retry-After": str(NOT_READY_SECONDS)})


def deadline(timeout_seconds: float) -> APIError:
    return APIError(
        504, f"the request took longer than {timeout_seconds:g} s", "timeout", reason="deadline"
    )


DEADLINE_SETTING = "LLM_REQUEST_TIMEOUT_SECONDS (llm_node_request_timeout_seconds in Ansible)"


def deadline_unreachable(timeout_seconds: float, estimated_seconds: float, detail: str) -> APIError:
    """Refused before evaluation: even with the whole deadline, the request cannot finish at the
    rates this node measured. The client has to ask for less (or the operator allow more)."""
    return APIError(
        400,
        f"this request cannot finish within the {timeout_seconds:g} s deadline: at this "
        f"server's measured speed, {detail} (estimated {estimated_seconds:.0f} s > "
        f"{timeout_seconds:g} s). Send a shorter prompt or a smaller max_tokens, or raise "
        f"{DEADLINE_SETTING}",
        "deadline_unreachable",
        reason="deadline",
    )


def deadline_unreachable_queued(
    timeout_seconds: float, remaining_seconds: float, detail: str, retry_after: int
) -> APIError:
    """Refused before evaluation: the request fits in the deadline, but its wait in the queue
    left too little of it. The same request succeeds once the queue is shorter."""
    return APIError(
        503,
        f"the server is busy: after waiting in the queue, {remaining_seconds:.0f} s of the "
        f"{timeout_seconds:g} s deadline are left, and at this server's measured speed "
        f"{detail}. Retry when the queue is shorter (Retry-After), or raise {DEADLINE_SETTING}",
        "deadline_unreachable",
        reason="deadline",
        headers={"Retry-After": str(retry_after)},
    )


def unauthorized() -> APIError:
    return APIError(
        401,
        "missing or invalid API key",
        "invalid_api_key",
        reason="unauthorized",
        headers={"WWW-Authenticate": "Bearer"},
    )


def too_large(max_bytes: int) -> APIError:
    return APIError(
        413,
        f"the request body is larger than {max_bytes} bytes",
        "request_too_large",
        reason="too_large",
    )


def client_gone_response() -> Response:
    return Response(status_code=CLIENT_CLOSED)


def context_length(
    n_ctx: int,
    prompt_tokens: int,
    requested_tokens: int,
    backend_message: str,
    param: Literal["messages", "prompt"],
) -> APIError:
    """OpenAI's wording, which litellm and LangChain match to fall back to a larger context."""
    what = "messages" if param == "messages" else "prompt"
    if prompt_tokens > 0 and requested_tokens > 0:
        total = prompt_tokens + requested_tokens
        detail = (
            f"However, you requested {total} tokens ({prompt_tokens} in the {what}, "
            f"{requested_tokens} in the completion)."
        )
    elif prompt_tokens > 0:  # no max_tokens asked for: the prompt alone does not fit
        detail = (
            f"However, your {what} resulted in {prompt_tokens} tokens, and a prompt may use "
            f"at most {n_ctx - PROMPT_RESERVED_TOKENS} (the rest is room to answer)."
        )
    else:  # the backend refused the prompt without telling its size
        reason = backend_message.strip().rstrip(".")
        detail = f"However, your {what} resulted in more tokens than that ({reason})."
    return APIError(
        400,
        f"This model's maximum context length is {n_ctx} tokens. {detail} "
        f"Please reduce the length of the {what} or completion.",
        "context_length_exceeded",
        param=param,
        reason="invalid",
    )


# -- request validation: FastAPI's errors mapped to OpenAI's, in this one place -----------------
_UNION_TAGS = frozenset({"str", "int", "float", "bool", "list", "dict", "none"})


def _is_field(part: int | str) -> bool:
    """Keep field names and list indices; drop pydantic's union member tags (`list[str]`)."""
    return isinstance(part, int) or (part.isidentifier() and part not in _UNION_TAGS)


def from_validation_error(exc: RequestValidationError) -> APIError:
    errors = exc.errors()
    first: dict[str, Any] = dict(errors[0]) if errors else {"msg": "invalid request", "loc": ()}
    loc = tuple(first.get("loc", ()))
    kind = first.get("type")
    if kind == "json_invalid":
        detail = first.get("ctx", {}).get("error", first.get("msg"))
        return APIError(
            400, f"the body is not valid JSON: {detail}", "invalid_json", reason="invalid"
        )
    if loc == ("body",):
        if kind == "missing":
            return APIError(
                400, "the body is empty: send a JSON object", "invalid_json", reason="invalid"
            )
        if isinstance(first.get("input"), bytes):  # a body FastAPI did not parse as JSON
            return APIError(
                415,
                "send the body as JSON, with Content-Type: application/json",
                "unsupported_media_type",
                reason="invalid",
            )
        return APIError(422, "the body must be a JSON object", "invalid_value", reason="invalid")
    param = ".".join(str(part) for part in loc[1:] if _is_field(part)) or None
    message = f"{param}: {first.get('msg')}" if param else str(first.get("msg"))
    return APIError(422, message, "invalid_value", param=param, reason="invalid")


_HTTP_CODES = {400: "invalid_json", 404: "not_found", 405: "method_not_allowed"}


def install_error_handlers(app: FastAPI) -> None:
    async def on_api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, APIError)
        if exc.reason is not None:
            request_state(request.scope).reject(exc.reason)
        return exc.response()

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return await on_api_error(request, from_validation_error(exc))

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        # FastAPI's only 400 is a body it could not decode (e.g. bytes that are not UTF-8).
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        reason = "invalid" if exc.status_code == 400 else None
        error = APIError(
            exc.status_code, str(exc.detail), code, reason=reason, headers=dict(exc.headers or {})
        )
        return await on_api_error(request, error)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error", exc_info=exc)
        return APIError(500, "internal server error", "internal_error").response()

    app.add_exception_handler(APIError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
