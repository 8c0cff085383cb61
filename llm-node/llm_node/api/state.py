"""What one request tells the access-log middleware: a typed object, created by that middleware.

Routes and inner middleware fill it in (the client went away, a rejection reason, token
counts for the log line); the access-log middleware counts the rejection and writes the line.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from starlette.types import Scope

_SCOPE_KEY = "llm_node.request_state"


@dataclass
class RequestState:
    request_id: str = ""
    started: float = field(default_factory=time.perf_counter)
    client_gone: bool = False
    # A llm_rejections_total reason: counted once, by the access-log middleware.
    rejection: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    finish_reason: str | None = None
    prompt: str | None = None  # only with LLM_LOG_PROMPTS
    completion: str | None = None  # only with LLM_LOG_PROMPTS

    def reject(self, reason: str) -> None:
        self.rejection = reason

    def log_fields(self) -> dict[str, Any]:
        """The fields this request adds to its log line (those that were set)."""
        fields = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cached_tokens": self.cached_tokens,
            "finish_reason": self.finish_reason,
            "rejection": self.rejection,
            "prompt": self.prompt,
            "completion": self.completion,
        }
        return {key: value for key, value in fields.items() if value is not None}


def attach(scope: Scope, state: RequestState) -> None:
    scope[_SCOPE_KEY] = state


def request_state(scope: Scope) -> RequestState:
    """This request's state; a detached one if the access-log middleware is not in the stack."""
    state = scope.get(_SCOPE_KEY)
    if not isinstance(state, RequestState):
        state = RequestState()
        scope[_SCOPE_KEY] = state
    return state
