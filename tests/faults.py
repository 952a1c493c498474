"""Faults injected into the environment, not into the code under test."""
from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path


def full_disk_for(name: str, write):
    """``write`` (a ``write_image``) that fails as a full disk does for files called
    ``name``, and writes every other file."""

    def write_or_fail(path, image, *args, **kwargs):
        if Path(path).name == name:
            raise OSError(errno.ENOSPC, f"cannot write {str(path)!r}: No space left on device")
        return write(path, image, *args, **kwargs)

    return write_or_fail


def without_root_powers(argv: list[str]) -> list[str]:
    """``argv`` run with file permissions applying: root otherwise reads and writes
    anywhere (CI runs as root)."""
    if os.geteuid() != 0:
        return argv
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}", "--", *argv]


def run_locked_out(argv: list[str], locked: Path, **kwargs) -> subprocess.CompletedProcess:
    """Run ``argv`` with permissions applying (:func:`without_root_powers`), text output
    captured; the folder ``locked`` is made writable again afterwards (0o755)."""
    try:
        return subprocess.run(without_root_powers(argv), capture_output=True, text=True,
                              timeout=kwargs.pop("timeout", 120), **kwargs)
    finally:
        locked.chmod(0o755)
