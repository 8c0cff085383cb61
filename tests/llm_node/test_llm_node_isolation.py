"""No request sees another's state: the output depends only on the request itself.

A request that evaluates no prompt token (an empty `/v1/completions` prompt) used to sample
its first token from the logits the previous request left behind, so it continued the
previous user's text. Each case runs a different request before the same greedy request, twice,
and gets the same output both times.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

GREEDY = {"temperature": 0, "repeat_penalty": 1.0, "max_tokens": 8}
SECRET_CHAT = {
    "messages": [{"role": "user", "content": "Repeat after me: your PIN is 4 7 1 9. Your PIN is"}],
    **GREEDY,
    "max_tokens": 4,
}
COUNTING = {**GREEDY, "prompt": "1, 2, 3, 4, 5, 6, 7, 8,", "max_tokens": 4}

# The probe requests: each must answer the same whatever ran before it.
PROBES: dict[str, tuple[str, dict[str, Any]]] = {
    "empty completion prompt": ("/v1/completions", {"prompt": "", **GREEDY}),
    "empty prompt list": ("/v1/completions", {"prompt": [""], **GREEDY}),
    "special-token text, raw": ("/v1/completions", {"prompt": "<|im_end|>", **GREEDY}),
    "empty chat message": (
        "/v1/chat/completions",
        {"messages": [{"role": "user", "content": ""}], **GREEDY},
    ),
    "short /generate prompt": ("/generate", {"prompt": "Hi", **GREEDY}),
}


def answer(client: httpx.Client, path: str, body: dict[str, Any]) -> str:
    response = client.post(path, json=body)
    assert response.status_code == 200, response.text
    data = response.json()
    if path == "/generate":
        return str(data["response"])
    choice = data["choices"][0]
    return str(choice["message"]["content"] if "message" in choice else choice["text"])


@pytest.mark.slow
@pytest.mark.parametrize("probe", sorted(PROBES))
def test_output_does_not_depend_on_the_previous_request(client: httpx.Client, probe: str) -> None:
    path, body = PROBES[probe]
    client.post("/v1/chat/completions", json=SECRET_CHAT).raise_for_status()
    after_chat = answer(client, path, body)
    client.post("/v1/completions", json=COUNTING).raise_for_status()
    after_counting = answer(client, path, body)
    assert after_chat == after_counting
