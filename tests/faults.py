"""Faults injected into the environment, not into the code under test."""
from __future__ import annotations

import errno
from pathlib import Path


def full_disk_for(name: str, write):
    """``write`` (a ``write_image``) that fails as a full disk does for files called
    ``name``, and writes every other file."""

    def write_or_fail(path, image, *args, **kwargs):
        if Path(path).name == name:
            raise OSError(errno.ENOSPC, f"cannot write {str(path)!r}: No space left on device")
        return write(path, image, *args, **kwargs)

    return write_or_fail
