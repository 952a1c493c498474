"""Record torchvision's batched NMS answers on constructed near-tie boxes.

Run once with the PixelLib 0.7.1 reference interpreter (torch + torchvision's compiled ops):

    /root/.cache/pixellib-reference/bin/python tools/record_nms_near_ties.py

It writes ``tests/data/nms_near_ties.npz``; ``tests/test_nms_fidelity.py`` replays every case
through our NMS (no torchvision needed at test time). Each case ``k`` stores ``k_boxes``
(N, 4) float32, ``k_scores`` float32, ``k_ids`` int64, ``k_thr``, ``k_keep`` (torchvision's
``batched_nms``), ``k_keep_pixellib`` (PixelLib's own ``batched_nms`` wrapper) and
``k_keep_loop`` (exact NMS per id, for contrast).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torchvision.ops as tv

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "nms_near_ties.npz"


def per_id_loop(boxes, scores, ids, thr):
    keep = []
    for i in torch.unique(ids).tolist():
        idx = torch.nonzero(ids == i).view(-1)
        keep += idx[tv.nms(boxes[idx], scores[idx], thr)].tolist()
    return sorted(keep, key=lambda k: (-float(scores[k]), k))


def near_tie_case(rng, n_pairs, thr, extent):
    """Pairs of boxes of one class whose exact IoU sits within ~1e-4 of ``thr``."""
    boxes, scores, ids = [], [], []
    for _ in range(n_pairs):
        w, h = rng.uniform(20, 300, 2)
        x0, y0 = rng.uniform(0, extent - 2 * w), rng.uniform(0, extent - h)
        d = w * (1 - thr) / (1 + thr) + rng.normal(0, 0.004)  # IoU (w-d)/(w+d) ~ thr
        a = [x0, y0, x0 + w, y0 + h]
        b = [x0 + d, y0, x0 + d + w, y0 + h]
        c = int(rng.integers(40, 80))
        s = rng.uniform(0.06, 0.99, 2)
        boxes += [a, b]
        scores += [max(s), min(s)]
        ids += [c, c]
    boxes.append([0.0, 0.0, extent, extent])  # sets max_coordinate
    scores.append(0.05)
    ids.append(0)
    return (torch.tensor(np.array(boxes), dtype=torch.float32),
            torch.tensor(scores, dtype=torch.float32), torch.tensor(ids))


def main() -> int:
    from pixellib.torchbackend.instance.layers.nms import batched_nms as pixellib_batched_nms

    rng = np.random.default_rng(2024)
    cases = []
    # 1. box-head-like near ties (numel <= 4000: offset trick) where trick and loop disagree
    tries = 0
    while sum(c[4] for c in cases) < 16 and tries < 5000:
        tries += 1
        boxes, scores, ids = near_tie_case(rng, int(rng.integers(5, 40)), 0.5, 1333.0)
        differs = tv.batched_nms(boxes, scores, ids, 0.5).tolist() != per_id_loop(
            boxes, scores, ids, 0.5)
        if differs:
            cases.append((boxes, scores, ids, 0.5, True))
    # 2. the same construction where both agree (a control)
    for _ in range(4):
        boxes, scores, ids = near_tie_case(rng, 20, 0.5, 800.0)
        cases.append((boxes, scores, ids, 0.5, False))
    # 3. RPN-like: 5 levels, > 1000 boxes (numel > 4000: the per-id loop), IoU 0.7
    for n in (1001, 1300):
        boxes, scores, ids = near_tie_case(rng, n // 2, 0.7, 1067.0)
        ids = torch.tensor(rng.integers(0, 5, len(ids)))
        cases.append((boxes, scores, ids, 0.7, False))
    # 4. equal scores: the order among ties (stable sort) decides which box survives
    xy = rng.uniform(0, 400, (60, 2)).astype(np.float32)
    boxes = torch.tensor(np.concatenate([xy, xy + rng.uniform(30, 90, (60, 2))], 1),
                         dtype=torch.float32)
    scores = torch.tensor(np.repeat(rng.uniform(0.1, 0.9, 6), 10).astype(np.float32))
    cases.append((boxes, scores, torch.tensor(rng.integers(0, 3, 60)), 0.3, False))
    cases.append((boxes, torch.full((60,), 0.5), torch.zeros(60, dtype=torch.int64), 0.5, False))
    # 5. IoU exactly float32(0.3) (> 0.3 in double): the kernel compares with the double
    boxes = torch.tensor([[0.0, 0, 10, 10], [0.0, 0, 10, 3], [50, 50, 60, 60], [50, 50, 60, 53]])
    cases.append((boxes, torch.tensor([0.9, 0.8, 0.7, 0.6]), torch.tensor([0, 0, 1, 1]), 0.3,
                  False))

    arrays = {}
    for k, (boxes, scores, ids, thr, _) in enumerate(cases):
        keep = tv.batched_nms(boxes, scores, ids, thr)
        assert keep.tolist() == pixellib_batched_nms(boxes, scores, ids, thr).tolist()
        arrays.update({
            f"{k}_boxes": boxes.numpy(), f"{k}_scores": scores.numpy(),
            f"{k}_ids": ids.numpy().astype(np.int64), f"{k}_thr": np.float64(thr),
            f"{k}_keep": keep.numpy(),
            f"{k}_keep_pixellib": pixellib_batched_nms(boxes, scores, ids, thr).numpy(),
            f"{k}_keep_loop": np.array(per_id_loop(boxes, scores, ids, thr), dtype=np.int64),
        })
    arrays["count"] = np.int64(len(cases))
    arrays["versions"] = np.array(f"torch {torch.__version__}, torchvision "
                                  f"{__import__('torchvision').__version__}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, **arrays)
    n_diff = sum(c[4] for c in cases)
    print(f"{len(cases)} cases ({n_diff} where the offset trick and the loop disagree, "
          f"after {tries} tries) -> {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
