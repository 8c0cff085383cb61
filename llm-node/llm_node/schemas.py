"""Request bodies of the API: the handlers take these models, so /openapi.json describes them.

Validated strictly ("10" is not a number, "yes" is not a bool). An explicit `null` for an
optional field means its default, as in OpenAI's API (the openai SDK sends null for `None`).
OpenAI parameters that gpt4all cannot honour are either rejected with a 422 (`n` > 1,
`logprobs`, `tools`, `logit_bias`, non-text `response_format`, image content, `echo`, `suffix`,
`best_of`) or accepted and ignored (`presence_penalty`, `frequency_penalty`, `seed`, `user`,
and any field this server does not know, such as `parallel_tool_calls` or `metadata`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticUseDefault, core_schema

Role = Literal["system", "developer", "user", "assistant"]


def _null_is_default(value: Any, handler: Callable[[Any], Any]) -> Any:
    if value is None:
        raise PydanticUseDefault
    return handler(value)


class _NullIsDefault:
    """`Annotated` marker: an explicit null takes the field's default; the schema says nullable."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.no_info_wrap_validator_function(_null_is_default, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"anyOf": [handler(schema), {"type": "null"}]}


NULL_IS_DEFAULT = _NullIsDefault()
StopText = Annotated[str, Field(min_length=1, max_length=200)]
Stop = StopText | Annotated[list[StopText], Field(max_length=4)]


class _Body(BaseModel):
    # Unknown fields are ignored, as most OpenAI-compatible servers do (OpenAI refuses them).
    model_config = ConfigDict(strict=True, extra="ignore")


class TextPart(_Body):
    type: Literal["text"]
    text: str


class ChatMessage(_Body):
    role: Role
    content: str | list[TextPart] = Field(description="Text, or a list of text parts.")
    name: str | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(_Body):
    include_usage: Annotated[bool, NULL_IS_DEFAULT] = Field(
        default=False, description="Send a last chunk with the token counts."
    )


class Sampling(_Body):
    """Generation parameters shared by every endpoint (defaults as llama.cpp's server)."""

    max_tokens: int | None = Field(
        default=None,
        ge=1,
        description="At most this many tokens (default: LLM_DEFAULT_MAX_TOKENS).",
    )
    temperature: Annotated[float, Field(ge=0.0, le=2.0), NULL_IS_DEFAULT] = Field(
        default=0.8, description="0 = greedy (always the most likely token)."
    )
    top_p: Annotated[float, Field(gt=0.0, le=1.0), NULL_IS_DEFAULT] = 0.95
    top_k: Annotated[int, Field(ge=1, le=1000), NULL_IS_DEFAULT] = 40
    repeat_penalty: Annotated[float, Field(ge=0.5, le=2.0), NULL_IS_DEFAULT] = 1.1
    repeat_last_n: Annotated[int, Field(ge=0, le=4096), NULL_IS_DEFAULT] = 64
    stop: Stop | None = Field(default=None, description="Up to 4 strings that end the answer.")
    # Accepted for compatibility, ignored: gpt4all 2.8.2 has no such samplers or seed control.
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0, description="Ignored.")
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0, description="Ignored.")
    seed: int | None = Field(default=None, description="Ignored.")
    user: str | None = Field(default=None, description="Ignored.")

    def stop_list(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class _OpenAIBody(Sampling):
    model: str | None = Field(default=None, description="Ignored: this server has one model.")
    stream: Annotated[bool, NULL_IS_DEFAULT] = Field(
        default=False, description="Answer with server-sent events."
    )
    stream_options: StreamOptions | None = None
    n: Annotated[Literal[1], NULL_IS_DEFAULT] = Field(default=1, description="Only 1.")
    logprobs: Literal[False] | None = None
    top_logprobs: None = None
    logit_bias: dict[str, Any] | None = Field(default=None, description="Only empty.")

    @field_validator("logit_bias")
    @classmethod
    def _no_logit_bias(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value:
            raise ValueError("logit_bias is not supported by this server")
        return value


class ChatCompletionRequest(_OpenAIBody):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1, description="Same as max_tokens.")
    tools: Annotated[list[Any], Field(max_length=0)] | None = Field(
        default=None, description="Only empty: this server has no tool calling."
    )
    tool_choice: Literal["none"] | None = None
    functions: Annotated[list[Any], Field(max_length=0)] | None = None
    function_call: Literal["none"] | None = None
    response_format: dict[str, Any] | None = Field(
        default=None, description='Only {"type": "text"}.'
    )

    @field_validator("response_format")
    @classmethod
    def _text_only(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and value.get("type") != "text":
            raise ValueError('only {"type": "text"} is supported')
        return value

    @model_validator(mode="after")
    def _one_max(self) -> ChatCompletionRequest:
        if self.max_tokens is None:
            self.max_tokens = self.max_completion_tokens
        return self


class CompletionRequest(_OpenAIBody):
    prompt: str | Annotated[list[str], Field(min_length=1, max_length=1)] = Field(
        description="The text to continue, as is (special tokens are not parsed)."
    )
    echo: Annotated[Literal[False], NULL_IS_DEFAULT] = False
    suffix: None = None
    best_of: Annotated[Literal[1], NULL_IS_DEFAULT] = 1

    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


class GenerateRequest(Sampling):
    """The simple API: the prompt is sent as one user message through the chat template."""

    prompt: str = Field(min_length=1)
    system: str | None = Field(default=None, description="An optional system message.")
