"""One generation on the loaded gpt4all model, run by the engine's worker thread.

The prompt is tokenized with the model's own tokenizer first, so the whole prompt's length is
checked against the context window before anything is evaluated (gpt4all checks only the text
it is fed), and the prompt cache can keep the tokens the context already holds. Generation goes
through the binding's low-level `llmodel_prompt` with special-token parsing on for chat (the
public `generate()` turns it off, which breaks chat templates); its callbacks run on the worker
thread for every evaluated prompt token and every generated token, count them, and stop the
generation as soon as the request is cancelled, past its deadline, at an end-of-turn token, at
a `stop` string or at `max_tokens`.

With `LLM_PROMPT_CACHE_MIB` > 0 the context's state is copied out after each call
(`llm_node.state_cache`, `llm_node.backend_state`), so a prompt that continues an older
conversation than the last one restores its state and evaluates only the rest.
"""

from __future__ import annotations

import codecs
import ctypes
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from llm_node import backend_state
from llm_node.admission import Rates
from llm_node.backend_state import BackendState, LayoutError
from llm_node.chat_template import ChatFormat
from llm_node.config import Settings
from llm_node.events import Delta, Failed, Finished, FinishReason, SamplingParams
from llm_node.metrics import Metrics
from llm_node.prompt_cache import Plan, PromptCache
from llm_node.state_cache import StateCache
from llm_node.stop_filter import StopFilter
from llm_node.tokenizer import Tokenizer

if TYPE_CHECKING:
    from llm_node.engine import Job

log = logging.getLogger(__name__)

MIB = 1024 * 1024

# gpt4all refuses to evaluate more than n_ctx - 4 prompt tokens at once (llmodel_shared.cpp:161).
RESERVED_TOKENS = 4


