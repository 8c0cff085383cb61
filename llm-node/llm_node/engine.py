"""The only module that touches gpt4all: one worker thread owns the model and serves a queue.

gpt4all 2.8.2 is not thread-safe (two concurrent generations crash the process), so a single
worker thread loads the model and runs generations one at a time. Requests wait in a bounded
queue; when it is full `submit` refuses at once instead of making the client wait. Generation
goes through the binding's low-level `llmodel_prompt` with special-token parsing on (the public
`generate()` turns it off, which breaks chat templates), and its callbacks, which run on the
worker thread for every prompt and generated token, count real tokens and stop the generation
as soon as the request is cancelled, past its deadline, at an end-of-turn token, at a `stop`
string or at `max_tokens`.
"""

from __future__ import annotations

import asyncio
import codecs
import collections
import contextlib
import ctypes
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

from llm_node.chat_template import ChatFormat, load_chat_format
from llm_node.config import Settings
from llm_node.metrics import Metrics

log = logging.getLogger(__name__)

FinishReason = Literal["stop", "length"]
FailureKind = Literal["cancelled", "deadline", "context_length_exceeded", "shutdown", "internal"]


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 40
    repeat_penalty: float = 1.1
    repeat_last_n: int = 64
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class Delta:
    text: str


@dataclass(frozen=True)
class Finished:
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Failed:
    kind: FailureKind
    message: str


Event = Delta | Finished | Failed


class EngineUnavailable(Exception):
    """The model is not loaded (missing file, still loading, shutting down)."""


class QueueFull(Exception):
    """Every queue slot is taken: the caller should answer 503 with Retry-After."""


