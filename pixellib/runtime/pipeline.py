"""Overlap the work around the model with the model: read ahead, finish behind.

:func:`pipelined` runs three stages per item: ``read`` (decode a file) on a background
thread, up to ``depth`` items ahead; ``compute`` (the model) on the calling thread, in order;
``finish`` (draw, encode, write) on another background thread, at most ``depth`` items
behind. Results come back in input order, and at most about ``2 * depth + 1`` items are in
memory at once.

Whether it pays depends on the machine. On a GPU the forward takes tens of milliseconds and
decoding, drawing and encoding on the host as long, so overlapping them is most of the
throughput. On a small CPU the model already keeps every core busy and the other stages are
~1 % of the time: the extra threads then only compete with torch's (docs/benchmarks.md has the
measurement). :func:`overlap_enabled` holds that choice: on for CUDA, off on the CPU, and
``PIXELLIB_OVERLAP=1`` / ``0`` forces it either way.
"""
from __future__ import annotations

import collections
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from queue import Full, Queue
from typing import Any

from ..config import FALSE_WORDS, TRUE_WORDS
from ..errors import InvalidArgumentError

DEFAULT_DEPTH = 2


def overlap_enabled(device="cpu") -> bool:
    """Whether batch and video loops on ``device`` overlap reading and writing with the
    model (see the module notes); ``PIXELLIB_OVERLAP`` overrides the default."""
    raw = os.environ.get("PIXELLIB_OVERLAP", "").strip().lower()
    if raw in TRUE_WORDS:
        return True
    if raw in FALSE_WORDS:
        return False
    if raw:
        raise InvalidArgumentError(f"PIXELLIB_OVERLAP must be 1 or 0, got {raw!r}")
    import torch

    return torch.device(device).type == "cuda"


class Outcome:
    """One item's result through the stages: ``value``, or the ``error`` that stopped it
    (raised by whichever stage failed; the later stages did not run)."""

    __slots__ = ("error", "value")

    def __init__(self, value: Any = None, error: BaseException | None = None):
        self.value, self.error = value, error


def run_outcome(fn: Callable, *args) -> Outcome:
    """``fn(*args)`` as an :class:`Outcome`, its ``Exception`` kept rather than raised."""
    try:
        return Outcome(fn(*args))
    except Exception as exc:  # noqa: BLE001 - handed to the caller with its item
        return Outcome(error=exc)


def pipelined(items: Iterable, read: Callable, compute: Callable, finish: Callable, *,
              overlap: bool = True, depth: int = DEFAULT_DEPTH) -> Iterator[tuple[Any, Outcome]]:
    """``(item, Outcome)`` for every item, in order, where the outcome's value is
    ``finish(item, compute(item, read(item)))``.

    An exception (``Exception``) raised by a stage becomes that item's ``Outcome.error`` and
    the next items go on: deciding what is fatal is the caller's (it can stop iterating,
    and the threads are then stopped and joined). ``overlap=False`` runs the three stages
    one after another on the calling thread, the same calls in the same order.
    """
    if not overlap:
        for item in items:
            outcome = run_outcome(read, item)
            if outcome.error is None:
                outcome = run_outcome(compute, item, outcome.value)
            if outcome.error is None:
                outcome = run_outcome(finish, item, outcome.value)
            yield item, outcome
        return
    if depth < 1:
        raise InvalidArgumentError(f"depth must be >= 1, got {depth!r}")
    readers = ThreadPoolExecutor(1, thread_name_prefix="pixellib-read")
    finishers = ThreadPoolExecutor(1, thread_name_prefix="pixellib-finish")
    reading: collections.deque[tuple[Any, Future]] = collections.deque()
    finishing: collections.deque[tuple[Any, Future | Outcome]] = collections.deque()
    source = iter(items)
    try:
        exhausted = False
        while True:
            while not exhausted and len(reading) < depth:
                item = next(source, _END)
                if item is _END:
                    exhausted = True
                else:
                    reading.append((item, readers.submit(run_outcome, read, item)))
            if not reading:
                break
            item, future = reading.popleft()
            outcome = future.result()
            if outcome.error is None:
                outcome = run_outcome(compute, item, outcome.value)
            if outcome.error is None:
                finishing.append((item, finishers.submit(run_outcome, finish, item, outcome.value)))
            else:
                finishing.append((item, outcome))
            while len(finishing) > depth:
                yield _settle(finishing.popleft())
        while finishing:
            yield _settle(finishing.popleft())
    finally:
        for _, future in reading:
            future.cancel()
        for _, pending in finishing:
            if isinstance(pending, Future):
                pending.cancel()
        readers.shutdown(wait=True)
        finishers.shutdown(wait=True)


