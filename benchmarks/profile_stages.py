"""Where the model's time goes, stage by stage, at 34 and at 100 objects (issue 17).

    .venv/bin/python benchmarks/profile_stages.py            # street.jpg, R50, 5 runs
    .venv/bin/python benchmarks/profile_stages.py --x101 --runs 3

Times each stage of one ``Predictor`` call separately, in the order the forward runs them:
resize (Pillow, host), backbone + FPN, RPN (head, top-k, decode, NMS), box head (RoIAlign, FCs,
per-class NMS), mask head (coarse head, 5 subdivision steps of the point head) and pasting
(+ conversion to numpy). ``street.jpg`` at the default confidence gives 34 objects and at
``confidence=0.05`` the 100-detection cap. Medians over ``--runs`` after one warm-up; heap
reuse on, as the CLI runs.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pixellib.checkpoint.synthetic import write_checkpoint  # noqa: E402
from pixellib.model.detector import postprocess  # noqa: E402
from pixellib.predictor import Predictor, resize_image  # noqa: E402


def stages(predictor: Predictor, image: np.ndarray) -> tuple[dict[str, float], int]:
    model, cfg = predictor.model, predictor.inference
    times = {}
    t = time.perf_counter()

    def lap(name):
        nonlocal t
        now = time.perf_counter()
        times[name] = now - t
        t = now

    resized = resize_image(image, cfg.min_size, cfg.max_size)
    tensor = torch.from_numpy(resized.transpose(2, 0, 1).astype(np.float32))
    lap("resize")
    with torch.inference_mode():
        size = tuple(tensor.shape[-2:])
        features = model.backbone(model.preprocess(tensor))
        lap("backbone + FPN")
        proposals, _ = model.proposal_generator(features, size)
        lap("RPN")
        boxes, scores, classes = model.roi_heads.detect(features, proposals, size,
                                                        score_thresh=cfg.score_thresh)
        lap("box head")
        masks = model.roi_heads.mask_head(features["p2"], boxes, classes)
        lap("mask head")
        out = postprocess(boxes, scores, classes, masks, size, image.shape[:2],
                          cfg.mask_threshold)
        out.masks.numpy()
        lap("pasting")
    return times, len(boxes)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--x101", action="store_true")
    p.add_argument("--image", default=str(ROOT / "tests" / "data" / "images" / "street.jpg"))
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    arch, seed = ("resnext101_32x8d", 1) if args.x101 else ("resnet50", 0)
    ckpt = Path(tempfile.gettempdir()) / f"pixellib_profile_{arch}_seed{seed}.pkl"
    if not ckpt.exists():
        write_checkpoint(ckpt, arch, seed)
    image = cv2.imread(args.image)
    base = Predictor(ckpt, heap_reuse=True)
    print(f"{arch} (seed {seed}), {Path(args.image).name}, {torch.get_num_threads()} threads, "
          f"median of {args.runs} runs\n")
    columns = {}
    for confidence in (None, 0.05):
        predictor = Predictor(base.model, confidence=confidence, heap_reuse=True)
        stages(predictor, image)  # warm-up
        runs, objects = [], 0
        for _ in range(args.runs):
            times, objects = stages(predictor, image)
            runs.append(times)
        columns[objects] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    names = list(next(iter(columns.values())))
    head = " | ".join(f"{n} objects: s | share" for n in columns)
    print(f"| stage | {head} |")
    print("|---|" + "---|---|" * len(columns))
    for name in names + ["total"]:
        cells = []
        for col in columns.values():
            total = sum(col.values())
            v = total if name == "total" else col[name]
            cells.append(f"{v:.3f} | {v / total:.0%}")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
