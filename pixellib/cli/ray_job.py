"""``pixellib segment INPUT... --ray [ADDRESS] -o OUT_DIR``: the same job on a Ray cluster.

Results are rows (:mod:`pixellib.ray.rows`) in shards ``OUT_DIR/part-*.parquet`` (or
``.jsonl`` with ``--format jsonl``), one row per input image, checked at the end. Without
ADDRESS a private local cluster is started and stopped; ``--ray auto`` joins the cluster this
machine is part of, ``--ray HOST:PORT`` a given one (not a Ray Client ``ray://`` address).
``--skip-existing`` completes a folder a killed run left behind. The progress bar is Ray
Data's; the summary line is the one the plain command prints.
"""
from __future__ import annotations

import argparse
import sys
import warnings

from ..errors import RayJobError
from .jobs import DEFAULT_BATCH_FOLDER
from .main import _Stats, _summary

_MAX_LISTED = 20  # failures printed one per line; the rest are counted


def _ray_device(device: str) -> str:
    """``cpu`` or ``cuda`` for the actors, from ``--device`` (checked here, where the driver
    may have no GPU itself: the actors get one each with ``cuda``)."""
    import torch

    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError, ValueError) as e:
        raise RayJobError(f"invalid --device {device!r}: {' '.join(str(e).split())}") from None
    if kind not in ("cpu", "cuda"):
        raise RayJobError(f"invalid --device {device!r}: with --ray the actors run on the cpu "
                          "or on a cuda GPU each")
    return kind


def run_ray(args: argparse.Namespace) -> int:
    """Run ``segment`` with ``--ray``; return the exit code (the plain command's rules)."""
    unsupported = [flag for flag, used in (
        ("--extract", args.extract), ("--coco", args.coco), ("--boxes", args.boxes),
        ("--effect", args.effect), ("--cutouts", args.cutouts), ("--masks", args.masks),
        ("--no-overlay", args.no_overlay), ("--track", args.track),
        ("--feather", args.feather)) if used]
    if unsupported:
        raise RayJobError(f"{', '.join(unsupported)} cannot be combined with --ray, which writes "
                         "result rows (masks as COCO RLE), not annotated copies")
    device = _ray_device(args.device)
    try:
        from ..ray import segment_to_parquet
    except ImportError as e:
        raise RayJobError(f"--ray needs Ray: pip install 'pixellib[ray]' ({e})") from None
    output = args.output or DEFAULT_BATCH_FOLDER
    fmt = args.format
    if fmt is None:  # completing a folder: in the format its shards already have
        from ..ray.job import FORMATS, shard_paths

        existing = {p.suffix for p in shard_paths(output)} if args.skip_existing else set()
        fmt = next((f for f, ext in FORMATS.items() if ext in existing), "parquet")
    with warnings.catch_warnings():  # the command owns its process
        # pixellib.ray passes its retry limits the one way Ray 2.5x-2.63 takes them, which
        # Ray calls deprecated: nothing the user can act on
        warnings.filterwarnings("ignore", message=".*ray_remote_args.* is deprecated")
        summary = segment_to_parquet(
            args.inputs, output, model=args.model, speed=args.speed,
            confidence=args.confidence, classes=args.classes, address=args.ray,
            num_gpus=1 if device == "cuda" else 0, format=fmt,
            skip_existing=args.skip_existing,
        )
    stats = _Stats(images=summary.images, objects=summary.objects, skipped=summary.skipped,
                   failed=[path for path, _ in summary.failed])
    for path, reason in summary.failed[:_MAX_LISTED]:
        print(f"pixellib: warning: skipped {path}: {reason}", file=sys.stderr)
    if len(summary.failed) > _MAX_LISTED:
        print(f"pixellib: warning: ... and {len(summary.failed) - _MAX_LISTED} more (see the "
              "error column)", file=sys.stderr)
    print(_summary(stats, summary.seconds))
    if stats.failed:
        print(f"pixellib: warning: {len(stats.failed)} failed", file=sys.stderr)
    return 1 if stats.failed and (args.strict or stats.images == 0) else 0
