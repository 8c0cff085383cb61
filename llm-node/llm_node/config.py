"""Settings, read from LLM_* environment variables (pydantic-settings)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class Settings(BaseSettings):
    """Every knob of the service; `LLM_<NAME>` in the environment overrides the default."""

    model_config = SettingsConfigDict(env_prefix="LLM_", extra="ignore", frozen=True)

    model_path: Path = Path("/models/model.gguf")
    model_name: str = ""
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    n_threads: int = Field(default_factory=_cpu_count, ge=1)
    n_ctx: int = Field(default=2048, ge=64)
    # Prompt tokens per evaluation. 16 rather than gpt4all's 8: with 8, on a 2-core host, a third
    # to a half of the requests had a prompt evaluation ~12-25 ms slower (the worker thread sat
    # in the run queue while gpt4all's per-evaluation helper thread ran on the same CPU), raw
    # gpt4all too; with 16 that stall was gone and prompts were evaluated faster.
    # Kept at 16 for Llama 3 8B (8B-shaped stand-in, 2-core build machine, 2 threads, 2026-12):
    # prompt evaluation runs at 6.2 tokens/s with 16 and 6.8 with 128, 10 % faster (a fresh
    # 1,000-token prompt: 161 s vs 147 s). But one batch is the unit of everything that waits
    # for the worker: a cancel or the deadline is noticed between batches (16 / 6.2 = 2.6 s
    # at 16, 128 / 6.8 = 19 s at 128), a request that arrives during the prompt cache's refill
    # waits for the current batch, and the cache's cut gives back up to n_batch tokens that
    # every later turn evaluates again (up to 19 s per turn at 128, 2.6 s at 16).
    n_batch: int = Field(default=16, ge=1, le=4096)
    # Keep the KV cache of the previous prompt and evaluate only what a new prompt adds (exact:
    # the output is the same as without it). Off on a shared deployment whose users must not
    # learn from response times what others asked (see the README's "Prompt cache").
    prompt_cache: bool = True
    # After an answer, when no request waits, evaluate the reply in batches so that the next
    # turn reuses it too (abandoned at the next token when a request arrives).
    prompt_cache_refill: bool = True
    # Memory for saved model states, so that several conversations (users, a client's side
    # requests) each keep their prefix: after each call the context's state is copied out,
    # and a request whose prompt continues a saved one restores it and evaluates only the rest
    # (least recently used out first; 0 = only the live context, as before). A state costs
    # per token what the KV cache does: 128 KiB at Llama 3 8B's shape (32 layers x K and V x
    # 1,024 x 2 bytes), about 24 KB on the tiny model. 512 MiB hold 4,096 tokens at 8B (four
    # 1,000-token conversations) and about 22,000 on the tiny model. It is memory on top of the
    # README's budget: at n_ctx 8,192 a cx33 has only ~70 MiB to spare, so lower it there (or
    # the context to 4,096, which leaves ~580 MiB); see the README's "Prompt cache".
    prompt_cache_mib: int = Field(default=512, ge=0)
    # Requests that may wait behind the running one. At 8B size (above) a typical job (a chat
    # turn: ~100 new prompt tokens at 6.2 tokens/s plus the default 256 new tokens at 3.1) is
    # about 100 s, so the 4th waiting job finishes after about 5 x 100 s = 500 s, within the
    # 600 s deadline; an 8-deep queue (900 s) could not drain in time. The engine also refuses
    # at once whenever the queue's expected wait already reaches the deadline.
    queue_size: int = Field(default=4, ge=0)
    # Added to the generation threads' nice value (Linux: per thread), so the API's event loop
    # wins the CPU over generation; 0 = the same priority as the API.
    worker_nice: int = Field(default=10, ge=0, le=19)
    # Queue wait plus generation. 600 s so that every request within the limits can finish at
    # 8B speed: max_tokens_limit (1024) at 3.1 tokens/s is 330 s, plus a fresh 1,000-token
    # prompt at 6.2 tokens/s, 161 s: 491 s. A request that cannot finish at the node's
    # measured rates is refused before evaluation (llm_node.admission).
    request_timeout_seconds: float = Field(default=600.0, gt=0)
    max_tokens_limit: int = Field(default=1024, ge=1)
    default_max_tokens: int = Field(default=256, ge=1)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    api_keys: str = ""
    cors_origins: str = ""
    log_prompts: bool = False
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @property
    def served_model_name(self) -> str:
        """The id shown in /v1/models and in responses: LLM_MODEL_NAME or the file's stem."""
        return self.model_name or self.model_path.stem

    @property
    def api_key_list(self) -> list[str]:
        """The bearer keys (LLM_API_KEYS, comma-separated); empty means authentication is off."""
        return [key.strip() for key in self.api_keys.split(",") if key.strip()]

    @property
    def cors_origin_list(self) -> list[str]:
        """Browser origins allowed to call the API (LLM_CORS_ORIGINS, comma-separated); empty
        means CORS is off: browsers on other origins cannot read the answers."""
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]

    @property
    def effective_default_max_tokens(self) -> int:
        return min(self.default_max_tokens, self.max_tokens_limit)
