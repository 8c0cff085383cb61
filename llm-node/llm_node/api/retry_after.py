"""Retry-After of a full queue: the expected wait until the jobs ahead are done.

    Retry-After = clamp(ceil(jobs ahead x mean job time), 1, LLM_REQUEST_TIMEOUT_SECONDS)

jobs ahead = the jobs waiting plus the one running; mean job time = the mean time the worker
spent on each of its last 16 jobs (1 s before the first job). A client that sleeps that long
finds the queue drained (unless others got in first), instead of retrying into a full queue.

The upper bound is the request deadline, not a fixed minute: every job in the queue is
finished or stopped by its own deadline, at most LLM_REQUEST_TIMEOUT_SECONDS after it was
accepted, so the queue has surely drained by then, and a longer wait would never be true. At
Llama 3 8B's size a job takes minutes (256 new tokens at the 3.1-3.4 tokens/s measured on the
2-core build machine, 2026-12, are about 80 s), so the old 60 s bound told a client to come
back while the queue was still full.
"""

from __future__ import annotations

import math
from typing import Protocol

MIN_SECONDS = 1
UNKNOWN_JOB_SECONDS = 1.0  # before the first job finished
NOT_READY_SECONDS = 10  # the model is loading: loading takes seconds to minutes


class Queue(Protocol):
    def backlog(self) -> int: ...

    def mean_job_seconds(self) -> float | None: ...


def expected_wait(jobs_ahead: int, mean_job_seconds: float | None, max_seconds: float) -> int:
    mean = UNKNOWN_JOB_SECONDS if mean_job_seconds is None else mean_job_seconds
    ceiling = max(math.ceil(max_seconds), MIN_SECONDS)
    return min(max(math.ceil(jobs_ahead * mean), MIN_SECONDS), ceiling)


def queue_retry_after(queue: Queue, max_seconds: float) -> int:
    """`max_seconds`: the request deadline (LLM_REQUEST_TIMEOUT_SECONDS)."""
    return expected_wait(queue.backlog(), queue.mean_job_seconds(), max_seconds)
