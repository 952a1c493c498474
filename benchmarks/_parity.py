"""Comparing saved detections under the golden rule of ``tests/golden.py`` (imported, not copied).

``bench.py`` saves each implementation's raw model outputs as ``<stem>.npz`` (the fields of the
golden files: ``boxes``, ``scores``, ``classes``, packed ``masks`` and ``mask_shape``) and pairs
them here: ours against the live reference, ours and the reference against the stored golden
outputs of ``tests/data/golden`` where the checkpoint, mode and confidence are the golden ones.
"""
from __future__ import annotations

import importlib.util
import sys
from functools import cache
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GOLDEN_DIRS = {"r50": "r50_seed0", "x101": "x101_seed1"}


@cache
def golden_module():
    """``tests/golden.py``: the matching rule, loaded by path (tests/ is not a package)."""
    spec = importlib.util.spec_from_file_location("_pixellib_golden", ROOT / "tests" / "golden.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def load(path: Path) -> dict:
    """A saved ``.npz`` (bench or golden format) with ``masks`` unpacked to (N, H, W) bool."""
    with np.load(path) as data:
        case = {k: data[k] for k in data.files}
    shape = tuple(int(v) for v in case["mask_shape"])
    case["masks"] = (np.unpackbits(case["masks"])[: int(np.prod(shape))]
                     .reshape(shape).astype(bool))
    return case


def compare(expected: dict, actual: dict):
    """``CaseMatch`` of ``actual`` against ``expected`` (the golden side)."""
    return golden_module().match(expected, actual["boxes"], actual["scores"], actual["classes"],
                                 actual["masks"])


def golden_path(model: str, stem: str, mode: str) -> Path | None:
    """Stored golden output for this case, or None when there is none."""
    folder = GOLDEN_DIRS.get(model)
    if folder is None:
        return None
    path = ROOT / "tests" / "data" / "golden" / folder / f"{stem}.{mode}.npz"
    return path if path.exists() else None


def summarize(case) -> dict:
    """JSON-friendly figures of one ``CaseMatch``."""
    ious = case.mask_ious
    return {
        "ok": bool(case.ok),
        "expected": case.golden,
        "actual": case.ours,
        "unmatched": case.unmatched,
        "mean_iou": float(np.mean(ious)) if ious else None,
        "worst_iou": float(min(ious)) if ious else None,
        "max_score_diff": max(case.score_diffs, default=0),
        "ious": [float(v) for v in ious],
    }


def compare_dirs(model: str, mode: str, golden_ok: bool, ours: Path | None,
                 ref: Path | None, stems: list[str]) -> list[dict]:
    """One row per image: ours vs reference, ours vs golden, reference vs golden."""
    rows = []
    for stem in stems:
        row = {"stem": stem}
        o = load(ours / f"{stem}.npz") if ours and (ours / f"{stem}.npz").exists() else None
        r = load(ref / f"{stem}.npz") if ref and (ref / f"{stem}.npz").exists() else None
        g_path = golden_path(model, stem, mode) if golden_ok else None
        g = load(g_path) if g_path else None
        if o is not None and r is not None:
            row["ours_vs_ref"] = summarize(compare(r, o))
        if o is not None and g is not None:
            row["ours_vs_golden"] = summarize(compare(g, o))
        if r is not None and g is not None:
            row["ref_vs_golden"] = summarize(compare(g, r))
        rows.append(row)
    return rows
