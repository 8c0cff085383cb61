"""Retry-After of a full queue: the expected wait until the jobs ahead are done.

    Retry-After = clamp(ceil(jobs ahead x mean job time), 1, 60) seconds

jobs ahead = the jobs waiting plus the one running; mean job time = the mean time the worker
spent on each of its last 16 jobs (1 s before the first job). A client that sleeps that long
finds the queue drained (unless others got in first), instead of retrying into a full queue.
"""

from __future__ import annotations

import math
from typing import Protocol

MIN_SECONDS = 1
MAX_SECONDS = 60
UNKNOWN_JOB_SECONDS = 1.0  # before the first job finished
NOT_READY_SECONDS = 10  # the model is loading: loading takes seconds to minutes


class Queue(Protocol):
    def backlog(self) -> int: ...

    def mean_job_seconds(self) -> float | None: ...


def expected_wait(jobs_ahead: int, mean_job_seconds: float | None) -> int:
    mean = UNKNOWN_JOB_SECONDS if mean_job_seconds is None else mean_job_seconds
    return min(max(math.ceil(jobs_ahead * mean), MIN_SECONDS), MAX_SECONDS)


def queue_retry_after(queue: Queue) -> int:
    return expected_wait(queue.backlog(), queue.mean_job_seconds())
