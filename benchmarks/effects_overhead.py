"""How much an effect adds to ``segmentImage``'s time, on the golden photos.

For each photo: the median time of PixelLib's ``segmentImage(path, show_bboxes=True,
output_image_name=...)`` (read, segment, draw, write), then, for each effect, the median
time of what ``pixellib segment --effect`` does instead of drawing: ``apply_effect`` on the
same detections plus writing the result. The overhead is the effect's time over
``segmentImage``'s; the target is at most 10 %.

    python benchmarks/effects_overhead.py                 # all photos, all effects, 5 runs
    python benchmarks/effects_overhead.py --quick         # smoke: 1 run, small.jpg, 2 effects
    python benchmarks/effects_overhead.py --out docs/effects_overhead.md

Run it on a quiet machine. The checkpoint is the synthetic ResNet-50 (seed 0) unless
``--checkpoint`` names a file.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

IMAGES = ("street.jpg", "small.jpg", "wide.jpg", "car_rgba.png", "small_gray.png")
EFFECTS = ("blur-bg=moderate", "blur-bg=extreme", "pixelate-bg", "gray-bg", "color-bg=#00ff00",
           "replace-bg", "remove-bg", "blur-objects", "pixelate-objects")


def median_time(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--images", default=",".join(IMAGES))
    p.add_argument("--effects", default=",".join(EFFECTS))
    p.add_argument("--checkpoint", help="model file (default: the synthetic ResNet-50)")
    p.add_argument("--quick", action="store_true", help="1 run, small.jpg, 2 effects")
    p.add_argument("--out", help="also write the markdown table to this file")
    args = p.parse_args(argv)
    if args.quick:
        args.runs, args.images, args.effects = 1, "small.jpg", "blur-bg,remove-bg"

    import cv2
    import torch

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    from pixellib.checkpoint.synthetic import write_checkpoint
    from pixellib.effects import apply_effect
    from pixellib.media.files import write_text
    from pixellib.media.images import read_image, write_image
    from pixellib.torchbackend.instance import instanceSegmentation

    work = Path(tempfile.mkdtemp(prefix="effects_bench_"))
    checkpoint = args.checkpoint or write_checkpoint(work / "r50.pkl", "resnet50", 0)
    ins = instanceSegmentation()
    ins.load_model(str(checkpoint))
    backdrop = work / "backdrop.jpg"
    cv2.imwrite(str(backdrop), cv2.imread(str(ROOT / "tests/data/images/street.jpg"))[:, ::-1])

    rows = []
    for name in args.images.split(","):
        path = ROOT / "tests" / "data" / "images" / name
        out = work / f"seg_{Path(name).stem}.jpg"
        ins.segmentImage(str(path), show_bboxes=True, output_image_name=str(out))  # warm-up
        base = median_time(lambda path=path, out=out: ins.segmentImage(
            str(path), show_bboxes=True, output_image_name=str(out)), args.runs)
        image = read_image(path)
        det = ins._predictor(image)  # the same model and settings as segmentImage
        for effect in args.effects.split(","):
            text = f"replace-bg={backdrop}" if effect == "replace-bg" else effect
            target = work / f"eff_{Path(name).stem}.png"

            def run(text=text, target=target, image=image, det=det):
                write_image(target, apply_effect(image, det, text))

            run()  # warm-up
            cost = median_time(run, args.runs)
            rows.append((name, effect, len(det), base, cost))
            print(f"{name:16s} {effect:20s} {len(det):4d} objects  segmentImage {base:7.3f} s  "
                  f"effect {cost * 1000:8.1f} ms  {100 * cost / base:5.1f} %", flush=True)

    worst = max(r[4] / r[3] for r in rows)
    lines = [
        "## Effect overhead (`benchmarks/effects_overhead.py`)", "",
        f"{args.runs} runs (median), {args.threads} threads, load average "
        f"{os.getloadavg()[0]:.2f}. Overhead = effect + write / `segmentImage` "
        "(read, segment, draw, write); target <= 10 %.", "",
        "| photo | effect | objects | segmentImage (s) | effect (ms) | overhead |",
        "|---|---|---:|---:|---:|---:|",
        *[f"| {n} | `{e}` | {k} | {b:.3f} | {c * 1000:.1f} | {100 * c / b:.1f} % |"
          for n, e, k, b, c in rows],
        "", f"Worst overhead: {100 * worst:.1f} % ({'meets' if worst <= 0.10 else 'misses'} "
        "the 10 % target).", "",
    ]
    print("\n".join(lines))
    if args.out:
        write_text(args.out, "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
