"""The llm_node role's model download (roles/llm_node/tasks/model.yml and its module) for
real: ansible-playbook on localhost fetches from a local HTTP server that drops the
connection halfway, serves a wrong file, or is one of several mirrors.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.ansible.test_ansible_static import ANSIBLE, _env, _tool

TASKS = ANSIBLE / "roles" / "llm_node" / "tasks" / "model.yml"
# The role's real task file; the play's handler stands in for the role's restart, so the
# test sees whether a restart was asked for.
PLAYBOOK = f"""\
- name: Run the llm_node role's model download
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Download the model
      ansible.builtin.include_tasks: {TASKS}
  handlers:
    - name: Restart llm-node
      ansible.builtin.debug:
        msg: restart requested
"""
SIZE = 3 * 1024 * 1024 + 123
HALF = SIZE // 2


@dataclass
class ModelServer:
    """Serves one model at /model.gguf (with Range) and a different file at /wrong.gguf."""

    data: bytes
    drop_first_at: int | None = None
    ranges: list[str] = field(default_factory=list)
    body_bytes: int = 0
    base: str = ""

    def handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path not in ("/model.gguf", "/wrong.gguf"):
                    self.send_error(404)
                    return
                data = server.data if self.path == "/model.gguf" else server.data[::-1]
                header = self.headers.get("Range", "")
                server.ranges.append(header)
                start = int(m.group(1)) if (m := re.fullmatch(r"bytes=(\d+)-", header)) else 0
                if start >= len(data):
                    self.send_error(416)
                    return
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                if server.drop_first_at is not None and start == 0:
                    body, server.drop_first_at = body[: server.drop_first_at], None
                    self.wfile.write(body)
                    server.body_bytes += len(body)
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body)
                server.body_bytes += len(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler

    @contextlib.contextmanager
    def running(self) -> Iterator[ModelServer]:
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        self.base = f"http://127.0.0.1:{httpd.server_address[1]}"
        try:
            yield self
        finally:
            httpd.shutdown()
            httpd.server_close()


@dataclass
class Run:
    rc: int
    output: str

    @property
    def restarted(self) -> bool:
        return "RUNNING HANDLER [Restart llm-node]" in self.output

    @property
    def changed(self) -> int:
        return int(re.findall(r"changed=(\d+)", self.output)[-1])


def download(
    model_dir: Path, url: str, checksum: str, mirrors: list[str] | None = None, retries: int = 0
) -> Run:
    playbook = model_dir.parent / "model.yml"
    playbook.write_text(PLAYBOOK)
    extra = {
        "ansible_python_interpreter": sys.executable,
        "llm_node_model_dir": str(model_dir),
        "llm_node_model_file": "model.gguf",
        "llm_node_model_url": url,
        "llm_node_model_mirrors": mirrors or [],
        "llm_node_model_checksum": checksum,
        "llm_node_model_download_timeout": 10,
        "llm_node_model_download_retries": retries,
    }
    env = _env() | {"ANSIBLE_LIBRARY": str(ANSIBLE / "roles" / "llm_node" / "library")}
    # Owner root is what the role sets; as another user the test runs as that user.
    if os.geteuid() != 0:
        pytest.skip("the role's task sets owner root: run as root")
    result = subprocess.run(
        [_tool("ansible-playbook"), "-i", "localhost,", str(playbook), "-e", json.dumps(extra)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    return Run(result.returncode, result.stdout + result.stderr)


def md5(data: bytes) -> str:
    return f"md5:{hashlib.md5(data).hexdigest()}"  # noqa: S324 - the role's md5 check


DATA = os.urandom(SIZE)


@dataclass
class Interrupted:
    server: ModelServer
    model_dir: Path
    first: Run
    part_size_after_first: int
    model_after_first: bool
    second: Run
    third: Run
    requests_before_third: int


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Interrupted]:
    """First run: the connection drops halfway (no retries). Then two more runs."""
    model_dir = tmp_path_factory.mktemp("resume") / "models"
    model_dir.mkdir()
    with ModelServer(DATA, drop_first_at=HALF).running() as server:
        url = f"{server.base}/model.gguf"
        first = download(model_dir, url, md5(DATA))
        part = model_dir / "model.gguf.part"
        part_size = part.stat().st_size if part.exists() else -1
        model_after_first = (model_dir / "model.gguf").exists()
        second = download(model_dir, url, md5(DATA))
        requests = len(server.ranges)
        third = download(model_dir, url, md5(DATA))
        yield Interrupted(
            server, model_dir, first, part_size, model_after_first, second, third, requests
        )


@pytest.mark.slow
def test_model_download_resumes_interrupted_run_fails_and_says_how_to_resume(
    interrupted: Interrupted,
) -> None:
    assert interrupted.first.rc != 0
    assert "run the playbook again to resume" in interrupted.first.output


@pytest.mark.slow
def test_model_download_resumes_keeps_the_half_in_part_not_in_place_of_the_model(
    interrupted: Interrupted,
) -> None:
    assert (interrupted.part_size_after_first, interrupted.model_after_first) == (HALF, False)


@pytest.mark.slow
def test_model_download_resumes_the_rerun_asks_only_for_the_rest(
    interrupted: Interrupted,
) -> None:
    assert interrupted.server.ranges[:2] == ["", f"bytes={HALF}-"]


@pytest.mark.slow
def test_model_download_resumes_the_rerun_passes_the_checksum(interrupted: Interrupted) -> None:
    assert interrupted.second.rc == 0, interrupted.second.output[-3000:]
    assert md5((interrupted.model_dir / "model.gguf").read_bytes()) == md5(DATA)


@pytest.mark.slow
def test_model_download_resumes_sends_every_byte_once(interrupted: Interrupted) -> None:
    assert interrupted.server.body_bytes == SIZE


@pytest.mark.slow
def test_model_download_resumes_restarts_the_service_after_the_download(
    interrupted: Interrupted,
) -> None:
    assert interrupted.second.restarted


@pytest.mark.slow
def test_model_download_resumes_a_present_model_is_neither_fetched_nor_changed(
    interrupted: Interrupted,
) -> None:
    third = interrupted.third
    assert (third.rc, third.changed, third.restarted) == (0, 0, False), third.output[-3000:]
    assert len(interrupted.server.ranges) == interrupted.requests_before_third


@pytest.mark.slow
def test_model_download_resumes_within_one_run_with_retries(tmp_path: Path) -> None:
    model_dir = tmp_path / "models"
    model_dir.mkdir()
    with ModelServer(DATA, drop_first_at=HALF).running() as server:
        run = download(model_dir, f"{server.base}/model.gguf", md5(DATA), retries=2)
    assert run.rc == 0, run.output[-3000:]
    assert server.ranges == ["", f"bytes={HALF}-"]


@pytest.mark.slow
def test_model_download_resumes_wrong_checksum_fails_clearly_and_keeps_nothing(
    tmp_path: Path,
) -> None:
    model_dir = tmp_path / "models"
    model_dir.mkdir()
    with ModelServer(DATA).running() as server:
        run = download(model_dir, f"{server.base}/wrong.gguf", md5(DATA))
    assert run.rc != 0
    served = hashlib.md5(DATA[::-1]).hexdigest()  # noqa: S324
    assert f"served a file with md5 {served}, not {md5(DATA)[4:]}" in run.output
    assert sorted(p.name for p in model_dir.iterdir()) == []


@pytest.mark.slow
def test_model_download_resumes_from_the_first_mirror_with_the_right_checksum(
    tmp_path: Path,
) -> None:
    model_dir = tmp_path / "models"
    model_dir.mkdir()
    with ModelServer(DATA).running() as server:
        mirrors = [f"{server.base}/wrong.gguf", f"{server.base}/model.gguf"]
        run = download(model_dir, f"{server.base}/missing.gguf", md5(DATA), mirrors=mirrors)
    assert run.rc == 0, run.output[-3000:]
    assert md5((model_dir / "model.gguf").read_bytes()) == md5(DATA)
