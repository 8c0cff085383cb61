#!/usr/bin/python
"""Resumable, verified download of the model file from a list of mirrors.

get_url starts a 4.7 GB download over after any interruption and knows one URL only.
This module keeps the bytes received in DEST.part, asks for the rest with an HTTP Range
request (on its own retries and on the next run), verifies the whole file against the
checksum and only then renames it to DEST: the model path holds a verified file or nothing.
"""

from __future__ import annotations

import http.client
import os
import time

from ansible.module_utils.basic import AVAILABLE_HASH_ALGORITHMS, AnsibleModule
from ansible.module_utils.urls import fetch_url

DOCUMENTATION = r"""
module: llm_node_model_fetch
short_description: Download a file with HTTP Range resume, mirror fallback and a checksum
description:
  - Skips the download when I(dest) already matches I(checksum).
  - Otherwise tries each URL in order; an interrupted transfer continues from the bytes
    already in I(dest).part. The first URL whose complete file matches I(checksum) wins.
  - A complete file with another checksum is deleted and the next URL is tried.
options:
  urls:
    description: URLs of the same file, tried in order.
    type: list
    elements: str
    required: true
  dest:
    description: Path of the verified file.
    type: path
    required: true
  checksum:
    description: C(algorithm:hex), e.g. C(md5:...) or C(sha256:...).
    type: str
    required: true
  timeout:
    description: Socket timeout in seconds.
    type: int
    default: 120
  retries:
    description: How often one URL is retried (resuming) after an interruption.
    type: int
    default: 5
extends_documentation_fragment: files
"""

CHUNK = 1 << 20


def _fetch(module: AnsibleModule, url: str, part: str, timeout: int) -> str | None:
    """Append the rest of url to part; None when the file is complete, else why not."""
    offset = os.path.getsize(part) if os.path.exists(part) else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    resp, info = fetch_url(module, url, headers=headers, timeout=timeout, force=True)
    status = info.get("status", -1)
    if status == 416 and offset:
        return None  # part already holds the whole file: the checksum decides
    if status == 206:
        start = str(info.get("content-range", "")).removeprefix("bytes ").split("-", 1)[0]
        if start != str(offset):
            return f"the server answered the range from {offset} with {info.get('content-range')}"
        mode = "ab"
    elif status == 200:
        offset, mode = 0, "wb"  # the server ignores Range: start over
    else:
        return f"HTTP {status}: {info.get('msg', '')}".strip()
    length = info.get("content-length")
    expected = int(length) if length and str(length).isdigit() else None
    received = 0
    try:
        with open(part, mode) as out:
            while chunk := resp.read(CHUNK):
                out.write(chunk)
                received += len(chunk)
    except (OSError, http.client.HTTPException) as exc:
        return f"interrupted after {offset + received} bytes ({type(exc).__name__}: {exc})"
    if expected is not None and received < expected:
        return f"the connection closed after {offset + received} of {offset + expected} bytes"
    return None


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "urls": {"type": "list", "elements": "str", "required": True},
            "dest": {"type": "path", "required": True},
            "checksum": {"type": "str", "required": True},
            "timeout": {"type": "int", "default": 120},
            "retries": {"type": "int", "default": 5},
        },
        add_file_common_args=True,
        supports_check_mode=True,
    )
    dest, urls = module.params["dest"], module.params["urls"]
    algorithm, _, expected = module.params["checksum"].partition(":")
    expected = expected.strip().lower()
    if not urls or not expected or algorithm not in AVAILABLE_HASH_ALGORITHMS:
        module.fail_json(msg="give at least one URL and a checksum like md5:<hex> or sha256:<hex>")
    file_args = module.load_file_common_arguments(module.params)

    if os.path.exists(dest) and module.digest_from_file(dest, algorithm) == expected:
        changed = module.set_fs_attributes_if_different(file_args, False)
        module.exit_json(changed=changed, dest=dest, downloaded=False)
    if module.check_mode:
        module.exit_json(changed=True, dest=dest, downloaded=True)

    part = f"{dest}.part"
    errors: list[str] = []
    for url in urls:
        for attempt in range(module.params["retries"] + 1):
            error = _fetch(module, url, part, module.params["timeout"])
            if error is None:
                break
            errors.append(f"{url}: {error}")
            time.sleep(min(2**attempt, 30))
        else:
            continue
        digest = module.digest_from_file(part, algorithm)
        if digest != expected:
            os.remove(part)
            errors.append(f"{url}: served a file with {algorithm} {digest}, not {expected}")
            continue
        file_args["path"] = part
        module.set_fs_attributes_if_different(file_args, True)
        os.replace(part, dest)
        module.exit_json(changed=True, dest=dest, downloaded=True, url=url, errors=errors)

    kept = os.path.exists(part)
    module.fail_json(
        msg=(
            f"No URL served {os.path.basename(dest)} with {algorithm} {expected}. "
            + " | ".join(errors)
            + (
                f". The {os.path.getsize(part)} bytes received so far stay in {part}: "
                "run the playbook again to resume."
                if kept
                else ". Nothing was kept: check the URL list and the checksum."
            )
        ),
        errors=errors,
        partial=part if kept else None,
    )


if __name__ == "__main__":
    main()
