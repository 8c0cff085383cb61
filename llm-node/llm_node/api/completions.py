"""One flow for OpenAI's chat and text completions: answer whole, or stream as SSE chunks.

The two endpoints differ only in the shape of their objects (`ChatShape`, `TextShape`).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi.responses import JSONResponse, Response, StreamingResponse

from llm_node.api.driver import ClientGone, Generation
from llm_node.api.errors import APIError, client_gone_response
from llm_node.engine import Delta, Event, Finished, SamplingParams

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def usage(finished: Finished) -> dict[str, Any]:
    return {
        "prompt_tokens": finished.prompt_tokens,
        "completion_tokens": finished.completion_tokens,
        "total_tokens": finished.prompt_tokens + finished.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": finished.cached_tokens},
    }


def sse(payload: dict[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {data}\n\n".encode()


class TextShape:
    """/v1/completions: `text_completion` objects with `text` choices."""

    id_prefix = "cmpl"
    object_name = "text_completion"
    chunk_object = "text_completion"

    def __init__(self, model: str) -> None:
        self.id = f"{self.id_prefix}-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model

    def _envelope(self, object_name: str) -> dict[str, Any]:
        return {"id": self.id, "object": object_name, "created": self.created, "model": self.model}

    def choice(self, text: str, finish: str | None) -> dict[str, Any]:
        return {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}

    def delta_choice(self, text: str | None, finish: str | None) -> dict[str, Any]:
        return self.choice(text or "", finish)

    def whole(self, text: str, finished: Finished) -> dict[str, Any]:
        return {
            **self._envelope(self.object_name),
            "choices": [self.choice(text, finished.finish_reason)],
            "usage": usage(finished),
        }

    def chunk(self, text: str | None, finish: str | None) -> dict[str, Any]:
        return {**self._envelope(self.chunk_object), "choices": [self.delta_choice(text, finish)]}

    def usage_chunk(self, finished: Finished) -> dict[str, Any]:
        return {**self._envelope(self.chunk_object), "choices": [], "usage": usage(finished)}


class ChatShape(TextShape):
    """/v1/chat/completions: `chat.completion` objects; the first delta carries the role."""

    id_prefix = "chatcmpl"
    object_name = "chat.completion"
    chunk_object = "chat.completion.chunk"

    def __init__(self, model: str) -> None:
        super().__init__(model)
        self.role_sent = False

    def choice(self, text: str, finish: str | None) -> dict[str, Any]:
        message = {"role": "assistant", "content": text}
        return {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}

    def delta_choice(self, text: str | None, finish: str | None) -> dict[str, Any]:
        delta: dict[str, Any] = {} if text is None else {"content": text}
        if not self.role_sent:
            delta["role"] = "assistant"
            delta.setdefault("content", "")
            self.role_sent = True
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}


def _stream_error(gen: Generation, err: APIError) -> bytes:
    """The status line is already sent: the error goes in the stream, then `[DONE]`."""
    if err.reason is not None:
        gen.state.reject(err.reason)
    return sse({"error": {"message": err.message, "type": err.type, "code": err.code}})


async def stream_events(
    gen: Generation, first: Event, shape: TextShape, include_usage: bool
) -> AsyncIterator[bytes]:
    """SSE body: one chunk per piece of text, a final chunk with finish_reason, `[DONE]`."""
    try:
        event = first
        while True:
            if isinstance(event, Delta):
                yield sse(shape.chunk(event.text, None))
            elif isinstance(event, Finished):
                yield sse(shape.chunk(None, event.finish_reason))
                if include_usage:
                    yield sse(shape.usage_chunk(event))
                break
            else:
                yield _stream_error(gen, gen.failure_error(event))
                break
            event = await gen.next_event()
        yield sse("[DONE]")
    except ClientGone:
        return
    except APIError as err:  # the deadline, while streaming
        yield _stream_error(gen, err)
        yield sse("[DONE]")
    finally:
        gen.close()


async def complete(
    gen: Generation,
    shape: TextShape,
    prompt: str,
    params: SamplingParams,
    *,
    special: bool,
    stream: bool,
    include_usage: bool,
) -> Response:
    """Submit, then answer the whole completion or stream it (the stream closes the job)."""
    streaming = False
    try:
        gen.submit(prompt, params, special=special)
        if not stream:
            text, finished = await gen.collect()
            return JSONResponse(shape.whole(text, finished))
        first = await gen.first_event()
        streaming = True
        return StreamingResponse(
            stream_events(gen, first, shape, include_usage),
            media_type="text/event-stream",
            headers=SSE_HEADERS,
        )
    except ClientGone:
        return client_gone_response()
    finally:
        if not streaming:
            gen.close()
