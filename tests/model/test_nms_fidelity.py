"""Our batched NMS against torchvision's answers recorded from PixelLib's environment.

``tests/data/nms_near_ties.npz`` (written by ``tools/record_nms_near_ties.py`` with the
reference interpreter) holds boxes whose IoU sits within ~1e-4 of the threshold: there the
float32 coordinate-offset trick that torchvision uses for small inputs rounds differently
from exact per-class NMS, and PixelLib's detections follow the rounded decisions.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pixellib.model import nms as nms_mod
from pixellib.model import ops

DATA = Path(__file__).parents[1] / "data" / "nms_near_ties.npz"


def _cases():
    with np.load(DATA) as z:
        return [{key[len(f"{k}_"):]: z[key] for key in z.files if key.startswith(f"{k}_")}
                for k in range(int(z["count"]))]


CASES = _cases()


def test_recorded_cases_are_hard():
    # The file must hold cases where the rounded answer differs from exact per-class NMS,
    # otherwise the replay below would prove nothing about the offset trick.
    differ = [c for c in CASES if c["keep"].tolist() != c["keep_loop"].tolist()]
    assert len(differ) >= 10
    assert all(c["keep"].tolist() == c["keep_pixellib"].tolist() for c in CASES)
    assert any(c["boxes"].size > 4000 for c in CASES)  # the per-id loop branch too


def _use_torchvision_kernel(monkeypatch):
    monkeypatch.delenv("PIXELLIB_NO_TORCHVISION", raising=False)
    monkeypatch.setattr(ops, "_TV_OPS", ops._UNSET)
    if ops.torchvision_ops() is None:
        pytest.skip("torchvision's compiled ops do not load here (the reference env has them)")


def _replay(c):
    return ops.batched_nms(torch.from_numpy(c["boxes"]), torch.from_numpy(c["scores"]),
                           torch.from_numpy(c["ids"]), float(c["thr"]))


@pytest.mark.parametrize("k", range(len(CASES)))
def test_batched_nms_reproduces_torchvision(k):
    c = CASES[k]
    assert ops.torchvision_ops() is None  # conftest turns torchvision's kernels off
    got = _replay(c)
    assert got.dtype == torch.int64
    assert got.tolist() == c["keep"].tolist()


def test_torchvision_kernel_path_agrees(monkeypatch):
    """Where torchvision's kernels load (the reference environment), they give the same."""
    _use_torchvision_kernel(monkeypatch)
    assert [_replay(c).tolist() for c in CASES] == [c["keep"].tolist() for c in CASES]


def test_threshold_compared_as_double():
    # IoU 30/100 rounds to float32(0.3) = 0.30000001 > 0.3: torchvision suppresses.
    boxes = torch.tensor([[0.0, 0, 10, 10], [0.0, 0, 10, 3]])
    assert ops.nms(boxes, torch.tensor([0.9, 0.8]), 0.3).tolist() == [0]
    assert ops.nms(boxes, torch.tensor([0.9, 0.8]), 0.30000002).tolist() == [0, 1]


def test_equal_scores_keep_input_order():
    boxes = torch.tensor([[0.0, 0, 10, 10], [1.0, 0, 11, 10], [0.0, 1, 10, 11]])
    assert ops.nms(boxes, torch.full((3,), 0.5), 0.5).tolist() == [0]
    assert ops.nms(boxes[[2, 1, 0]], torch.full((3,), 0.5), 0.5).tolist() == [0]
    far = boxes + torch.tensor([[0.0, 0, 0, 0], [100, 0, 100, 0], [200, 0, 200, 0]])
    assert ops.nms(far, torch.full((3,), 0.5), 0.5).tolist() == [0, 1, 2]


def test_branch_limits(monkeypatch):
    # Just above the CPU limit the exact loop runs: the near-tie case then gives the loop's
    # answer; at the limit, the offset trick's.
    c = next(c for c in CASES if c["keep"].tolist() != c["keep_loop"].tolist())
    args = (torch.from_numpy(c["boxes"]), torch.from_numpy(c["scores"]),
            torch.from_numpy(c["ids"]), float(c["thr"]))
    n = c["boxes"].size
    monkeypatch.setattr(nms_mod, "_TRICK_LIMIT_CPU", n)
    assert ops.batched_nms(*args).tolist() == c["keep"].tolist()
    monkeypatch.setattr(nms_mod, "_TRICK_LIMIT_CPU", n - 1)
    assert ops.batched_nms(*args).tolist() == c["keep_loop"].tolist()


def test_large_shifted_nms_runs_per_id_with_the_same_answer(monkeypatch):
    """Off the CPU the offset trick takes up to 25000 boxes; past _DENSE_NMS_MAX the plain
    kernel runs per id on the shifted boxes instead of one N x N IoU matrix. Same kept
    boxes, same order (equal scores by index), on the recorded near-ties and on random
    boxes with tied scores."""
    g = torch.Generator().manual_seed(3)
    n = 1500
    xy = torch.rand(n, 2, generator=g) * 300
    wh = torch.rand(n, 2, generator=g) * 60 + 1
    random_case = {"boxes": torch.cat([xy, xy + wh], 1).numpy(),
                   "scores": (torch.randint(0, 40, (n,), generator=g) / 40.0).numpy(),
                   "ids": torch.randint(0, 7, (n,), generator=g).numpy(), "thr": 0.5}
    monkeypatch.setattr(nms_mod, "_TRICK_LIMIT_CPU", 10**9)  # the trick at any size
    cases = [c for c in CASES if len(c["boxes"]) > 1] + [random_case]
    monkeypatch.setattr(nms_mod, "_DENSE_NMS_MAX", 10**9)
    dense = [_replay(c).tolist() for c in cases]
    monkeypatch.setattr(nms_mod, "_DENSE_NMS_MAX", 1)
    calls = []
    real = nms_mod._nms_per_id
    monkeypatch.setattr(nms_mod, "_nms_per_id", lambda *a: calls.append(1) or real(*a))
    assert [_replay(c).tolist() for c in cases] == dense
    assert len(calls) == len(cases)
    assert len(dense[-1]) > 100  # the random case keeps many boxes, in several ids


def test_torchvision_probed_per_device(monkeypatch):
    """A torchvision whose kernels run on the CPU but not on another device (a CPU-only
    build beside a CUDA torch) is used on the CPU only."""

    class CpuOnlyOps:
        @staticmethod
        def nms(boxes, scores, thr):
            if boxes.device.type != "cpu":
                raise NotImplementedError("Could not run 'torchvision::nms' with arguments "
                                          f"from the '{boxes.device.type}' backend")
            return torch.zeros(0, dtype=torch.int64)

    fake = CpuOnlyOps()
    monkeypatch.setattr(ops, "_TV_OPS", fake)
    monkeypatch.setattr(ops, "_TV_DEVICES", {})
    assert ops.torchvision_ops() is fake
    assert ops.torchvision_ops(torch.device("cpu")) is fake
    assert ops.torchvision_ops(torch.device("meta")) is None
    assert ops._TV_DEVICES == {"meta": False}


def test_torchvision_import_is_lazy():
    import subprocess
    import sys

    code = ("import sys, pixellib.model.ops as o; "
            "assert 'torchvision' not in sys.modules; assert o._TV_OPS is o._UNSET")
    subprocess.run([sys.executable, "-c", code], check=True, env={"PATH": ""},
                   cwd=Path(__file__).parents[2], timeout=120)
