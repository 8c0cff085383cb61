"""Request bodies of the API (validated strictly: "10" is not a number, "yes" is not a bool).

OpenAI parameters that gpt4all cannot honour are either rejected with a 422 (`n` > 1,
`logprobs`, `tools`, `logit_bias`, non-text `response_format`, image content, `echo`, `suffix`,
`best_of`) or accepted and ignored (`presence_penalty`, `frequency_penalty`, `seed`, `user`,
`parallel_tool_calls`, `metadata`, `store`, `service_tier`), and so is any unknown field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Role = Literal["system", "developer", "user", "assistant"]
StopText = Annotated[str, Field(min_length=1, max_length=200)]


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class TextPart(_Body):
    type: Literal["text"]
    text: str


class ChatMessage(_Body):
    role: Role
    content: str | list[TextPart]
    name: str | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(_Body):
    include_usage: bool = False


class Sampling(_Body):
    """Generation parameters shared by every endpoint (defaults as llama.cpp's server)."""

    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=0.8, ge=0.0, le=2.0)
    top_p: float = Field(default=0.95, gt=0.0, le=1.0)
    top_k: int = Field(default=40, ge=1, le=1000)
    repeat_penalty: float = Field(default=1.1, ge=0.5, le=2.0)
    repeat_last_n: int = Field(default=64, ge=0, le=4096)
    stop: StopText | Annotated[list[StopText], Field(max_length=4)] | None = None
    # Accepted for compatibility, ignored: gpt4all 2.8.2 has no such samplers or seed control.
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    seed: int | None = None
    user: str | None = None

    def stop_list(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class _OpenAIBody(Sampling):
    model: str | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: Literal[1] = 1
    logprobs: Literal[False] | None = None
    top_logprobs: None = None
    logit_bias: dict[str, Any] | None = None

    @field_validator("logit_bias")
    @classmethod
    def _no_logit_bias(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value:
            raise ValueError("logit_bias is not supported by this server")
        return value


class ChatCompletionRequest(_OpenAIBody):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    tools: Annotated[list[Any], Field(max_length=0)] | None = None
    tool_choice: Literal["none"] | None = None
    functions: Annotated[list[Any], Field(max_length=0)] | None = None
    function_call: Literal["none"] | None = None
    response_format: dict[str, Any] | None = None

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
    prompt: str | Annotated[list[str], Field(min_length=1, max_length=1)]
    echo: Literal[False] = False
    suffix: None = None
    best_of: Literal[1] | None = None

    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


class GenerateRequest(Sampling):
    """The simple API: the prompt is sent as one user message through the chat template."""

    prompt: str = Field(min_length=1)
    system: str | None = None
