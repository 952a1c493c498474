"""Large freed blocks are reused from the heap instead of faulted in again (pixellib.runtime.heap).

The setting is process-wide, so each case runs in a fresh interpreter.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pixellib.runtime import heap

ROOT = Path(__file__).parents[1]

# Page faults of twelve rounds of what a forward pass does: each op makes a new 64 MB map
# from the previous one, which is then freed.
PROBE = """
import json, resource, sys
import torch
from pixellib.runtime import heap
on = heap.reuse_freed_memory() if sys.argv[1] == "enable" else None
def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = torch.ones(16 << 20)
    for _ in range(4):
        x = x * 2
    del x
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"on": on, "faults": [faults() for _ in range(12)]}))
"""

# release_surplus after rounds of the same work: the first round grows the heap (trim);
# repeats settle (the heap may grow by fragmentation over the first ones), then regrow it to
# sizes it had (no trim); a round four times as large grows it past them (trim).
SURPLUS_PROBE = """
import json, sys
import torch
from pixellib.runtime import heap
def rss():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) >> 10 for line in f if line.startswith("VmRSS"))
def work(mb):
    x = torch.ones(mb << 18)
    for _ in range(4):
        x = x * 2
    del x
on = heap.reuse_freed_memory() if sys.argv[1] == "enable" else None
steps = []
for mb in [64] * 16 + [256]:
    work(mb)
    before = rss()
    steps.append({"mb": mb, "trimmed": heap.release_surplus(), "freed_mb": before - rss()})
print(json.dumps({"on": on, "steps": steps}))
"""

glibc_only = pytest.mark.skipif(heap._glibc() is None, reason="needs Linux with glibc")


def _probe(action: str, code: str = PROBE, **extra) -> dict:
    env = dict(os.environ)
    env.pop("PIXELLIB_NO_HEAP_REUSE", None)
    env.update(PYTHONPATH=str(ROOT), **extra)
    out = subprocess.run([sys.executable, "-c", code, action], env=env, cwd=ROOT,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@glibc_only
def test_freed_blocks_are_reused_without_page_faults():
    baseline = _probe("none")
    reused = _probe("enable")
    assert baseline["on"] is None and reused["on"] is True
    # The heap grows over the first rounds (how many varies with what is already in it);
    # then a round reuses it. Without reuse every round faults its 5 x 64 MB in again
    # (80,000 pages of 4 KB; far fewer with transparent huge pages, hence the guard).
    steady = slice(4, None)
    without, with_reuse = sum(baseline["faults"][steady]), sum(reused["faults"][steady])
    assert with_reuse <= without, (baseline, reused)
    if without >= 100_000:
        assert with_reuse * 5 < without, (baseline, reused)


@glibc_only
def test_off_switch_leaves_malloc_alone():
    off = _probe("enable", PIXELLIB_NO_HEAP_REUSE="1")
    assert off["on"] is False
    first, *later = off["faults"]
    if first >= 16384:
        assert min(later) * 2 > first, off


@glibc_only
def test_surplus_goes_back_when_the_heap_grows_past_its_largest_size():
    steps = _probe("enable", SURPLUS_PROBE)["steps"]
    first, settled, larger = steps[0], steps[-4:-1], steps[-1]
    assert first["trimmed"] and first["freed_mb"] >= 100, steps
    assert not any(step["trimmed"] for step in settled), steps
    assert larger["trimmed"] and larger["freed_mb"] >= 400, steps


@glibc_only
def test_no_release_without_reuse():
    steps = _probe("none", SURPLUS_PROBE)["steps"]
    assert not any(step["trimmed"] for step in steps)


def test_cpu_predictor_turns_it_on_and_releases_after_each_call(r50_model, monkeypatch):
    import numpy as np

    from pixellib.predictor import Predictor

    calls = []
    monkeypatch.setattr(heap, "reuse_freed_memory", lambda: calls.append("reuse") or True)
    monkeypatch.setattr(heap, "release_surplus", lambda: calls.append("release") or False)
    predictor = Predictor(r50_model)
    assert calls == ["reuse"]
    for _ in range(2):
        predictor(np.zeros((40, 60, 3), np.uint8))
    assert calls == ["reuse", "release", "release"]
