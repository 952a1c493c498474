"""The read-ahead / write-behind pipeline: order, bounded memory, errors at their item."""
from __future__ import annotations

import threading
import time

import pytest

from pixellib.errors import ImageReadError, InvalidArgumentError
from pixellib.runtime.pipeline import (
    WriteBehind,
    overlap_enabled,
    pipelined,
    prefetch,
    run_batch,
)


def stages(log, in_flight, peak, fail_read=(), fail_compute=(), fail_finish=()):
    lock = threading.Lock()

    def read(i):
        with lock:
            in_flight.add(i)
            peak.append(len(in_flight))
        log.append(("read", i, threading.current_thread().name))
        if i in fail_read:
            raise ImageReadError(f"cannot read item {i}")
        time.sleep(0.002)
        return i * 10

    def compute(i, value):
        log.append(("compute", i, threading.current_thread().name))
        if i in fail_compute:
            raise ValueError(f"bad item {i}")
        return value + 1

    def finish(i, value):
        log.append(("finish", i, threading.current_thread().name))
        time.sleep(0.002)
        with lock:
            in_flight.discard(i)
        if i in fail_finish:
            raise OSError(f"disk full writing {i}")
        return value * 2

    return read, compute, finish


@pytest.mark.parametrize("overlap", [True, False])
def test_results_come_back_in_order_with_each_error_at_its_item(overlap):
    log, in_flight, peak = [], set(), []
    read, compute, finish = stages(log, in_flight, peak, fail_read={3}, fail_compute={5},
                                   fail_finish={7})
    out = list(pipelined(range(12), read, compute, finish, overlap=overlap, depth=2))
    assert [item for item, _ in out] == list(range(12))
    for item, outcome in out:
        if item == 3:
            assert isinstance(outcome.error, ImageReadError) and "item 3" in str(outcome.error)
        elif item == 5:
            assert isinstance(outcome.error, ValueError)
        elif item == 7:
            assert isinstance(outcome.error, OSError) and "7" in str(outcome.error)
        else:
            assert outcome.error is None and outcome.value == (item * 10 + 1) * 2
    # a failed stage stops that item: no compute after a failed read, no finish after compute
    assert ("compute", 3) not in [(s, i) for s, i, _ in log]
    assert ("finish", 5) not in [(s, i) for s, i, _ in log]
    computes = [i for s, i, _ in log if s == "compute"]
    assert computes == sorted(computes)
    main = threading.current_thread().name
    assert {t for s, _, t in log if s == "compute"} == {main}
    background = {t for s, _, t in log if s != "compute"}
    assert (background != {main}) if overlap else (background == {main})


def test_memory_is_bounded_by_depth():
    log, in_flight, peak = [], set(), []
    read, compute, finish = stages(log, in_flight, peak)
    for _ in pipelined(range(40), read, compute, finish, depth=2):
        time.sleep(0.001)  # a slow consumer must not let reading run away
    assert max(peak) <= 2 * 2 + 2


def test_stopping_early_joins_the_threads():
    before = threading.active_count()
    log, in_flight, peak = [], set(), []
    read, compute, finish = stages(log, in_flight, peak)
    gen = pipelined(range(100), read, compute, finish, depth=2)
    assert next(gen)[0] == 0
    gen.close()
    assert threading.active_count() == before
    assert len([1 for s, _, _ in log if s == "read"]) < 10


def test_bad_depth_is_refused():
    with pytest.raises(InvalidArgumentError, match="depth"):
        list(pipelined([1], lambda i: i, lambda i, v: v, lambda i, v: v, depth=0))