def run_batch(items: Iterable, read: Callable, compute: Callable, finish: Callable, *,
              device="cpu", skip: type[BaseException] | tuple = ()
              ) -> Iterator[tuple[Any, Outcome]]:
    """``(item, Outcome)`` per item, in order: how the image batch loops (``segmentBatch``,
    ``pixellib segment``) run their three stages.

    With ``PIXELLIB_BATCH_WORKERS`` > 1 (:func:`pixellib.runtime.parallel.batch_plan`) several
    items go at once, each through all three stages on a worker; otherwise :func:`pipelined`,
    overlapping where :func:`overlap_enabled` says it pays on ``device``. An error of a
    ``skip`` type (a bad input) is its item's ``Outcome.error`` and the batch goes on; any
    other error is raised here (a bug, not a bad file).
    """
    from .parallel import batch_plan, ordered_map

    if batch_plan(device)[0] > 1:
        done = ordered_map(lambda item: run_outcome(
            lambda: finish(item, compute(item, read(item)))), items, device=device)
    else:
        done = pipelined(items, read, compute, finish, overlap=overlap_enabled(device))
    for item, outcome in done:
        if outcome.error is not None and not isinstance(outcome.error, skip):
            raise outcome.error
        yield item, outcome


_END = object()


def _settle(entry: tuple[Any, Future | Outcome]) -> tuple[Any, Outcome]:
    item, pending = entry
    return item, pending.result() if isinstance(pending, Future) else pending


def prefetch(iterable: Iterable, depth: int = DEFAULT_DEPTH) -> Iterator:
    """The items of ``iterable``, produced on a background thread up to ``depth`` ahead (for
    a decoder: the next frames decode while the current one is processed).

    An exception raised by the iterable is raised here at its turn. Closing this generator
    (or leaving a ``for`` loop) stops the thread and joins it, so the iterable can then be
    closed by its owner.
    """
    queue: Queue = Queue(maxsize=depth)
    stop = threading.Event()

    def produce():
        try:
            for item in iterable:
                while not stop.is_set():
                    try:
                        queue.put((True, item), timeout=0.05)
                        break
                    except Full:
                        continue
                if stop.is_set():
                    return
            queue_put(queue, stop, (False, _END))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
            queue_put(queue, stop, (False, exc))

    thread = threading.Thread(target=produce, name="pixellib-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            ok, item = queue.get()
            if ok:
                yield item
            elif item is _END:
                return
            else:
                raise item
    finally:
        stop.set()
        thread.join()


def queue_put(queue: Queue, stop: threading.Event, entry) -> None:
    """Put ``entry`` unless ``stop`` is set first (the consumer has gone)."""
    while not stop.is_set():
        try:
            queue.put(entry, timeout=0.05)
            return
        except Full:
            continue


class WriteBehind:
    """Calls run one at a time, in order, on a background thread, at most ``depth`` waiting
    (for an encoder: the previous frame encodes while the next one is computed).

    :meth:`submit` blocks while ``depth`` calls are pending and raises the first error of
    an earlier call; :meth:`wait` runs everything submitted and raises that error too.
    With ``enabled=False`` every call runs at once on the calling thread.
    """

    def __init__(self, *, enabled: bool = True, depth: int = DEFAULT_DEPTH):
        self.enabled, self.depth = enabled, depth
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="pixellib-write") \
            if enabled else None
        self._pending: collections.deque[Future] = collections.deque()

    def submit(self, fn: Callable, *args) -> None:
        if self._pool is None:
            fn(*args)
            return
        while self._pending and (self._pending[0].done() or len(self._pending) >= self.depth):
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(fn, *args))

    def wait(self) -> None:
        """Finish every submitted call; the first error among them is raised."""
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            self.close()

    def close(self) -> None:
        """Let the running call finish, drop the pending ones, stop the thread."""
        for future in self._pending:
            future.cancel()
        self._pending.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
