"""The two processes a run measures: raw gpt4all (raw_worker.py) and llm-node, and their memory."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import httpx
import psutil
from options import HERE, LLM_NODE_DIR, Options


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def tree_rss(pid: int) -> int:
    """Resident memory of a process and its children (uvicorn runs in one process, but be sure)."""
    proc = psutil.Process(pid)
    total: int = proc.memory_info().rss
    for child in proc.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            total += child.memory_info().rss
    return total


def stop_process(proc: subprocess.Popen[Any], timeout: float = 15.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


class RawWorker:
    """raw_worker.py in a subprocess: one JSON command per line in, one JSON reply per line out."""

    def __init__(self, model: Path, threads: int, stderr: IO[str]) -> None:
        command = [sys.executable, str(HERE / "raw_worker.py"), "--model", str(model)]
        command += ["--threads", str(threads)]
        self.proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            bufsize=1,
        )
        self.hello = self._read()

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"raw worker exited (status {self.proc.wait()}); see its log")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"raw worker: {reply['error']}")
        return reply

    def call(self, **command: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None and self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.proc.stdin.flush()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                stop_process(self.proc)


class Node:
    """`python -m llm_node` on a free loopback port, configured with LLM_* variables."""

    def __init__(self, opts: Options, log_file: IO[str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        env.update(
            {
                "PYTHONPATH": os.pathsep.join(
                    [str(LLM_NODE_DIR), *filter(None, [env.get("PYTHONPATH")])]
                ),
                "LLM_MODEL_PATH": str(opts.model),
                "LLM_HOST": "127.0.0.1",
                "LLM_PORT": str(self.port),
                "LLM_N_THREADS": str(opts.threads),
                "LLM_QUEUE_SIZE": str(opts.queue_size),
                "LLM_LOG_LEVEL": "info",
            }
        )
        env.update(opts.node_env)
        if opts.n_batch is not None:
            env["LLM_N_BATCH"] = str(opts.n_batch)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llm_node"],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def wait_ready(self, timeout: float = 120.0) -> float:
        started = time.perf_counter()
        deadline = started + timeout
        with httpx.Client(base_url=self.url, timeout=2.0) as client:
            while time.perf_counter() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"llm-node exited with status {self.proc.returncode} before /ready"
                    )
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/ready").status_code == 200:
                        return time.perf_counter() - started
                time.sleep(0.1)
        raise RuntimeError(f"llm-node not ready after {timeout:.0f} s")

    def rss(self) -> int:
        return tree_rss(self.proc.pid)

    def stop(self) -> None:
        stop_process(self.proc)


def node_n_batch() -> int:
    """The node's default n_batch (LLM_N_BATCH), so the raw side processes prompts alike."""
    try:
        from llm_node.config import Settings
    except ImportError:
        return 8
    info = Settings.model_fields.get("n_batch")
    default = getattr(info, "default", None)
    env = os.environ.get("LLM_N_BATCH")
    return int(env) if env else (default if isinstance(default, int) else 8)
