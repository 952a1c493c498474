"""Stopping a running inference part-way, at the next stage boundary.

Torch cannot be interrupted inside an operation, so a caller that gives up on an inference
(the server, when a request passes its timeout or its client leaves) could only drop the
result once the whole inference had run: seconds of a replica spent for nobody. Instead the
model checks, between its stages (each backbone stage, the FPN, the RPN, the box head, each
mask subdivision step), whether the work running on this thread was asked to stop, and if so
raises :class:`Cancelled`. A check is one thread-local lookup; with no :func:`cancellable`
around the call it does nothing, so library calls behave exactly as before.

``Cancelled`` derives from ``BaseException``, like ``KeyboardInterrupt``: code that carries on
past a failed item (``except Exception``, as ``segmentBatch`` does) does not swallow it.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

try:  # torch >= 2.3
    from torch.compiler import is_compiling as _tracing
except ImportError:
    try:  # torch 2.1, 2.2
        from torch._dynamo import is_compiling as _tracing
    except ImportError:  # no dynamo at all: nothing traces the model

        def _tracing() -> bool:
            return False

_local = threading.local()


class Cancelled(BaseException):
    """The work on this thread was asked to stop (see :func:`cancellable`)."""


@contextmanager
def cancellable(stop: threading.Event) -> Iterator[None]:
    """Within this block, :func:`check` on this thread raises :class:`Cancelled` once
    ``stop`` is set (from any thread)."""
    previous = getattr(_local, "stop", None)
    _local.stop = stop
    try:
        yield
    finally:
        _local.stop = previous


def check() -> None:
    """Raise :class:`Cancelled` if the work on this thread was asked to stop. Nothing
    while torch.compile or the ONNX exporter traces the model (a constant to them)."""
    if _tracing():
        return
    stop = getattr(_local, "stop", None)
    if stop is not None and stop.is_set():
        raise Cancelled("stopped part-way by its caller")
