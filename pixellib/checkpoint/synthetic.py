"""Deterministic synthetic checkpoints with the exact format, names and shapes of PixelLib's
``pointrend_resnet50.pkl`` / ``pointrend_resnet101.pkl``, for tests and benchmarks.

The value recipe is docs/design.md, "Synthetic test checkpoints": random weights scaled so that
activations stay O(1) on real photos, so detections and masks vary by image.

    python -m pixellib.checkpoint.synthetic ARCH SEED OUT.pkl [--legacy-names]
    python -m pixellib.checkpoint.synthetic ARCH SEED --digest
"""
from __future__ import annotations

import argparse
import hashlib
import math
import os
import pickle
from pathlib import Path

import numpy as np

from ..media.files import atomic_path
from ..model.detector import state_dict_shapes
from . import state_dict as weights

ANCHOR_SIZES = (32, 64, 128, 256, 512)
ANCHOR_RATIOS = (0.5, 1.0, 2.0)

# Extra factors on drawn weights, by key substring: small RPN/box regressions, damped logits.
WEIGHT_FACTORS = (
    ("rpn_head.objectness_logits.weight", 0.5),
    ("rpn_head.anchor_deltas.weight", 0.05),
    ("box_predictor.bbox_pred.weight", 0.05),
)

# Modern name prefix -> pre-Nov-2020 detectron2 name prefix (first match wins): the inverse
# of the loader's rename table, without its entries for intermediate (same-parent) names.
CURRENT_TO_LEGACY = tuple(
    (new, old) for old, new in weights.LEGACY_PREFIXES
    if not old.startswith("roi_heads.mask_head.")
)


def _draw(rng: np.random.RandomState, key: str, shape: tuple[int, ...], resnext: bool):
    n = int(np.prod(shape))
    if key.endswith("norm.weight"):
        a = rng.uniform(0.5, 1.5, n)
        if ".conv3.norm." in key:
            a *= 0.25  # damp the residual branch so 23 ResNeXt blocks stay stable
    elif key.endswith(("norm.bias", "norm.running_mean")):
        a = rng.normal(0.0, 0.1, n)
    elif key.endswith("norm.running_var"):
        a = rng.uniform(0.5, 1.5, n)
    elif key.endswith(".bias"):
        a = rng.normal(0.0, 0.05, n)
        if key == "roi_heads.box_predictor.cls_score.bias":
            a[-1] += 2.0  # background favoured: only some proposals become detections
    elif key.endswith(".weight"):
        fan_in = int(np.prod(shape[1:]))
        gain = 2.0 if len(shape) in (3, 4) else 1.0
        a = rng.normal(0.0, math.sqrt(gain / fan_in), n)
        for pattern, factor in WEIGHT_FACTORS:
            if pattern in key:
                a *= factor
        if key.endswith("stem.conv1.weight") and not resnext:
            a *= 1.0 / 64  # ResNet-50 sees pixel - mean with no division by a std
        if "fpn_" in key:
            a *= 0.27 if resnext else 0.5
    else:
        raise KeyError(f"no recipe for checkpoint key {key!r}")
    a = a.reshape(shape)
    if key == "roi_heads.box_predictor.cls_score.weight":
        a = a - a.mean(axis=1, keepdims=True)
    return a.astype(np.float32)


def cell_anchor_arrays() -> dict[str, np.ndarray]:
    """The five unused ``cell_anchors`` arrays real model-zoo files carry."""
    out = {}
    for i, size in enumerate(ANCHOR_SIZES):
        rows = []
        for ratio in ANCHOR_RATIOS:
            w = math.sqrt(float(size) ** 2 / ratio)
            h = ratio * w
            rows.append([-w / 2, -h / 2, w / 2, h / 2])
        out[f"proposal_generator.anchor_generator.cell_anchors.{i}"] = np.array(rows, np.float32)
    return out


def make_checkpoint(arch: str = "resnet50", seed: int = 0) -> dict[str, np.ndarray]:
    """``{name: float32 array}`` for ``arch`` ("resnet50", "resnet101", "resnext101_32x8d")."""
    shapes = state_dict_shapes(arch)
    resnext = shapes["backbone.bottom_up.res2.0.conv2.weight"][1] == 8
    rng = np.random.RandomState(seed)
    model = {key: _draw(rng, key, shapes[key], resnext) for key in sorted(shapes)}
    model.update(cell_anchor_arrays())
    return model


def to_legacy_names(model: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The same weights under pre-Nov-2020 detectron2 names (what old checkpoints hold)."""
    out = {}
    for key, value in model.items():
        for new, old in CURRENT_TO_LEGACY:
            if key.startswith(new):
                key = old + key[len(new):]
                break
        out[key] = value
    return out


def digest(model: dict[str, np.ndarray]) -> str:
    """sha256 over sorted ``name + NUL + float32 bytes``: the checkpoint's digest
    (docs/design.md, "Synthetic test checkpoints")."""
    h = hashlib.sha256()
    for key in sorted(model):
        h.update(key.encode() + b"\0" + np.ascontiguousarray(model[key], np.float32).tobytes())
    return h.hexdigest()


def write_checkpoint(
    path: str | os.PathLike, arch: str = "resnet50", seed: int = 0, *, legacy_names: bool = False
) -> Path:
    """Write a model-zoo style ``.pkl`` (pickle protocol 4), atomically."""
    model = make_checkpoint(arch, seed)
    if legacy_names:
        model = to_legacy_names(model)
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "xb") as f:
        pickle.dump({"model": model, "__author__": "synthetic test checkpoint"}, f, protocol=4)
    return path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m pixellib.checkpoint.synthetic", description=__doc__)
    parser.add_argument("arch", choices=("resnet50", "resnet101", "resnext101_32x8d"))
    parser.add_argument("seed", type=int)
    parser.add_argument("out", nargs="?", help="output .pkl path")
    parser.add_argument("--digest", action="store_true", help="print the digest, write nothing")
    parser.add_argument("--legacy-names", action="store_true")
    args = parser.parse_args(argv)
    if args.digest:
        print(digest(make_checkpoint(args.arch, args.seed)))
    elif args.out:
        write_checkpoint(args.out, args.arch, args.seed, legacy_names=args.legacy_names)
        print(args.out)
    else:
        parser.error("give an output path or --digest")


if __name__ == "__main__":
    main()
