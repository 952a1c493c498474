"""``Predictor.predict_batch`` throughput by batch size: does batching pay on this device?

    .venv/bin/python benchmarks/batch_throughput.py                       # CPU: 1,2,4
    .venv/bin/python benchmarks/batch_throughput.py --device cuda --batch-sizes 1,4,8,16
    .venv/bin/python benchmarks/batch_throughput.py --quick               # smoke test

It feeds ``--images`` same-size photos (flipped and shifted copies of ``street.jpg``, so
every forward is full) to ``predict_batch`` at each batch size, ``--runs`` times in turn,
and prints images per second (median), the gain over batch size 1 and, on CUDA, the peak
GPU memory. ``--precision bfloat16`` / ``float16`` measure autocast. One process, the
synthetic ResNet-50 checkpoint (seed 0), default mode.
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
from pixellib.predictor import Predictor  # noqa: E402


def photos(count: int) -> list[np.ndarray]:
    base = cv2.imread(str(ROOT / "tests" / "data" / "images" / "street.jpg"))
    out = []
    for i in range(count):
        image = base[:, ::-1] if i % 2 else base
        out.append(np.ascontiguousarray(np.roll(image, 17 * i, axis=1)))
    return out


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-sizes", default=None, help="comma list (CPU 1,2,4; CUDA 1,4,8,16)")
    p.add_argument("--images", type=int, default=None, help="photos per run (8; CUDA 32)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--precision", default="float32", choices=("float32", "bfloat16", "float16"))
    p.add_argument("--checkpoint", help="default: the synthetic ResNet-50, seed 0")
    p.add_argument("--quick", action="store_true", help="2 photos, batch sizes 1,2, 1 run")
    args = p.parse_args(argv)
    cuda = args.device.startswith("cuda")
    if args.threads:
        torch.set_num_threads(args.threads)
    if cuda:  # fp32 means fp32 (the golden rule); autocast is measured with --precision
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    sizes = [int(v) for v in (args.batch_sizes or ("1,4,8,16" if cuda else "1,2,4")).split(",")]
    count = args.images or (32 if cuda else 8)
    if args.quick:
        sizes, count, args.runs = [1, 2], 2, 1
    checkpoint = args.checkpoint
    if checkpoint is None:
        checkpoint = Path(tempfile.gettempdir()) / "pixellib_bench_r50_seed0.pkl"
        if not checkpoint.exists():
            write_checkpoint(checkpoint, "resnet50", 0)
    predictor = Predictor(checkpoint, device=args.device, precision=args.precision,
                          heap_reuse=not cuda)
    images = photos(count)
    predictor.predict_batch(images[:max(sizes)], batch_size=max(sizes))  # warm-up
    rates: dict[int, list[float]] = {b: [] for b in sizes}
    peaks: dict[int, int] = {}
    for _ in range(args.runs):
        for b in sizes:  # in turn, so that drifts hit every size alike
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            sync(args.device)
            t0 = time.perf_counter()
            out = predictor.predict_batch(images, batch_size=b)
            sync(args.device)
            rates[b].append(len(out) / (time.perf_counter() - t0))
            if cuda:
                peaks[b] = max(peaks.get(b, 0), torch.cuda.max_memory_allocated())
    base = statistics.median(rates[sizes[0]])
    device = torch.cuda.get_device_name() if cuda else f"cpu, {torch.get_num_threads()} threads"
    print(f"predict_batch, {count} photos of {images[0].shape[1]}x{images[0].shape[0]}, "
          f"{args.precision}, {device}, {args.runs} runs")
    print()
    print("| batch size | images/s (median) | ms per image | gain over batch 1 |"
          + (" peak GPU memory |" if cuda else ""))
    print("|---|---|---|---|" + ("---|" if cuda else ""))
    for b in sizes:
        m = statistics.median(rates[b])
        row = f"| {b} | {m:.3f} | {1000 / m:.1f} | {m / base:.2f}x |"
        if cuda:
            row += f" {peaks[b] / 2**30:.2f} GiB |"
        print(row)


if __name__ == "__main__":
    main()
