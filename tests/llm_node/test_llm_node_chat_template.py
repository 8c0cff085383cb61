"""Chat templates: the one in the tiny model's GGUF, a Llama 3 template, the ChatML fallback."""

from __future__ import annotations

from pathlib import Path

import pytest
from llm_node.chat_template import CHATML_TEMPLATE, ChatFormat, TemplateError, load_chat_format
from llm_node.stop_filter import StopFilter

# Meta-Llama-3-8B-Instruct's tokenizer.chat_template, verbatim.
LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}"
)
TURNS = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
]


@pytest.fixture(scope="module")
def tiny_format(tiny_model: Path) -> ChatFormat:
    return load_chat_format(tiny_model)


def test_tiny_model_template_comes_from_the_gguf(tiny_format: ChatFormat) -> None:
    assert tiny_format.source == "gguf"


def test_tiny_model_renders_chatml(tiny_format: ChatFormat) -> None:
    assert tiny_format.render(TURNS) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_tiny_model_template_adds_its_default_system_prompt(tiny_format: ChatFormat) -> None:
    assert tiny_format.render(TURNS[1:]).startswith("<|im_start|>system\nYou are a helpful AI")


def test_tiny_model_stops_on_im_end(tiny_format: ChatFormat) -> None:
    assert (2 in tiny_format.stop_token_ids, "<|im_end|>" in tiny_format.stop_texts) == (True, True)


def llama3(engine_adds_bos: bool) -> ChatFormat:
    return ChatFormat(
        template=LLAMA3,
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>",
        engine_adds_bos=engine_adds_bos,
        source="gguf",
    )


def test_llama3_template_renders_header_format() -> None:
    assert llama3(False).render(TURNS) == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )


def test_bos_is_not_doubled_when_the_engine_adds_it() -> None:
    assert llama3(True).render(TURNS).startswith("<|start_header_id|>system")


def test_chatml_fallback_renders() -> None:
    assert (
        ChatFormat().render(TURNS[1:]) == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )


def test_fallback_is_chatml() -> None:
    assert ChatFormat().template == CHATML_TEMPLATE


def test_raise_exception_becomes_template_error() -> None:
    strict = ChatFormat(
        template="{% if messages[0]['role'] != 'user' %}"
        "{{ raise_exception('Conversation roles must alternate') }}{% endif %}"
    )
    with pytest.raises(TemplateError, match="roles must alternate"):
        strict.render(TURNS)


def test_template_runs_in_a_sandbox() -> None:
    hostile = ChatFormat(template="{{ ''.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(TemplateError):
        hostile.render(TURNS)


def test_template_cannot_mutate_messages() -> None:
    mutating = ChatFormat(template="{{ messages.append({'role': 'x'}) }}")
    with pytest.raises(TemplateError):
        mutating.render(TURNS)


def test_invalid_template_syntax_is_a_template_error() -> None:
    with pytest.raises(TemplateError):
        ChatFormat(template="{% for %}").render(TURNS)


@pytest.mark.parametrize(
    ("pieces", "stops", "expected"),
    [
        (["Hello", " wor", "ld"], (), ("Hello world", False)),
        (["Hello", " ST", "OP", " more"], ("STOP",), ("Hello ", True)),
        (["a", "b", "<", "|"], ("<|end|>",), ("ab", False)),  # held back: may start a stop
        (["x", "S", "T", "y"], ("STOP",), ("xSTy", False)),  # released once it cannot match
        (["one\n\n", "two"], ("\n\n",), ("one", True)),
    ],
)
def test_stop_filter(pieces: list[str], stops: tuple[str, ...], expected: tuple[str, bool]) -> None:
    stop_filter = StopFilter(stops)
    emitted, stopped = "", False
    for piece in pieces:
        text, stopped = stop_filter.feed(piece)
        emitted += text
        if stopped:
            break
    assert (emitted, stopped) == expected
