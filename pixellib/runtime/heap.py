"""Let large tensors reuse freed memory instead of fresh pages from the kernel (glibc).

A default-size photo has 256-channel maps at stride 4 of about 55 MB each, and a forward
pass makes and frees dozens of tensors that large. glibc serves every block above its mmap
threshold (at most 32 MB) with a fresh ``mmap`` and gives it back with ``munmap`` when it is
freed, so each new map is faulted in and zeroed by the kernel page by page: measured,
120,000 page faults and ~0.1 s of a 1.5 s forward pass (a 64 -> 256 1x1 convolution took
20 ms instead of 10). With ``mmap`` off for large blocks and a high trim threshold, freed
blocks stay in the heap and the next tensor of that size reuses them: no faults after the
first images.

The heap then keeps what it grew to. With inputs of one size (a video, photos from one
camera) that is the working set of one call. With ever new sizes the free blocks stop fitting
and the heap grows by fragmentation (measured over 90 photos of random sizes: 2.9 GB, against
2.1 GB without reuse), so after each call :func:`release_surplus` gives the free pages back to
the kernel (``malloc_trim``) when the heap grew past its largest size so far or holds more
than :data:`SURPLUS` free: the same 90 photos then peak at 1.9 GB, and a run of one size (or
a cycle of a few sizes) keeps its heap and has no faults after the first calls.

This is a process-wide malloc setting, so it is made only when asked for: by
``Predictor(..., heap_reuse=True)``, which the entry points that own their process pass (the
``pixellib`` command, PixelLib's ``instanceSegmentation``, the benchmark workers); a plain
library ``Predictor`` leaves malloc alone. Allocators like jemalloc, which PyTorch's CPU tuning
guides recommend, are likewise a choice made for the whole process. Once on, it stays on for
the process. ``PIXELLIB_NO_HEAP_REUSE=1`` keeps it off even when asked. Elsewhere than Linux
with glibc it does nothing.
"""
from __future__ import annotations

import ctypes
import logging
import os
import sys
import threading

from ..config import env_switch

logger = logging.getLogger(__name__)

# mallopt parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
# Free memory at the heap's top beyond this is returned to the kernel at once.
TRIM_THRESHOLD = 1 << 30
# release_surplus trims when the heap grew by more than GROWTH past its largest size so far,
# or holds more than SURPLUS free.
GROWTH = 32 << 20
SURPLUS = 1 << 30


class _MallInfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2`` (2.33+): byte counts as size_t."""

    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost",
    )]


_lock = threading.Lock()
_state: bool | None = None
_libc = None
_heap_size = 0  # the largest heap size (mallinfo2 "arena") release_surplus has seen


def enabled() -> bool:
    """Heap reuse is on unless ``PIXELLIB_NO_HEAP_REUSE`` is set (``1``; see
    :func:`pixellib.config.env_switch`)."""
    return not env_switch("PIXELLIB_NO_HEAP_REUSE")


def _glibc():
    """The C library when it is glibc 2.33+ (``mallopt``, ``mallinfo2``, ``malloc_trim``)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    names = ("mallopt", "mallinfo2", "malloc_trim", "gnu_get_libc_version")
    if not all(hasattr(libc, name) for name in names):
        return None  # musl, glibc before 2.33: not this malloc, or no way to watch it
    libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    libc.mallinfo2.restype = _MallInfo2
    libc.malloc_trim.argtypes = (ctypes.c_size_t,)
    return libc


def reuse_freed_memory() -> bool:
    """Make malloc keep large freed blocks for reuse (once per process); whether it is on."""
    global _state, _libc, _heap_size
    with _lock:
        if _state is None:
            _state = False
            libc = _glibc() if enabled() else None
            if libc is not None:
                # mmap first: a trim threshold alone would also freeze glibc's mmap
                # threshold at 128 KB (slower). mallopt returns 1 on success, 0 if refused.
                _state = bool(libc.mallopt(M_MMAP_MAX, 0)
                              and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
                logger.debug("glibc heap reuse for large blocks: %s", _state)
                if _state:
                    _libc, _heap_size = libc, libc.mallinfo2().arena
        return _state


def worker_env() -> dict[str, str]:
    """Environment variables for a process started to run inference with heap reuse on, off
    its main thread (a Ray Data actor runs its calls on a pool thread).

    glibc gives each thread its own arena, and a thread arena's heaps are capped at 64 MB:
    a 55 MB map there is carved from a fresh heap or mapped, and a larger one is always
    mapped, so the reuse above does not happen (measured in one process on the same photos:
    65,000-128,000 page faults per image on a pool thread, about 100 on the main thread).
    ``MALLOC_ARENA_MAX=1`` makes every thread allocate from the main heap, where it does.
    glibc reads it when the process starts, so it goes into the new process's environment.
    Empty when reuse is off (``PIXELLIB_NO_HEAP_REUSE``) or the caller set the variable."""
    if not enabled() or "MALLOC_ARENA_MAX" in os.environ:
        return {}
    return {"MALLOC_ARENA_MAX": "1"}


def release_surplus() -> bool:
    """Give free heap pages back to the kernel if the heap grew by more than :data:`GROWTH`
    past its largest size so far or holds more than :data:`SURPLUS` free (called after each
    image); whether it did. Nothing to do unless :func:`reuse_freed_memory` is on.

    Growing back to a size it had before is not growth: a cycle of a few image sizes then
    settles with no trims and no page faults."""
    global _heap_size
    if not _state:
        return False
    with _lock:
        info = _libc.mallinfo2()
        grew = info.arena > _heap_size + GROWTH
        _heap_size = max(_heap_size, info.arena)
        if grew or info.fordblks > SURPLUS:
            _libc.malloc_trim(0)
            return True
        return False
