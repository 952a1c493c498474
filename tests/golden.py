"""Golden cases of the reference (PixelLib 0.7.1) and the matching rule of its README."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DATA = Path(__file__).parent / "data"
IMAGES = DATA / "images"
MODES = ("default", "fast", "rapid")
R50_IMAGES = ("street.jpg", "small.jpg", "small_gray.png", "wide.jpg", "car_rgba.png")
X101_IMAGES = ("street.jpg", "small.jpg")
CASES = [("r50_seed0", img, mode) for img in R50_IMAGES for mode in MODES] + [
    ("x101_seed1", img, mode) for img in X101_IMAGES for mode in MODES
]


def load_case(model_dir: str, image: str, mode: str) -> dict:
    data = np.load(DATA / "golden" / model_dir / f"{Path(image).stem}.{mode}.npz")
    case = {k: data[k] for k in data.files}
    shape = tuple(case["mask_shape"])
    case["masks"] = np.unpackbits(case["masks"])[: int(np.prod(shape))].reshape(shape).astype(bool)
    return case


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    return inter / np.maximum(area_a[:, None] + area_b[None] - inter, 1e-12)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def percent(scores: np.ndarray) -> np.ndarray:
    return (np.asarray(scores, np.float32) * 100).astype(np.int64)


@dataclass
class CaseMatch:
    golden: int
    ours: int
    mask_ious: list[float] = field(default_factory=list)
    score_diffs: list[int] = field(default_factory=list)

    @property
    def unmatched(self) -> int:
        return self.golden + self.ours - 2 * len(self.mask_ious)

    @property
    def ok(self) -> bool:
        return (
            self.unmatched <= max(1, 0.02 * self.golden)
            and all(v >= 0.95 for v in self.mask_ious)
            and (not self.mask_ious or np.mean(self.mask_ious) >= 0.99)
            and all(d <= 1 for d in self.score_diffs)
        )

    def __str__(self) -> str:
        worst = min(self.mask_ious, default=1.0)
        mean = np.mean(self.mask_ious) if self.mask_ious else 1.0
        return (f"golden {self.golden}, ours {self.ours}, unmatched {self.unmatched}, "
                f"mask IoU mean {mean:.4f} worst {worst:.4f}, "
                f"max score diff {max(self.score_diffs, default=0)}")


def match(golden: dict, boxes, scores, classes, masks) -> CaseMatch:
    """Greedy pairing, highest golden score first, same class and box IoU >= 0.95."""
    result = CaseMatch(len(golden["scores"]), len(scores))
    ious = box_iou(golden["boxes"], boxes) if len(boxes) and len(golden["boxes"]) else None
    used = np.zeros(len(scores), bool)
    gp, op = percent(golden["scores"]), percent(scores)
    for g in np.argsort(-golden["scores"], kind="stable"):
        if ious is None:
            break
        cand = (~used) & (classes == golden["classes"][g]) & (ious[g] >= 0.95)
        if not cand.any():
            continue
        o = int(np.argmax(np.where(cand, ious[g], -1.0)))
        used[o] = True
        result.mask_ious.append(mask_iou(golden["masks"][g], masks[o]))
        result.score_diffs.append(int(abs(gp[g] - op[o])))
    return result
