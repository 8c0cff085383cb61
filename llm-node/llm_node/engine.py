"""The only module that owns gpt4all: one worker thread owns the model and serves a queue.

gpt4all 2.8.2 is not thread-safe (two concurrent generations crash the process), so a single
worker thread loads the model and runs generations one at a time. Requests wait in a bounded
queue; when it is full `submit` refuses at once instead of making the client wait. One
generation (tokenizing and planning the prompt, the prompt cache, the token callbacks) is
`llm_node.generation`'s job, run on this worker thread.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from llm_node.chat_template import ChatFormat, load_chat_format
from llm_node.config import Settings
from llm_node.events import (
    Delta,
    Event,
    Failed,
    FailureKind,
    Finished,
    FinishReason,
    SamplingParams,
)
from llm_node.generation import Generator
from llm_node.metrics import Metrics
from llm_node.tokenizer import Tokenizer

# The event types are defined in llm_node.events and re-exported: the routes import them here.
__all__ = [
    "Delta",
    "Engine",
    "EngineUnavailable",
    "Event",
    "Failed",
    "FailureKind",
    "FinishReason",
    "Finished",
    "Job",
    "QueueFull",
    "SamplingParams",
]

log = logging.getLogger(__name__)


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
        # How long the worker spent on each of the last jobs: the wait a refused client is told.
        self._job_seconds: collections.deque[float] = collections.deque(maxlen=16)
        self._model: Any = None
        self._generator: Generator | None = None
        self._refilling = False
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
    def idle(self) -> bool:
        """True when the worker has nothing to do: no job running or waiting, no refill."""
        return self._current is None and not self._waiting and not self._refilling

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
        if len(self._waiting) >= capacity:
            return True
        # A queue whose expected wait (jobs ahead x mean job time) already reaches the deadline
        # cannot drain in time: a new job would only wait to fail, so it is refused now with
        # Retry-After. At 8B size a job takes minutes (README, "Deadline and admission").
        mean = self.mean_job_seconds()
        ahead = len(self._waiting) + (self._current is not None)
        return mean is not None and ahead * mean >= self.settings.request_timeout_seconds

    def is_full(self) -> bool:
        """True when the model is ready and `submit` would raise QueueFull right now.

        A lock-free snapshot for the event loop's fast 503 path: `submit` decides again under
        the lock, so a stale answer only means the request is refused a little later.
        """
        return self.ready and self._full()

    def backlog(self) -> int:
        """Jobs ahead of a new one: those waiting plus the one running (a lock-free snapshot)."""
        return len(self._waiting) + (self._current is not None)

    def mean_job_seconds(self) -> float | None:
        """The mean time the worker spent per job over the last few jobs; None before any."""
        recent = tuple(self._job_seconds)
        return sum(recent) / len(recent) if recent else None

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
                with self._cond:
                    self._current = None  # a refill gives way to the next job: count it free
                self._refill()
        finally:
            with self._cond:
                self._current = None
            self._close()

    def _busy(self) -> bool:
        return bool(self._waiting) or self._stopping

    def _refill(self) -> None:
        """Between jobs, when none waits: let the prompt cache take in the last reply."""
        if self._generator is None or self._busy():
            return
        self._refilling = True
        try:
            self._generator.refill(self._busy)
        except Exception:
            log.exception("prompt cache refill failed")
            self._generator.cache.invalidate()
        finally:
            self._refilling = False

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
        model = self._load_model(path)
        # The vocabulary gpt4all loaded gives the tokenizer and the chat format's template and
        # special tokens: nothing is parsed twice, no tokenizer array in Python.
        tokenizer = Tokenizer.of_gpt4all(model.model.model)
        try:
            if tokenizer is None:
                log.warning("gpt4all's vocabulary not found: loading the vocabulary again")
                tokenizer = Tokenizer(path)
            self.chat_format = load_chat_format(path, tokenizer)
        except Exception:
            if tokenizer is not None:
                tokenizer.close()
            model.close()
            raise
        self._model = model
        self._generator = Generator(model, tokenizer, self.chat_format, self.settings, self.metrics)
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

    def _load_model(self, path: Path) -> Any:
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
        return model

    def _close(self) -> None:
        self._loaded.clear()
        self.metrics.model_loaded.set(0)
        if self._generator is not None:
            self._generator.tokenizer.close()
            self._generator = None
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
        started = time.monotonic()
        try:
            assert self._generator is not None  # the worker serves jobs only once loaded
            self._generator.run(job)  # marks the prompt cache invalid when it raises
        except Exception:
            log.exception("generation failed")
            job.emit(Failed("internal", "the generation failed"))
        finally:
            self.metrics.inflight.set(0)
            self._job_seconds.append(time.monotonic() - started)
