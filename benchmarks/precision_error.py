"""What reduced precision (``Predictor(precision="bfloat16")``) does to the numbers and to
the detections, on the synthetic checkpoints.

    .venv/bin/python benchmarks/precision_error.py                 # bf16, both checkpoints
    .venv/bin/python benchmarks/precision_error.py --precision float16 --models r50

Two measurements, printed as markdown:

1. **Per layer**: the relative error ``||x_lowp - x_fp32|| / ||x_fp32||`` of every ResNet
   block's output, the FPN maps and the RPN objectness logits, on each golden photo, with the
   same input and the error carried from layer to layer as a user would get it (the two runs
   are whole forwards). After the RPN the two runs keep different proposals, so later stages
   are judged by their detections instead:
2. **The golden rule** (``tests/golden.py``) of the low-precision detections against the stored
   fp32 golden outputs of PixelLib 0.7.1, per case (photo x speed mode).
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pixellib.checkpoint.synthetic import write_checkpoint  # noqa: E402
from pixellib.model.backbone import BottleneckBlock  # noqa: E402
from pixellib.predictor import Predictor  # noqa: E402

MODELS = {"r50": ("resnet50", 0, "r50_seed0"), "x101": ("resnext101_32x8d", 1, "x101_seed1")}


def golden_module():
    spec = importlib.util.spec_from_file_location("_golden", ROOT / "tests" / "golden.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def record(model) -> tuple[dict, list]:
    """Hooks that keep (a float32 copy of) each watched output, by name."""
    seen: dict[str, torch.Tensor] = {}
    handles = []
    blocks = [(n, m) for n, m in model.backbone.named_modules() if isinstance(m, BottleneckBlock)]
    for name, module in blocks:
        handles.append(module.register_forward_hook(
            lambda _m, _i, out, name=name: seen.__setitem__(name, out.detach().float())))
    handles.append(model.backbone.register_forward_hook(
        lambda _m, _i, out: seen.update({k: v.detach().float() for k, v in out.items()})))
    head = model.proposal_generator.rpn_head
    handles.append(head.register_forward_hook(
        lambda _m, _i, out: seen.setdefault("rpn logits", []).append(out[0].detach().float())))
    return seen, handles


def layer_errors(predictor_fp32, predictor_low, image) -> dict[str, float]:
    runs = []
    for predictor in (predictor_fp32, predictor_low):
        seen, handles = record(predictor.model)
        try:
            predictor(image)
        finally:
            for h in handles:
                h.remove()
        seen["rpn logits"] = torch.cat(seen["rpn logits"])
        runs.append(seen)
    ref, low = runs
    return {k: float((low[k] - ref[k]).norm() / ref[k].norm().clamp_min(1e-30)) for k in ref}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--precision", default="bfloat16", choices=("bfloat16", "float16"))
    p.add_argument("--models", default="r50,x101")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    golden = golden_module()
    tmp = Path(tempfile.gettempdir())
    print(f"# {args.precision} autocast against fp32, synthetic checkpoints\n")
    for key in args.models.split(","):
        arch, seed, golden_dir = MODELS[key]
        ckpt = tmp / f"pixellib_precision_{arch}_seed{seed}.pkl"
        if not ckpt.exists():
            write_checkpoint(ckpt, arch, seed)
        cases = [c for c in golden.CASES if c[0] == golden_dir]
        photos = sorted({c[1] for c in cases}, key=[c[1] for c in cases].index)
        fp32 = Predictor(ckpt)
        low = Predictor(fp32.model, precision=args.precision)
        errors = {photo: layer_errors(fp32, low, cv2.imread(str(golden.IMAGES / photo)))
                  for photo in photos}
        names = list(errors[photos[0]])
        print(f"## {key} ({arch}, seed {seed}): relative error per layer\n")
        print("| layer | " + " | ".join(photos) + " |")
        print("|---|" + "---|" * len(photos))
        for name in names:
            print(f"| {name} | " + " | ".join(f"{errors[ph][name]:.2e}" for ph in photos) + " |")
        print(f"\n## {key}: detections under the golden rule (against PixelLib's fp32 "
              "golden outputs)\n")
        print("| photo | mode | golden | ours | unmatched | mean mask IoU | worst | "
              "max score diff (pp) | rule |")
        print("|---|---|---|---|---|---|---|---|---|")
        passed = 0
        for _, photo, mode in cases:
            speed = None if mode == "default" else mode
            predictor = Predictor(fp32.model, speed=speed, precision=args.precision)
            det = predictor(cv2.imread(str(golden.IMAGES / photo)))
            case = golden.load_case(golden_dir, photo, mode)
            m = golden.match(case, det.boxes, det.scores, det.class_ids, det.masks)
            passed += m.ok
            ious = m.mask_ious or [1.0]
            print(f"| {photo} | {mode} | {m.golden} | {m.ours} | {m.unmatched} | "
                  f"{np.mean(ious):.4f} | {min(ious):.4f} | {max(m.score_diffs, default=0)} | "
                  f"{'pass' if m.ok else 'FAIL'} |")
        print(f"\n{passed} of {len(cases)} cases pass the golden rule in {args.precision}.\n")


if __name__ == "__main__":
    main()
