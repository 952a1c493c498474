"""A bounded inference pool: one thread per model replica and a bounded queue in front.

Inference is CPU (or GPU) bound and uses every thread torch is given, so running more images
at once than there are replicas only adds latency and memory. Each replica gets one worker
thread of its own (never the event loop, never AnyIO's shared thread pool); a request first
takes a place (``replicas + max_queue`` places in all) or is refused at once with
:class:`QueueFull`, which the app answers with 503 and ``Retry-After``.

A request that gives up (its deadline passed, or its client went away) cancels its job: a job
still waiting is removed from the queue and frees its place at once; a job already running is
asked to stop (:mod:`pixellib.runtime.cancel`): torch cannot be interrupted inside an
operation, but the model checks between its stages, so the job ends at the next stage boundary
(a fraction of one inference) with its result dropped, and its place is freed then. Work
outside the model (decoding the upload, drawing, encoding) runs to its end.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from ..errors import InvalidArgumentError
from ..runtime.cancel import Cancelled, cancellable

logger = logging.getLogger(__name__)


class QueueFull(Exception):
    """Every place (running and waiting) is taken."""


class _Job:
    __slots__ = ("fn", "loop", "future", "state", "queued_at", "stop")

    def __init__(self, fn, loop: asyncio.AbstractEventLoop):
        self.fn = fn
        self.loop = loop
        self.stop = threading.Event()  # set: the model stops at its next stage boundary
        self.future: asyncio.Future = loop.create_future()
        self.state = "queued"  # -> running -> done; or -> cancelled (queued) / abandoned
        self.queued_at = time.perf_counter()


class InferencePool:
    """Run ``fn(replica)`` for each submitted job on one of ``replicas``' worker threads."""

    def __init__(self, replicas: list, max_queue: int, *, torch_threads: int | None = None,
                 on_inference: Callable[[float], None] | None = None,
                 on_stopped: Callable[[float], None] | None = None):
        if not replicas:
            raise InvalidArgumentError("the pool needs at least one replica")
        self.capacity = len(replicas) + max_queue
        self._queue: deque[_Job] = deque()
        self._cond = threading.Condition()
        self._taken = 0  # places in use: queued + running (abandoned included)
        self._running = 0
        self._closed = False
        self._torch_threads = torch_threads
        self._on_inference = on_inference  # seconds of each inference that ran to its end
        self._on_stopped = on_stopped  # seconds of each one stopped part-way
        self._threads = [
            threading.Thread(target=self._work, args=(r,), name=f"pixellib-replica-{i}",
                             daemon=True)
            for i, r in enumerate(replicas)
        ]
        for t in self._threads:
            t.start()

    # ------------------------------------------------------------------ event-loop side

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def running(self) -> int:
        return self._running

    def submit(self, fn) -> _Job:
        """Queue ``fn``; raise :class:`QueueFull` when every place is taken."""
        job = _Job(fn, asyncio.get_running_loop())
        with self._cond:
            if self._closed:
                raise QueueFull("the server is shutting down")
            if self._taken >= self.capacity:
                raise QueueFull(f"all {self.capacity} places are taken")
            self._taken += 1
            self._queue.append(job)
            self._cond.notify()
        return job

    def cancel(self, job: _Job) -> None:
        """Give up on ``job``: removed if still queued, else its result is dropped."""
        with self._cond:
            if job.state == "queued":
                self._queue.remove(job)
                job.state = "cancelled"
                self._taken -= 1
            elif job.state == "running":
                job.state = "abandoned"
                job.stop.set()
        if not job.future.done():
            job.future.cancel()

    def close(self, wait: float = 0) -> bool:
        """Cancel the queued jobs and stop the workers once their job is done; with ``wait``,
        wait up to that many seconds for running jobs to finish (an interpreter that exits
        while a worker is inside torch aborts: "terminate called without an active
        exception"). Returns whether every worker has stopped."""
        with self._cond:
            self._closed = True
            for job in self._queue:
                job.state = "cancelled"
                job.loop.call_soon_threadsafe(_cancel_future, job.future)
            self._taken -= len(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        deadline = time.monotonic() + wait
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    # ------------------------------------------------------------------ worker side

    def _work(self, replica) -> None:
        if self._torch_threads:
            import torch

            torch.set_num_threads(self._torch_threads)
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                job = self._queue.popleft()
                job.state = "running"
                self._running += 1
            started = time.perf_counter()
            try:
                with cancellable(job.stop):
                    result, error = job.fn(replica), None
            except BaseException as e:  # noqa: BLE001 - handed to the waiting request
                result, error = None, e
            elapsed = time.perf_counter() - started
            with self._cond:
                self._running -= 1
                self._taken -= 1
                dropped = job.state == "abandoned"
                job.state = "done"
            stopped = isinstance(error, Cancelled)
            report = self._on_stopped if stopped else self._on_inference
            if report is not None:
                report(elapsed)
            if stopped:
                logger.info("stopped an abandoned request after %.2f s", elapsed)
                continue
            if dropped:
                logger.info("dropped the result of an abandoned request (%.2f s)", elapsed)
                continue
            try:
                job.loop.call_soon_threadsafe(_deliver, job.future, result, error)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass


def _deliver(future: asyncio.Future, result, error) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _cancel_future(future: asyncio.Future) -> None:
    if not future.done():
        future.cancel()