def test_prefetch_keeps_order_raises_at_its_turn_and_stops_its_thread():
    def frames():
        yield from range(5)
        raise ImageReadError("frame 6 is corrupt")

    seen = []
    with pytest.raises(ImageReadError, match="frame 6"):
        for x in prefetch(frames(), depth=2):
            seen.append(x)
    assert seen == list(range(5))

    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    source = endless()
    before = threading.active_count()
    gen = prefetch(source, depth=3)
    assert [next(gen) for _ in range(4)] == [0, 1, 2, 3]
    gen.close()
    assert threading.active_count() == before
    assert len(produced) <= 4 + 3 + 1  # bounded read-ahead
    source.close()  # the owner can close it: no other thread is inside it


def test_write_behind_runs_in_order_and_reports_the_first_error():
    done = []
    writes = WriteBehind(depth=2)
    for i in range(10):
        writes.submit(lambda i=i: (time.sleep(0.001), done.append(i)))
    writes.wait()
    assert done == list(range(10))

    def fail():
        raise OSError("disk full")

    writes = WriteBehind(depth=2)
    writes.submit(fail)
    with pytest.raises(OSError, match="disk full"):
        for _ in range(5):
            writes.submit(lambda: None)
        writes.wait()
    writes.close()

    inline = WriteBehind(enabled=False)
    inline.submit(done.append, "now")
    assert done[-1] == "now"  # ran at once on this thread
    with pytest.raises(OSError):
        inline.submit(fail)


def test_overlap_switch(monkeypatch):
    monkeypatch.delenv("PIXELLIB_OVERLAP", raising=False)
    assert overlap_enabled("cpu") is False
    assert overlap_enabled("cuda") is True
    monkeypatch.setenv("PIXELLIB_OVERLAP", "1")
    assert overlap_enabled("cpu") is True
    monkeypatch.setenv("PIXELLIB_OVERLAP", "0")
    assert overlap_enabled("cuda") is False
    monkeypatch.setenv("PIXELLIB_OVERLAP", "maybe")
    with pytest.raises(InvalidArgumentError, match="PIXELLIB_OVERLAP"):
        overlap_enabled("cpu")


@pytest.mark.parametrize("workers,overlap", [("1", "0"), ("1", "1"), ("2", "0")])
def test_run_batch_skips_bad_inputs_and_raises_bugs(monkeypatch, workers, overlap):
    """segmentBatch's and the CLI's loop: in parallel with PIXELLIB_BATCH_WORKERS > 1, else
    pipelined; a bad input is its item's outcome, any other error stops the batch."""
    import torch

    monkeypatch.setenv("PIXELLIB_BATCH_WORKERS", workers)
    monkeypatch.setenv("PIXELLIB_OVERLAP", overlap)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        log, in_flight, peak = [], set(), []
        read, compute, finish = stages(log, in_flight, peak, fail_read={2}, fail_finish={4})
        out = list(run_batch(range(8), read, compute, finish, skip=(ImageReadError, OSError)))
        assert [item for item, _ in out] == list(range(8))
        assert isinstance(out[2][1].error, ImageReadError)
        assert isinstance(out[4][1].error, OSError)
        assert all(o.error is None and o.value == (i * 10 + 1) * 2
                   for i, o in out if i not in (2, 4))
        threads = {t for _, _, t in log}
        if workers == "2":
            assert all(t.startswith("pixellib-batch") for t in threads), threads
        elif overlap == "1":
            assert any(t.startswith("pixellib-read") for t in threads), threads
        else:
            assert threads == {threading.current_thread().name}

        read, compute, finish = stages([], set(), [], fail_compute={5})
        with pytest.raises(ValueError, match="bad item 5"):
            list(run_batch(range(8), read, compute, finish, skip=(ImageReadError, OSError)))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)


def test_a_progress_bar_is_off_where_there_is_no_stderr(monkeypatch):
    """With no sys.stderr (a process started with 2>&-) the bar's first write raised
    AttributeError, so segmentBatch and process_video failed in scripts run so."""
    import sys

    from pixellib.runtime.progress import ProgressBar

    monkeypatch.setattr(sys, "stderr", None)
    with ProgressBar(range(3), desc="x") as bar:
        assert list(bar) == [0, 1, 2] and bar.disable
