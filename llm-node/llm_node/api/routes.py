"""The generating endpoints; blocking work never runs here (generations go to the worker)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from llm_node.api.completions import ChatShape, TextShape, complete, usage
from llm_node.api.driver import ClientGone, Generation, require_ready
from llm_node.api.errors import APIError, client_gone_response
from llm_node.chat_template import TemplateError
from llm_node.config import Settings
from llm_node.engine import Engine, SamplingParams
from llm_node.schemas import ChatCompletionRequest, CompletionRequest, GenerateRequest, Sampling

router = APIRouter()


def sampling_params(body: Sampling, settings: Settings) -> SamplingParams:
    max_tokens = body.max_tokens
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


def render_chat(request: Request, messages: list[dict[str, str]]) -> str:
    engine: Engine = request.app.state.engine
    require_ready(engine)  # the chat template is read with the model
    try:
        return engine.chat_format.render(messages)
    except TemplateError as exc:
        raise APIError(
            422, str(exc), "invalid_messages", param="messages", reason="invalid"
        ) from None


@router.post("/generate")
async def generate(request: Request, body: GenerateRequest) -> Response:
    """The simple API: {"prompt": "..."} -> {"response": "..."} (chat-formatted)."""
    params = sampling_params(body, request.app.state.settings)
    messages = [{"role": "user", "content": body.prompt}]
    if body.system is not None:
        messages.insert(0, {"role": "system", "content": body.system})
    prompt = render_chat(request, messages)
    gen = Generation(request, "/generate", "prompt")
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
async def chat_completions(request: Request, body: ChatCompletionRequest) -> Response:
    """OpenAI's chat completions: the messages go through the model's chat template."""
    settings: Settings = request.app.state.settings
    params = sampling_params(body, settings)
    messages = [
        {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
        for m in body.messages
    ]
    prompt = render_chat(request, messages)
    return await complete(
        Generation(request, "/v1/chat/completions", "messages"),
        ChatShape(settings.served_model_name),
        prompt,
        params,
        special=True,
        stream=body.stream,
        include_usage=bool(body.stream_options and body.stream_options.include_usage),
    )


@router.post("/v1/completions")
async def completions(request: Request, body: CompletionRequest) -> Response:
    """Raw text completion: the prompt goes to the model as is (special tokens not parsed)."""
    settings: Settings = request.app.state.settings
    return await complete(
        Generation(request, "/v1/completions", "prompt"),
        TextShape(settings.served_model_name),
        body.prompt_text(),
        sampling_params(body, settings),
        special=False,
        stream=body.stream,
        include_usage=bool(body.stream_options and body.stream_options.include_usage),
    )