class Generator:
    """Owns the tokenizer and the prompt cache of one loaded model; `run` serves one job."""

    def __init__(
        self,
        model: Any,
        tokenizer: Tokenizer,
        chat_format: ChatFormat,
        settings: Settings,
        metrics: Metrics,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.chat_format = chat_format
        self.settings = settings
        self.metrics = metrics
        self.cache = PromptCache(tokenizer, settings.n_batch, enabled=settings.prompt_cache)
        # Saved states of earlier contexts (None: only the live context is reused).
        self.states: StateCache | None = None
        self.backend: BackendState | None = None
        if self.cache.enabled and settings.prompt_cache_mib > 0:
            if backend_state.available():
                self.backend = BackendState(model.model)
                self.states = StateCache(settings.prompt_cache_mib * MIB)
            else:
                log.warning("gpt4all exports no state save/restore: keeping one context only")
        states = self.states
        metrics.prompt_cache_bytes.set_function(lambda: states.bytes if states else 0)
        metrics.prompt_cache_states.set_function(lambda: len(states) if states else 0)
        # This node's prompt and decode speeds, measured on finished generations.
        self.rates = Rates()
        # The last answered prompt and its reply (what a chat client sends back next turn).
        self._answered: tuple[bytes, bool] | None = None

    def plan(self, job: Job) -> Plan | Failed:
        """Tokenize and plan the prompt; a Failed when it cannot fit (nothing evaluated yet)."""
        started = time.perf_counter()
        # The backend reads the prompt as a C string: it ends at the first NUL byte.
        prompt = job.prompt.encode().split(b"\0", 1)[0]
        saved = list(self.states.keys()) if self.states is not None else []
        plan = self.cache.plan(prompt, special=job.special, saved=saved)
        if not plan.tokens:
            # An empty prompt evaluates no token, and sampling would then read the logits the
            # previous request left: its first token would continue another user's text. As
            # with OpenAI's API (an empty prompt starts a new document), it starts from the
            # model's beginning-of-sequence token, so the answer depends on this request alone.
            start = self.chat_format.bos_token or self.chat_format.eos_token
            plan = self.cache.plan(start.encode(), special=True)
        self.metrics.prompt_planning.observe(time.perf_counter() - started)
        size, n_ctx, params = len(plan.tokens), self.settings.n_ctx, job.params
        requested = params.max_tokens if params.max_tokens_explicit else 0
        if size > n_ctx - RESERVED_TOKENS:
            message = (
                f"the prompt is {size} tokens; at most {n_ctx - RESERVED_TOKENS} fit in the "
                f"context window of {n_ctx} tokens"
            )
        elif requested and size + requested > n_ctx:
            message = (
                f"the prompt ({size} tokens) plus max_tokens ({requested}) exceeds the context "
                f"window of {n_ctx} tokens"
            )
        elif not plan.tokens:
            return Failed("internal", "the model has no token to start an empty prompt with")
        else:
            return plan
        return Failed(
            "context_length_exceeded", message, prompt_tokens=size, requested_tokens=requested
        )

    def admit(self, job: Job, plan: Plan) -> Failed | None:
        """A Failed when, at the measured rates, the planned request cannot finish before its
        deadline (the uncached part of the prompt is known only now, after planning)."""
        size = len(plan.tokens)
        new_tokens = min(job.params.max_tokens, self.settings.n_ctx - size)
        estimate = self.rates.estimate(size - plan.reuse, new_tokens)
        remaining = job.deadline - time.monotonic()
        if estimate.seconds <= remaining:
            return None
        alone = estimate.seconds > self.settings.request_timeout_seconds
        return Failed(
            "deadline_unreachable_alone" if alone else "deadline_unreachable_queued",
            estimate.describe(),
            prompt_tokens=size,
            estimated_seconds=estimate.seconds,
            remaining_seconds=max(remaining, 0.0),
        )

    def run(self, job: Job) -> None:
        self._answered = None
        planned = self.plan(job)
        if isinstance(planned, Failed):
            job.emit(planned)
            return
        refused = self.admit(job, planned)
        if refused is not None:
            job.emit(refused)
            return
        try:
            self._generate(job, planned)
        except BaseException:
            self.cache.invalidate()
            raise

    def _generate(self, job: Job, plan: Plan) -> None:
        from gpt4all import _pyllmodel

        llmodel = self.model.model
        params: SamplingParams = job.params
        stop_ids = self.chat_format.stop_token_ids
        size = len(plan.tokens)
        max_new = min(params.max_tokens, self.settings.n_ctx - size)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stops = StopFilter(params.stop)
        evaluated = completion_tokens = 0
        first_at = last_at = prompt_done_at = 0.0
        reply: list[str] = []
        finish: FinishReason = "stop"
        failure: Failed | None = None

        def interrupted() -> bool:
            nonlocal failure
            if job.cancelled:
                failure = Failed("cancelled", "the client went away")
            elif time.monotonic() > job.deadline:
                failure = Failed("deadline", "the request took longer than the deadline")
            return failure is not None

        def on_prompt_token(_token_id: int) -> bool:
            nonlocal evaluated
            evaluated += 1
            return not interrupted()

        def on_response_token(token_id: int, piece: bytes | None) -> bool:
            nonlocal completion_tokens, first_at, last_at, finish, failure, prompt_done_at
            if not prompt_done_at:  # the prompt is evaluated: the first token was sampled
                prompt_done_at = time.monotonic()
            if token_id < 0:  # the binding reports errors this way (e.g. prompt too long)
                message = (piece or b"").decode(errors="replace").removeprefix("ERROR: ")
                failure = Failed("context_length_exceeded", message, prompt_tokens=size)
                return False
            if interrupted():
                return False
            if evaluated == 0:
                # Nothing of this request was evaluated: this token came from stale logits.
                failure = Failed("internal", "the prompt evaluated no token")
                return False
            if token_id in stop_ids:
                return False
            completion_tokens += 1
            last_at = time.monotonic()
            if completion_tokens == 1:
                first_at = last_at
            text, stopped = stops.feed(decoder.decode(piece or b""))
            if text:
                job.emit(Delta(text))
                reply.append(text)
            if stopped:
                return False
            if completion_tokens >= max_new:  # max_tokens, or the end of the context window
                finish = "length"
                return False
            return True

        if params.temperature <= 0:  # greedy: keep only the most likely token
            temp, top_k = 1.0, 1
        else:
            temp, top_k = params.temperature, params.top_k
        llmodel._set_context(
            n_predict=max_new,
            top_k=top_k,
            top_p=params.top_p,
            min_p=0.0,
            temp=temp,
            n_batch=self.settings.n_batch,
            repeat_penalty=params.repeat_penalty,
            repeat_last_n=params.repeat_last_n,
            context_erase=0.75,
            reset_context=True,
        )
        context = llmodel.context
        if plan.restore is not None:
            plan = self._restore(plan)
        if plan.reuse > context.tokens_size:  # never: n_past past the backend's tokens aborts
            log.warning("prompt cache out of step with the backend; evaluating from scratch")
            self.cache.invalidate()
            plan = plan.fresh()
        context.n_past = plan.reuse
        self.cache.invalidate()  # until the call has returned and its result is checked
        prompt_started = time.monotonic()
        _pyllmodel.llmodel.llmodel_prompt(
            llmodel.model,
            ctypes.c_char_p(plan.suffix),
            # "%1%2": the prompt is already fully formatted ("%1" alone makes gpt4all append "\n\n")
            ctypes.c_char_p(b"%1%2"),
            _pyllmodel.PromptCallback(on_prompt_token),
            _pyllmodel.ResponseCallback(on_response_token),
            False,  # never let gpt4all drop the oldest tokens: the window is checked above
            context,
            plan.special,
            ctypes.c_char_p(),
        )
        if failure is None and evaluated == size - plan.reuse:
            self.cache.commit(plan.tokens, context.tokens[: context.tokens_size])
        elif failure is None:
            log.error("tokenizer out of step: %d prompt tokens fed, %d planned", evaluated, size)
        self.metrics.prompt_tokens.inc(plan.reuse + evaluated)
        self.metrics.prompt_tokens_cached.inc(plan.reuse)
        if plan.reuse:
            source = "live" if plan.restore is None else "saved"
            self.metrics.prompt_cache_hits.labels(source=source).inc()
        self.metrics.generated_tokens.inc(completion_tokens)
        if prompt_done_at and evaluated:
            self.rates.record_prompt(evaluated, prompt_done_at - prompt_started)
        if completion_tokens >= 2 and last_at > first_at:
            self.metrics.decode_rate.observe((completion_tokens - 1) / (last_at - first_at))
            self.rates.record_decode(completion_tokens - 1, last_at - first_at)
        if failure is not None:
            if failure.kind == "cancelled":
                self.metrics.cancellations.inc()
            job.emit(failure)
            return
        tail = stops.flush() + decoder.decode(b"", final=True)
        if tail:
            job.emit(Delta(tail))
        reply.append(tail)
        self._answered = (plan.prompt + "".join(reply).encode(), plan.special)
        job.emit(Finished(finish, size, completion_tokens, cached_tokens=plan.reuse))
        self._save()

    def refill(self, busy: Callable[[], bool]) -> None:
        """After an answer, evaluate prompt + reply in batches so the next turn reuses the reply
        too (generated tokens were decoded one by one: not reusable exactly). Run only when no
        request waits; `busy()` turning true abandons it at the next token, keeping the
        batches already evaluated."""
        answered, self._answered = self._answered, None
        if answered is None or not self.cache.enabled or not self.settings.prompt_cache_refill:
            return
        plan = self.cache.plan(answered[0], special=answered[1])
        if plan.reuse == 0 or len(plan.tokens) > self.settings.n_ctx - RESERVED_TOKENS:
            return
        from gpt4all import _pyllmodel

        llmodel = self.model.model
        evaluated = 0

        def on_prompt_token(_token_id: int) -> bool:
            nonlocal evaluated
            evaluated += 1
            return not busy()

        started = time.perf_counter()
        llmodel._set_context(n_predict=0, n_batch=self.settings.n_batch, reset_context=True)
        context = llmodel.context
        if plan.reuse > context.tokens_size:
            self.cache.invalidate()
            return
        context.n_past = plan.reuse
        self.cache.invalidate()  # until the call has returned and its result is checked
        _pyllmodel.llmodel.llmodel_prompt(
            llmodel.model,
            ctypes.c_char_p(plan.suffix),
            ctypes.c_char_p(b"%1%2"),
            _pyllmodel.PromptCallback(on_prompt_token),
            _pyllmodel.ResponseCallback(lambda _token_id, _piece: False),
            False,
            context,
            plan.special,
            ctypes.c_char_p(),
        )
        held = context.tokens[: context.tokens_size]
        if evaluated == len(plan.tokens) - plan.reuse:
            self.cache.commit(plan.tokens, held)
        else:
            self.cache.keep(plan.tokens[: plan.reuse + evaluated], held)
        self.metrics.prompt_refill.observe(time.perf_counter() - started)
        self._save()

    def _restore(self, plan: Plan) -> Plan:
        """Put the saved state `plan` names back into the context; on any trouble, the plan to
        evaluate from scratch (with n_past 0 the backend drops every cell: always exact)."""
        assert plan.restore is not None and self.states is not None and self.backend is not None
        data = self.states.get(plan.restore)
        if data is None:
            return plan.fresh()
        started = time.perf_counter()
        self.cache.invalidate()  # the live context is about to be overwritten
        try:
            how = self.backend.restore(data, plan.restore)
        except (LayoutError, RuntimeError, MemoryError) as exc:
            log.warning("could not restore a saved state (%s): evaluating from scratch", exc)
            return plan.fresh()
        self.cache.restored(plan.restore)
        self.metrics.prompt_cache_restores.labels(token_list=how).inc()
        self.metrics.prompt_cache_restore.observe(time.perf_counter() - started)
        return plan

    def _save(self) -> None:
        """Copy the context's state out for later requests, unless a saved one covers it."""
        tokens = self.cache.cached
        if self.states is None or self.backend is None or not tokens:
            return
        if self.states.covers(tokens):
            return
        self.states.supersede(tokens)  # this conversation's older state: not kept twice
        started = time.perf_counter()
        try:
            data = self.backend.save()
        except (RuntimeError, OSError, MemoryError) as exc:  # e.g. no memory for the scratch map
            log.warning("could not save the context's state: %s", exc)
            return
        self.metrics.prompt_cache_evictions.inc(self.states.put(tokens, data))
        self.metrics.prompt_cache_save.observe(time.perf_counter() - started)
