"""Let large tensors reuse freed memory instead of fresh pages from the kernel (glibc).

A default-size photo has 256-channel maps at stride 4 of about 55 MB each, and a forward
pass makes and frees dozens of tensors that large. glibc serves every block above its mmap
threshold (at most 32 MB) with a fresh ``mmap`` and gives it back with ``munmap`` when it is
freed, so each new map is faulted in and zeroed by the kernel page by page: measured,
120,000 page faults and ~0.1 s of a 1.5 s forward pass (a 64 -> 256 1x1 convolution took
20 ms instead of 10). With ``mmap`` off for large blocks and a high trim threshold, freed
blocks stay in the heap and the next tensor of that size reuses them: no faults after the
first images. Peak memory rises by ~0.25 GB (docs/benchmarks.md); the process keeps up to
:data:`TRIM_THRESHOLD` of freed memory at the top of its heap instead of returning it.

This is a process-wide malloc setting, made once when a CPU :class:`~pixellib.Predictor` is
created (as allocators like jemalloc, which PyTorch's CPU tuning guides recommend, do for the
whole process). ``PIXELLIB_NO_HEAP_REUSE=1`` leaves malloc alone. Elsewhere than Linux with
glibc it does nothing.
"""
from __future__ import annotations

import ctypes
import logging
import os
import sys
import threading

logger = logging.getLogger(__name__)

# mallopt parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
# Free memory at the heap's top beyond this is returned to the kernel.
TRIM_THRESHOLD = 1 << 30

_lock = threading.Lock()
_state: bool | None = None


def enabled() -> bool:
    """Heap reuse is on unless ``PIXELLIB_NO_HEAP_REUSE`` is set to a non-empty value."""
    return not os.environ.get("PIXELLIB_NO_HEAP_REUSE")


def _glibc():
    """The C library when it is glibc (it has ``mallopt`` and ``gnu_get_libc_version``)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    if not (hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version")):
        return None  # musl and others: their malloc works differently
    return libc


def reuse_freed_memory() -> bool:
    """Make malloc keep large freed blocks for reuse (once per process); whether it is on."""
    global _state
    with _lock:
        if _state is None:
            _state = False
            libc = _glibc() if enabled() else None
            if libc is not None:
                libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
                # mmap first: a trim threshold alone would also freeze glibc's mmap
                # threshold at 128 KB (slower). mallopt returns 1 on success, 0 if refused.
                _state = bool(libc.mallopt(M_MMAP_MAX, 0)
                              and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
                logger.debug("glibc heap reuse for large blocks: %s", _state)
        return _state
