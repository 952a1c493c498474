"""Does overlapping reading/writing with the model pay on this machine? (issue 17)

    .venv/bin/python benchmarks/overlap.py                 # 12 photos, a 24-frame clip, 2 rounds
    .venv/bin/python benchmarks/overlap.py --quick         # smoke test

``segmentBatch(folder, show_bboxes=True, output_folder_name=...)`` and ``process_video(clip,
show_bboxes=True, output_video_name=...)`` with ``PIXELLIB_OVERLAP=0`` (one stage after the other)
and ``=1`` (:mod:`pixellib.runtime.pipeline`: reading ahead and drawing/encoding/writing on
background threads), alternating, in one process with one loaded model (synthetic ResNet-50,
default mode, heap reuse on as in ``instanceSegmentation``). Prints images (frames) per second,
median over the rounds, and the gain of overlapping.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import torch  # noqa: E402
from bench import make_batch_folder, make_clip  # noqa: E402

from pixellib.checkpoint.synthetic import write_checkpoint  # noqa: E402
from pixellib.torchbackend.instance import instanceSegmentation  # noqa: E402

PHOTOS = ["street.jpg", "small.jpg", "wide.jpg", "car_rgba.png"]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--photos", type=int, default=12)
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.photos, args.frames, args.rounds = 2, 2, 1
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ckpt = tmp / "r50.pkl"
        write_checkpoint(ckpt, "resnet50", 0)
        folder = make_batch_folder(tmp / "in", PHOTOS, args.photos)
        clip = make_clip(tmp / "clip.mp4", "street.jpg", args.frames)
        ins = instanceSegmentation()
        ins.load_model(str(ckpt))
        ins.segmentImage(str(next(folder.iterdir())), show_bboxes=True)  # warm-up
        tasks = {
            "segmentBatch": (args.photos, lambda: ins.segmentBatch(
                str(folder), show_bboxes=True, output_folder_name=str(tmp / "out"))),
            "process_video": (args.frames, lambda: ins.process_video(
                str(clip), show_bboxes=True, output_video_name=str(tmp / "out.mp4"))),
        }
        rates = {(t, o): [] for t in tasks for o in ("0", "1")}
        for r in range(args.rounds):
            for task, (count, run) in tasks.items():
                for overlap in (("0", "1") if r % 2 == 0 else ("1", "0")):
                    os.environ["PIXELLIB_OVERLAP"] = overlap
                    t0 = time.perf_counter()
                    run()
                    rates[(task, overlap)].append(count / (time.perf_counter() - t0))
        os.environ.pop("PIXELLIB_OVERLAP", None)
    print(f"{args.photos} photos, a {args.frames}-frame 1280x720 clip, {args.rounds} rounds, "
          f"{torch.get_num_threads()} torch threads\n")
    print("| call | items/s, one stage after another | items/s, overlapped | gain |")
    print("|---|---|---|---|")
    for task in tasks:
        off = statistics.median(rates[(task, "0")])
        on = statistics.median(rates[(task, "1")])
        print(f"| {task} | {off:.3f} | {on:.3f} | {on / off:.3f}x |")


if __name__ == "__main__":
    main()
