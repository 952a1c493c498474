"""Two images in flight for batches (pixellib.runtime.parallel)."""
from __future__ import annotations

import logging
import threading
import time

import pytest
import torch

from pixellib.runtime import parallel


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_plan(two_threads, monkeypatch, caplog):
    monkeypatch.delenv("PIXELLIB_BATCH_WORKERS", raising=False)
    assert parallel.batch_plan("cpu") == (1, 2)  # the default: one image at a time
    monkeypatch.setenv("PIXELLIB_BATCH_WORKERS", "2")
    assert parallel.batch_plan("cpu") == (2, 1)
    assert parallel.batch_plan("cuda") == (1, 2)
    monkeypatch.setenv("PIXELLIB_BATCH_WORKERS", "8")  # never more than the threads
    monkeypatch.setattr(parallel, "_capped_said", set())
    with caplog.at_level(logging.WARNING, logger="pixellib.runtime.parallel"):
        assert parallel.batch_plan() == (2, 1)
        assert parallel.batch_plan() == (2, 1)
    # said, once: with one thread, "2" did nothing without a word
    assert [r.getMessage() for r in caplog.records] == [
        "PIXELLIB_BATCH_WORKERS=8: 2 images at a time, as torch has 2 threads (each image "
        "needs one of them; torch.set_num_threads or OMP_NUM_THREADS sets more)"]
    for raw in ("two", "0", "-3"):  # 0 and -3 were taken for 1 without a word
        monkeypatch.setenv("PIXELLIB_BATCH_WORKERS", raw)
        with pytest.raises(ValueError, match=f"PIXELLIB_BATCH_WORKERS must be a whole number "
                                             f">= 1, got '{raw}'"):
            parallel.batch_plan()


@pytest.fixture
def two_workers(two_threads, monkeypatch):
    monkeypatch.setenv("PIXELLIB_BATCH_WORKERS", "2")


def test_order_kept_two_in_flight_threads_split_and_restored(two_workers):
    lock = threading.Lock()
    running, most, seen = [0], [0], []

    def work(item):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
            seen.append((threading.current_thread().name, torch.get_num_threads()))
        time.sleep(0.05 if item % 3 == 0 else 0.005)  # later items often finish first
        with lock:
            running[0] -= 1
        return item * item

    out = list(parallel.ordered_map(work, range(10)))
    assert out == [(i, i * i) for i in range(10)]
    assert most[0] == 2
    assert all(name.startswith("pixellib-batch") and n == 1 for name, n in seen)
    assert torch.get_num_threads() == 2


def test_sequential_when_switched_off(two_threads, monkeypatch):
    monkeypatch.setenv("PIXELLIB_BATCH_WORKERS", "1")
    names = []
    out = list(parallel.ordered_map(
        lambda i: names.append(threading.current_thread().name) or i, [3, 1, 2]))
    assert out == [(3, 3), (1, 1), (2, 2)]
    assert set(names) == {threading.current_thread().name}


def test_an_error_surfaces_at_its_turn_after_earlier_results(two_workers):
    def work(item):
        if item == 2:
            raise RuntimeError("boom at 2")
        return item

    got = []
    with pytest.raises(RuntimeError, match="boom at 2"):
        for _item, result in parallel.ordered_map(work, range(6)):
            got.append(result)
    assert got == [0, 1]
    assert torch.get_num_threads() == 2


def test_stopping_early_shuts_the_workers_down(two_workers):
    started = []
    gen = parallel.ordered_map(lambda i: started.append(i) or i, range(100))
    assert next(gen) == (0, 0)
    gen.close()
    assert len(started) <= 4
    assert torch.get_num_threads() == 2
    assert not [t for t in threading.enumerate() if t.name.startswith("pixellib-batch")]
