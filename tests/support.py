"""Helpers every test suite shares: free ports, waiting, real programs, /metrics, prompts."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

# A prompt the tiny model continues for as long as it is allowed to (greedy, no penalty).
COUNTING = {"prompt": "1, 2, 3, 4, 5, 6, 7, 8,", "temperature": 0, "repeat_penalty": 1.0}

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def load_module(path: Path, name: str) -> ModuleType:
    """Import a Python file that is not on the import path (a plugin, a script)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    check: Callable[[], Any], what: str, timeout: float = 60.0, interval: float = 0.2
) -> Any:
    """Poll `check` until it returns something truthy without raising; return that value.

    A bound on waiting, never a timing assertion.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = check()
        except Exception as error:  # any failure means "not yet"
            last_error = error
        else:
            if result:
                return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}: {last_error!r}")
        time.sleep(interval)


def parse_metrics(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, keyed by (name, sorted labels)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(url: str) -> Samples:
    """GET `url` (a /metrics address) and parse it."""
    return parse_metrics(httpx.get(url, timeout=30).text)


def sample(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 when the series does not exist (yet)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


class Program:
    """A real program started in its own session; `stop()` ends its whole process group."""

    def __init__(self, name: str, argv: list[str], log: Path, env: dict[str, str] | None = None):
        self.name = name
        self.log = log
        self._log_file = log.open("wb")
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
            cwd=log.parent,
        )

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited with status {self.proc.returncode}:\n{self.tail()}"
            )

    def wait_until(self, check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
        def alive_and_check() -> Any:
            self.check_alive()
            return check()

        try:
            return wait_until(alive_and_check, f"{self.name}: {what}", timeout)
        except TimeoutError as error:
            raise TimeoutError(f"{error}\n--- {self.name} log ---\n{self.tail()}") from None

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
        self._log_file.close()
