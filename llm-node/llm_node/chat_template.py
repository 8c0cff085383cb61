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
from typing import NoReturn

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from llm_node.tokenizer import Tokenizer

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


def load_chat_format(path: Path, tokenizer: Tokenizer | None = None) -> ChatFormat:
    """Read the chat template and special tokens of a GGUF file from its vocabulary as llama.cpp
    loaded it (`tokenizer`, or a vocabulary-only load of `path` when None).

    No tokenizer array is parsed in Python: gguf's GGUFReader took 14.6 s on Llama 3's 128k
    tokens and 280k merges (11-13 s on the 49k-token tiny model, a shared 2-core machine),
    where llama.cpp's own vocabulary load takes a fraction of a second.
    """
    if tokenizer is None:
        with Tokenizer(path) as own:
            return _chat_format(path, own)
    return _chat_format(path, tokenizer)


def _chat_format(path: Path, vocab: Tokenizer) -> ChatFormat:
    n_vocab = vocab.n_vocab

    def token_id(key: str) -> int | None:
        value = vocab.metadata(key)
        try:
            return None if value is None else int(value)
        except ValueError:
            return None

    def token_text(token: int | None) -> str:
        if token is None or not 0 <= token < n_vocab:
            return ""
        return vocab.text(token)

    bos_id = token_id("tokenizer.ggml.bos_token_id")
    eos_id = token_id("tokenizer.ggml.eos_token_id")
    eot_id = token_id("tokenizer.ggml.eot_token_id")
    tokenizer_model = vocab.metadata("tokenizer.ggml.model")
    add_bos = vocab.metadata("tokenizer.ggml.add_bos_token")
    if add_bos is None:  # llama.cpp's default: SentencePiece vocabularies add BOS, BPE ones not
        add_bos = "true" if tokenizer_model == "llama" else "false"
    stop_ids = {i for i in (eos_id, eot_id) if i is not None and i >= 0}
    stop_texts = {token_text(i) for i in stop_ids} - {""}
    # Look the usual end-of-turn markers up by text: files converted before llama.cpp learnt
    # `eot_token_id` mark only `eos`, and Llama 3's <|eot_id|> is not always that one.
    for text in END_OF_TURN_TEXTS:
        index = vocab.special_token_id(text)
        if index is not None:
            stop_ids.add(index)
            stop_texts.add(text)

    template = vocab.metadata("tokenizer.chat_template")
    fmt = ChatFormat(
        bos_token=token_text(bos_id),
        eos_token=token_text(eos_id),
        engine_adds_bos=add_bos == "true",
        stop_token_ids=frozenset(stop_ids),
        stop_texts=tuple(sorted(stop_texts)),
    )
    if template is not None and template.strip():
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
