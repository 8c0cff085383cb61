"""No secret is committed: checkov's secret scan over every file git would commit.

checkov runs from its own virtualenv (`make checkov-venv`, pinned in
requirements-checkov.txt), offline. Only files git tracks or would add (untracked and
not ignored) are scanned, so a user's own terraform.tfvars, state or vault password,
all git-ignored, do not fail the scan on their machine.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import string
import subprocess
from pathlib import Path
from typing import Any

import pytest
from tfcheck import REPO

CHECKOV = Path(os.environ.get("CHECKOV_BIN", REPO / ".venv-checkov" / "bin" / "checkov"))

# Findings reviewed and judged not to be secrets: (file, check, checkov's hash of the
# flagged string) -> why. A new string in the same file has another hash and still fails.
NOT_SECRETS = {
    (
        "/monitoring/prometheus/rules/recording.yml",
        "CKV_SECRET_6",
        "5f87690f6885e76c6cc267ae92dc9cf5f2e54b97",
    ): "a Prometheus recording-rule name, flagged for its entropy",
    (
        "/tests/edge/conftest.py",
        "CKV_SECRET_6",
        "dd606cd49bbbd06b4c2606fc2449f8fb87975786",
    ): "the password of a throw-away account the edge tests create",
    (
        "/tests/edge/test_edge_monitoring_static.py",
        "CKV_SECRET_6",
        "a10bb3469022fd147b405e7b5521cb7bc77a86c2",
    ): "a sample SMTP password (not-a-real-password) for rendering the Alertmanager config",
}


@pytest.fixture(scope="module")
def checkov() -> Path:
    if not CHECKOV.exists():
        pytest.skip(f"{CHECKOV} missing: run `make checkov-venv` (make test does)")
    return CHECKOV


def committable_files() -> list[str] | None:
    """Paths git tracks or would add, relative to the repository; None outside git."""
    if shutil.which("git") is None:
        return None
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=False,
    )
    if listed.returncode != 0:
        return None
    return [name for name in listed.stdout.decode().split("\0") if name]


def scan(checkov: Path, directory: Path) -> list[dict[str, Any]]:
    """checkov's failed secret checks for every file under directory."""
    scanned = subprocess.run(
        [
            str(checkov),
            "--directory",
            str(directory),
            "--framework",
            "secrets",
            "--enable-secret-scan-all-files",
            "--skip-download",
            "--output",
            "json",
            "--compact",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true", "LOG_LEVEL": "WARNING"},
    )
    # checkov exits 1 when a check fails; anything else is a crash.
    assert scanned.returncode in (0, 1), scanned.stderr[-3000:]
    reports = json.loads(scanned.stdout)
    if isinstance(reports, dict):
        # Either one report, or a summary without "results" when nothing was found.
        reports = [reports]
    return [
        check for report in reports for check in report.get("results", {}).get("failed_checks", [])
    ]


def describe(check: dict[str, Any]) -> tuple[str, str, str]:
    return (check["file_path"], check["check_id"], check["resource"])


@pytest.fixture(scope="module")
def repository_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files git would commit, copied as they are in the working tree."""
    names = committable_files()
    if names is None:
        pytest.skip("not a git work tree: cannot tell committed files from git-ignored ones")
    copy = tmp_path_factory.mktemp("repository")
    for name in names:
        source = REPO / name
        if source.is_file() and not source.is_symlink():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, copy / name)
    return copy


def test_no_secret_is_committed(checkov: Path, repository_copy: Path) -> None:
    unexplained = [
        "{}:{} {} {}".format(path, check["file_line_range"][0], check_id, digest)
        for check in scan(checkov, repository_copy)
        for path, check_id, digest in [describe(check)]
        if (path, check_id, digest) not in NOT_SECRETS
    ]
    assert unexplained == [], (
        "checkov found what looks like a secret. Remove it (tokens belong in the environment, "
        "passwords in ansible-vault). If it is a made-up sample, put the comment "
        "`# checkov:skip=CKV_SECRET_6 <why it is not a secret>` (with the reported check id) "
        "on the line above it, or add it to NOT_SECRETS in this file with the reason."
    )


@pytest.fixture(scope="module")
def planted(checkov: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The same scan over secrets made up for this run: {file name: check id}."""
    directory = tmp_path_factory.mktemp("planted")
    alphabet = string.ascii_letters + string.digits
    token = "".join(secrets.choice(alphabet) for _ in range(64))
    (directory / "main.tf").write_text(f'provider "hcloud" {{\n  token = "{token}"\n}}\n')
    body = "".join(secrets.choice(string.ascii_letters) for _ in range(64))
    marker = "OPENSSH PRIVATE KEY-----"
    (directory / "id_deploy").write_text(f"-----BEGIN {marker}\n{body}\n-----END {marker}\n")
    return {check["file_path"].lstrip("/"): check["check_id"] for check in scan(checkov, directory)}


def test_the_scan_finds_a_token_in_terraform(planted: dict[str, str]) -> None:
    assert planted.get("main.tf") == "CKV_SECRET_6"


def test_the_scan_finds_a_private_key_in_a_file_of_any_name(planted: dict[str, str]) -> None:
    assert planted.get("id_deploy") == "CKV_SECRET_13"
