"""Chat formatting with the template embedded in the GGUF file, as llama.cpp and Hugging Face do.

The template (`tokenizer.chat_template`) is a Jinja2 program shipped by the model's authors. It is
rendered in an immutable sandbox (a model file is data, not trusted code) with the same variables
as Hugging Face's `apply_chat_template`: `messages`, `add_generation_prompt=True`, `bos_token`,
`eos_token` and the helper `raise_exception`. A file without a template gets ChatML, the format
of most small instruct models (`<|im_start|>role\\ncontent<|im_end|>\\n`).
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

log = logging.getLogger(__name__)

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Tokens that end an assistant turn in the common chat formats (llama.cpp treats the same texts
# as end-of-generation). Only the ones present in the model's vocabulary are used.
END_OF_TURN_TEXTS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>")


class TemplateError(ValueError):
    """The messages cannot be rendered by the model's template (e.g. roles must alternate)."""


@dataclass(frozen=True)
class ChatFormat:
    """What the engine needs to turn messages into a prompt and to know where a turn ends."""

    template: str = CHATML_TEMPLATE
    bos_token: str = ""
    eos_token: str = ""
    # The engine adds BOS itself when the vocabulary asks for it; a template that also writes
    # bos_token would then double it, so the rendered copy is dropped (as llama.cpp warns).
    engine_adds_bos: bool = False
    stop_token_ids: frozenset[int] = frozenset()
    stop_texts: tuple[str, ...] = ("<|im_end|>",)
    source: str = "fallback-chatml"
    _compiled: list[jinja2.Template] = field(default_factory=list, compare=False, repr=False)

    def render(self, messages: list[dict[str, str]]) -> str:
        """Render `messages` (role/content dicts) followed by the assistant's generation prompt."""
        if not self._compiled:
            self._compiled.append(compile_template(self.template))
        try:
            text = self._compiled[0].render(
                messages=messages,
                add_generation_prompt=True,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
            )
        except TemplateError:
            raise
        except jinja2.TemplateError as exc:
            raise TemplateError(f"the model's chat template failed: {exc}") from exc
        if self.engine_adds_bos and self.bos_token and text.startswith(self.bos_token):
            text = text[len(self.bos_token) :]
        return text


def _raise_exception(message: str) -> NoReturn:
    raise TemplateError(message)


def _strftime_now(fmt: str) -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime(fmt)


def compile_template(source: str) -> jinja2.Template:
    """Compile a chat template in a sandbox with Hugging Face's environment options."""
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[jinja2.ext.loopcontrols],
        undefined=jinja2.Undefined,
    )
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    try:
        return env.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"invalid chat template: {exc}") from exc


def _field(reader: Any, key: str) -> Any:
    found = reader.fields.get(key)
    return None if found is None else found.contents()


def load_chat_format(path: Path) -> ChatFormat:
    """Read the chat template and special tokens from a GGUF file's metadata (`gguf` package)."""
    from gguf import GGUFReader  # imported lazily: it pulls in numpy

    reader = GGUFReader(str(path), "r")
    tokens = reader.fields.get("tokenizer.ggml.tokens")

    def token_text(token_id: Any) -> str:
        if tokens is None or not isinstance(token_id, int) or token_id < 0:
            return ""
        if token_id >= len(tokens.data):
            return ""
        return str(tokens.contents(token_id))

    bos_id = _field(reader, "tokenizer.ggml.bos_token_id")
    eos_id = _field(reader, "tokenizer.ggml.eos_token_id")
    eot_id = _field(reader, "tokenizer.ggml.eot_token_id")
    tokenizer_model = _field(reader, "tokenizer.ggml.model")
    add_bos = _field(reader, "tokenizer.ggml.add_bos_token")
    if add_bos is None:  # llama.cpp's default: SentencePiece vocabularies add BOS, BPE ones not
        add_bos = tokenizer_model == "llama"
    stop_ids = {i for i in (eos_id, eot_id) if isinstance(i, int) and i >= 0}
    stop_texts = {token_text(i) for i in stop_ids} - {""}
    # Look the usual end-of-turn markers up by text: files converted before llama.cpp learnt
    # `eot_token_id` mark only `eos`, and Llama 3's <|eot_id|> is not always that one.
    if tokens is not None:
        wanted = set(END_OF_TURN_TEXTS)
        for index in _special_token_indices(reader):
            text = token_text(index)
            if text in wanted:
                stop_ids.add(index)
                stop_texts.add(text)

    template = _field(reader, "tokenizer.chat_template")
    fmt = ChatFormat(
        bos_token=token_text(bos_id),
        eos_token=token_text(eos_id),
        engine_adds_bos=bool(add_bos),
        stop_token_ids=frozenset(stop_ids),
        stop_texts=tuple(sorted(stop_texts)),
    )
    if isinstance(template, str) and template.strip():
        compile_template(template)  # fail at start-up, not on the first request
        return ChatFormat(
            **{**fmt.__dict__, "template": template, "source": "gguf", "_compiled": []}
        )
    log.warning(
        "model file %s has no tokenizer.chat_template: using the ChatML fallback", path.name
    )
    return ChatFormat(
        **{
            **fmt.__dict__,
            "stop_texts": tuple(sorted({*fmt.stop_texts, "<|im_end|>"})),
            "_compiled": [],
        }
    )


def _special_token_indices(reader: Any) -> list[int]:
    """Indices of control/user-defined tokens (token types 3 and 4), or all if types are absent."""
    types = reader.fields.get("tokenizer.ggml.token_type")
    if types is None:
        return []
    values = types.contents()
    return [i for i, kind in enumerate(values) if kind in (3, 4)]
