"""Batches with several images in flight, each on a share of torch's threads (opt-in).

``PIXELLIB_BATCH_WORKERS=N`` runs N images at once on the CPU, each with 1/N of torch's
threads, so that one image's file reading, drawing, writing and single-threaded model steps
overlap another's convolutions. The default is one image at a time: on the 2-core machine
measured (docs/benchmarks.md), where reading, drawing and writing take under 1 % of a
batch and the model keeps both cores busy, two at a time gave no more images per second,
and it adds one image's working memory (~0.4 GB). Results are those of one image at a time,
up to float rounding (a different thread count sums in a different order).
"""
from __future__ import annotations

import collections
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

from ..errors import InvalidArgumentError
from ..wording import counted

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_WORKERS = 1


def batch_plan(device: str | torch.device = "cpu") -> tuple[int, int]:
    """``(images in flight, torch threads for each)`` for a batch on ``device``."""
    threads = torch.get_num_threads()
    if torch.device(device).type != "cpu":
        return 1, threads
    raw = os.environ.get("PIXELLIB_BATCH_WORKERS", "").strip()
    try:
        wanted = int(raw) if raw else DEFAULT_WORKERS
    except ValueError:
        wanted = 0
    if wanted < 1:  # 0 and -3 were taken for 1 without a word
        raise InvalidArgumentError(
            f"PIXELLIB_BATCH_WORKERS must be a whole number >= 1, got {raw!r}")
    workers = max(1, min(wanted, threads))
    if workers < wanted:
        _say_capped(wanted, workers, threads)
    return workers, max(1, threads // workers)


_capped_said: set[tuple[int, int]] = set()


def _say_capped(wanted: int, workers: int, threads: int) -> None:
    """Warn once per setting that fewer images run at once than asked (each needs a
    thread of torch's)."""
    if (wanted, threads) in _capped_said:
        return
    _capped_said.add((wanted, threads))
    logger.warning("PIXELLIB_BATCH_WORKERS=%d: %s at a time, as torch has %s (each image "
                   "needs one of them; torch.set_num_threads or OMP_NUM_THREADS sets more)",
                   wanted, counted(workers, "image"), counted(threads, "thread"))


def ordered_map(fn: Callable[[T], R], items: Iterable[T], *,
                device: str | torch.device = "cpu") -> Iterator[tuple[T, R]]:
    """``(item, fn(item))`` for every item, in order, with up to :func:`batch_plan` calls
    running at once. An exception raised by ``fn`` is raised here, at that item's turn;
    calls still running then finish before it propagates. torch's thread count is the
    same afterwards as before.
    """
    items = list(items)
    workers, threads = batch_plan(device)
    if workers == 1 or len(items) < 2:
        for item in items:
            yield item, fn(item)
        return
    previous = torch.get_num_threads()
    pool = ThreadPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(threads,),
                              thread_name_prefix="pixellib-batch")
    pending: collections.deque = collections.deque()
    try:
        for item in items:
            pending.append((item, pool.submit(fn, item)))
            if len(pending) >= workers:
                first, future = pending.popleft()
                yield first, future.result()
        while pending:
            first, future = pending.popleft()
            yield first, future.result()
    finally:
        for _, future in pending:
            future.cancel()
        pool.shutdown(wait=True)
        torch.set_num_threads(previous)
