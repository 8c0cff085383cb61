"""Chat templates: the ones in the tiny model's and the Llama 3 stand-in's GGUF files, a Llama 3
template, the ChatML fallback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from llm_node.chat_template import CHATML_TEMPLATE, ChatFormat, TemplateError, load_chat_format
from llm_node.stop_filter import StopFilter
from llm_node.tokenizer import Tokenizer

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


@pytest.fixture(scope="module")
def llama3_format(llama3_model: Path) -> ChatFormat:
    return load_chat_format(llama3_model)


@pytest.fixture(scope="module", params=["tiny", "llama3"])
def gguf_format(request: pytest.FixtureRequest) -> tuple[str, ChatFormat]:
    """(model name, the chat format read from its GGUF file), for each test model."""
    return request.param, request.getfixturevalue(f"{request.param}_format")


# What the engine evaluates for TURNS: the template's rendering, after the BOS token the engine
# adds itself when the vocabulary asks for it. The Llama 3 stand-in carries Llama 3's real
# template, special tokens and add_bos_token flag.
PROMPTS = {
    "tiny": (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n"
    ),
    "llama3": (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    ),
}
# The token that ends the assistant's turn: (id, text).
END_OF_TURN = {"tiny": (2, "<|im_end|>"), "llama3": (128009, "<|eot_id|>")}


def test_template_comes_from_the_gguf(gguf_format: tuple[str, ChatFormat]) -> None:
    assert gguf_format[1].source == "gguf"


def test_gguf_template_renders_the_model_format(gguf_format: tuple[str, ChatFormat]) -> None:
    name, fmt = gguf_format
    bos = fmt.bos_token if fmt.engine_adds_bos else ""
    assert bos + fmt.render(TURNS) == PROMPTS[name]


def test_tiny_model_template_adds_its_default_system_prompt(tiny_format: ChatFormat) -> None:
    assert tiny_format.render(TURNS[1:]).startswith("<|im_start|>system\nYou are a helpful AI")


def test_gguf_format_stops_on_the_end_of_turn_token(gguf_format: tuple[str, ChatFormat]) -> None:
    name, fmt = gguf_format
    token, text = END_OF_TURN[name]
    assert (token in fmt.stop_token_ids, text in fmt.stop_texts) == (True, True)


@pytest.fixture(scope="module")
def llama3_tokenizer(llama3_model: Path) -> Iterator[Tokenizer]:
    with Tokenizer(llama3_model) as tokenizer:
        yield tokenizer


def test_llama3_standin_starts_with_one_bos(
    llama3_format: ChatFormat, llama3_tokenizer: Tokenizer
) -> None:
    # The template writes bos_token and the engine adds BOS too: the prompt has it once.
    tokens = llama3_tokenizer.tokenize(llama3_format.render(TURNS).encode(), special=True)
    assert (tokens[:2], tokens.count(128000)) == ([128000, 128006], 1)


@pytest.mark.parametrize(
    ("text", "special", "tokens"),
    [
        ("<|start_header_id|>", True, [128000, 128006]),
        ("<|end_header_id|>", True, [128000, 128007]),
        ("<|eot_id|>", True, [128000, 128009]),
        ("Hello world", True, [128000, 9906, 1917]),
        ("user<|end_header_id|>\n\n", True, [128000, 882, 128007, 271]),
    ],
    ids=["start_header", "end_header", "eot", "words", "header"],
)
def test_llama3_standin_tokenizes_as_llama3(
    llama3_tokenizer: Tokenizer, text: str, special: bool, tokens: list[int]
) -> None:
    assert llama3_tokenizer.tokenize(text.encode(), special=special) == tokens


def test_llama3_special_tokens_are_text_without_special_parsing(
    llama3_tokenizer: Tokenizer,
) -> None:
    tokens = llama3_tokenizer.tokenize(b"<|start_header_id|>", special=False)
    special = llama3_tokenizer.is_special(128006), llama3_tokenizer.is_special(9906)
    assert (len(tokens) > 3, 128006 in tokens, special) == (True, False, (True, False))


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