class Job:
    """One generation request. The worker thread posts events to `events` on the caller's loop."""

    def __init__(
        self,
        prompt: str,
        params: SamplingParams,
        *,
        special: bool,
        timeout: float,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.prompt = prompt
        self.params = params
        self.special = special
        self.deadline = time.monotonic() + timeout
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self.cancelled = False  # set from the event loop, read by the worker's token callbacks
        self.done = False
        self._loop = loop

    def cancel(self) -> None:
        """Stop this job at its next token (or skip it if it is still queued)."""
        self.cancelled = True

    def emit(self, event: Event) -> None:
        if isinstance(event, Finished | Failed):
            self.done = True
        # RuntimeError: the loop is closed, nobody is listening any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self.events.put_nowait, event)


class _StopFilter:
    """Holds back text that may be the start of a stop string; cuts the text before a stop."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._pending = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """Return (text safe to emit, whether a stop string was found)."""
        if not self._stops:
            return text, False
        pending = self._pending + text
        cut = min((i for i in (pending.find(s) for s in self._stops) if i >= 0), default=-1)
        if cut >= 0:
            self._pending = ""
            return pending[:cut], True
        hold = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(pending)), hold, -1):
                if pending.endswith(stop[:size]):
                    hold = size
                    break
        self._pending = pending[len(pending) - hold :]
        return pending[: len(pending) - hold], False

    def flush(self) -> str:
        pending, self._pending = self._pending, ""
        return pending


class Engine:
    """Owns the gpt4all model on one worker thread; `submit` enqueues a `Job` or refuses."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.chat_format: ChatFormat = ChatFormat()
        self.load_error: str | None = None
        self._loaded = threading.Event()
        self._finished_loading = threading.Event()
        self._waiting: collections.deque[Job] = collections.deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._current: Job | None = None
        self._model: Any = None
        self._thread = threading.Thread(target=self._run, name="llm-engine", daemon=True)
        metrics.queue_depth.set_function(lambda: len(self._waiting))
        metrics.queue_capacity.set(settings.queue_size)
        metrics.model_loaded.set(0)

    # -- life cycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    @property
    def ready(self) -> bool:
        return self._loaded.is_set() and not self._stopping

    @property
    def thread_id(self) -> int | None:
        """The worker thread's native (kernel) id once started; None before."""
        return self._thread.native_id

    def wait_loaded(self, timeout: float | None = None) -> bool:
        """Block until loading finished (successfully or not); True when the model is ready."""
        self._finished_loading.wait(timeout)
        return self.ready

    def stop(self, timeout: float = 30.0) -> None:
        with self._cond:
            self._stopping = True
            waiting = list(self._waiting)
            self._waiting.clear()
            if self._current is not None:
                self._current.cancel()
            self._cond.notify_all()
        for job in waiting:
            job.emit(Failed("shutdown", "the server is shutting down"))
        if self._thread.is_alive():
            self._thread.join(timeout)
        self.metrics.model_loaded.set(0)

    # -- requests ---------------------------------------------------------------------------
    def _full(self) -> bool:
        # queue_size jobs may wait behind the one running. An idle worker (no current job) will
        # take the first waiting job: it has not woken up yet, so count one more slot.
        capacity = self.settings.queue_size + (self._current is None)
        return len(self._waiting) >= capacity

    def is_full(self) -> bool:
        """True when the model is ready and `submit` would raise QueueFull right now.

        A lock-free snapshot for the event loop's fast 503 path: `submit` decides again under
        the lock, so a stale answer only means the request is refused a little later.
        """
        return self.ready and self._full()

    def submit(self, job: Job) -> None:
        """Queue `job`; raise EngineUnavailable or QueueFull at once instead of waiting."""
        with self._cond:
            if not self.ready:
                raise EngineUnavailable(self.load_error or "the model is not loaded yet")
            if self._full():
                raise QueueFull
            self._waiting.append(job)
            self._cond.notify()

    # -- worker thread ----------------------------------------------------------------------
    def _lower_priority(self) -> None:
        """Raise this thread's nice value by LLM_WORKER_NICE (the gpt4all threads it starts
        inherit it).

        On Linux, nice is per thread: the event loop keeps its priority, so /health, /metrics
        and the 503 of a full queue are answered at once while a generation takes every core.
        Elsewhere, or if the system refuses, the worker runs at the process's priority.
        """
        if self.settings.worker_nice == 0 or not hasattr(os, "setpriority"):
            return
        try:
            tid = threading.get_native_id()
            nice = min(os.getpriority(os.PRIO_PROCESS, tid) + self.settings.worker_nice, 19)
            os.setpriority(os.PRIO_PROCESS, tid, nice)
        except OSError as exc:
            log.warning("could not lower the worker thread's priority: %s", exc)

    def _run(self) -> None:
        self._lower_priority()
        try:
            self._load()
        except Exception as exc:
            self.load_error = f"model not loaded from {self.settings.model_path}: {exc}"
            log.error(self.load_error)
            self._finished_loading.set()
            return
        self._loaded.set()
        self._finished_loading.set()
        try:
            while True:
                with self._cond:
                    # Cleared and set under one lock: `_current` is None only while the worker
                    # is idle, so `_full` never counts a slot twice between two jobs.
                    self._current = None
                    while not self._waiting and not self._stopping:
                        self._cond.wait()
                    if self._stopping:
                        break
                    job = self._waiting.popleft()
                    self._current = job
                self._process(job)  # catches what generation raises
        finally:
            with self._cond:
                self._current = None
            self._close()

    def _load(self) -> None:
        path = self.settings.model_path
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {path}")
        if not os.access(path, os.R_OK):
            raise PermissionError(f"not readable: {path}")
        with path.open("rb") as handle:
            if handle.read(4) != b"GGUF":
                raise ValueError(f"not a GGUF file: {path}")
        started = time.monotonic()
        self.chat_format = load_chat_format(path)
        # Imported here, on the worker thread: importing gpt4all probes for GPU libraries.
        from gpt4all import GPT4All, _pyllmodel

        model = GPT4All(
            path.name,
            model_path=path.parent,
            allow_download=False,  # never touch the network, not even the model catalog
            device="cpu",
            n_threads=self.settings.n_threads,
            n_ctx=self.settings.n_ctx,
        )
        if not _pyllmodel.llmodel.llmodel_isModelLoaded(model.model.model):
            model.close()
            raise RuntimeError("gpt4all could not load the file (unsupported or corrupt GGUF?)")
        self._model = model
        self.metrics.model_loaded.set(1)
        self.metrics.model_info.labels(
            model=self.settings.served_model_name,
            path=str(path),
            n_ctx=str(self.settings.n_ctx),
            n_threads=str(self.settings.n_threads),
        ).set(1)
        log.info(
            "model loaded",
            extra={
                "model": self.settings.served_model_name,
                "path": str(path),
                "chat_template": self.chat_format.source,
                "load_seconds": round(time.monotonic() - started, 2),
            },
        )

    def _close(self) -> None:
        self._loaded.clear()
        self.metrics.model_loaded.set(0)
        if self._model is not None:
            self._model.close()
            self._model = None

    def _process(self, job: Job) -> None:
        if job.cancelled:
            self.metrics.cancellations.inc()
            job.emit(Failed("cancelled", "the client went away"))
            return
        if time.monotonic() > job.deadline:
            job.emit(Failed("deadline", "the request timed out while waiting in the queue"))
            return
        self.metrics.inflight.set(1)
        try:
            self._generate(job)
        except Exception:
            log.exception("generation failed")
            job.emit(Failed("internal", "the generation failed"))
        finally:
            self.metrics.inflight.set(0)

    def _generate(self, job: Job) -> None:
        from gpt4all import _pyllmodel

        llmodel = self._model.model
        params = job.params
        stop_ids = self.chat_format.stop_token_ids
        n_ctx = self.settings.n_ctx
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stops = _StopFilter(params.stop)
        prompt_tokens = 0
        completion_tokens = 0
        first_at = last_at = 0.0
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
            nonlocal prompt_tokens
            prompt_tokens += 1
            return not interrupted()

        def on_response_token(token_id: int, piece: bytes | None) -> bool:
            nonlocal completion_tokens, first_at, last_at, finish, failure
            if token_id < 0:  # the binding reports errors this way (e.g. prompt too long)
                message = (piece or b"").decode(errors="replace").removeprefix("ERROR: ")
                failure = Failed("context_length_exceeded", message)
                return False
            if interrupted():
                return False
            if prompt_tokens == 0:
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
            if stopped:
                return False
            if completion_tokens >= params.max_tokens or prompt_tokens + completion_tokens >= n_ctx:
                finish = "length"
                return False
            return True

        prompt, special = job.prompt, job.special
        if not prompt:
            # An empty prompt evaluates no token, and sampling would then read the logits the
            # previous request left: its first token would continue another user's text. As
            # with OpenAI's API (an empty prompt starts a new document), it starts from the
            # model's beginning-of-sequence token, so the answer depends on this request alone.
            prompt, special = self.chat_format.bos_token or self.chat_format.eos_token, True

        if params.temperature <= 0:  # greedy: keep only the most likely token
            temp, top_k = 1.0, 1
        else:
            temp, top_k = params.temperature, params.top_k
        llmodel._set_context(
            n_predict=params.max_tokens,
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
        _pyllmodel.llmodel.llmodel_prompt(
            llmodel.model,
            ctypes.c_char_p(prompt.encode()),
            # "%1%2": the prompt is already fully formatted ("%1" alone makes gpt4all append "\n\n")
            ctypes.c_char_p(b"%1%2"),
            _pyllmodel.PromptCallback(on_prompt_token),
            _pyllmodel.ResponseCallback(on_response_token),
            True,
            llmodel.context,
            special,
            ctypes.c_char_p(),
        )
        self.metrics.prompt_tokens.inc(prompt_tokens)
        self.metrics.generated_tokens.inc(completion_tokens)
        if completion_tokens >= 2 and last_at > first_at:
            self.metrics.decode_rate.observe((completion_tokens - 1) / (last_at - first_at))
        if failure is not None:
            if failure.kind == "cancelled":
                self.metrics.cancellations.inc()
            job.emit(failure)
            return
        tail = stops.flush() + decoder.decode(b"", final=True)
        if tail:
            job.emit(Delta(tail))
        job.emit(Finished(finish, prompt_tokens, completion_tokens))
