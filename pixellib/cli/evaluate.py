"""``pixellib evaluate``: COCO box and mask AP of a model on an annotated image folder."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import InvalidArgumentError


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_evaluate_parser(sub) -> None:
    """Register the ``evaluate`` subcommand on ``sub`` (argparse subparsers)."""
    from .args import probability

    ev = sub.add_parser(
        "evaluate", help="COCO box and mask AP on an annotated image folder",
        description="Run the model over the images of a COCO-format annotation file and "
                    "print COCOeval's box and mask AP tables and AP per class (needs "
                    "pycocotools: pip install 'pixellib[eval]').")
    ev.add_argument("annotations", metavar="ANNOTATIONS.json",
                    help="COCO annotation file, e.g. instances_val2017.json")
    ev.add_argument("images", metavar="IMAGE_DIR", help="folder holding the images, e.g. val2017/")
    ev.add_argument("--model", default="resnet50", metavar="PATH_OR_NAME",
                    help="checkpoint file, or resnet50 / resnet101 (default: resnet50)")
    ev.add_argument("--speed", choices=("fast", "rapid"),
                    help="PixelLib detection_speed (default: full size)")
    ev.add_argument("--confidence", type=probability, default=0.05, metavar="F",
                    help="score threshold (default: 0.05, as COCO evaluations use)")
    ev.add_argument("--limit", type=_positive_int, metavar="N",
                    help="only the first N images of the annotation file")
    ev.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0")
    ev.add_argument("-o", "--output", default="detections.json", metavar="FILE.json",
                    help="where to write the detections, COCO results format "
                         "(default: detections.json)")
    ev.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    try:
        import pycocotools  # noqa: F401
    except ImportError:
        raise InvalidArgumentError("pixellib evaluate needs pycocotools: "
                         "pip install 'pixellib[eval]'") from None
    from ..evaluate import evaluate, format_report, image_paths, load_annotations
    from ..media.files import output_path_problem, write_text
    from .main import _load_predictor

    image_paths(load_annotations(args.annotations), args.images, limit=args.limit,
                source=args.annotations)  # bad input fails before the model loads
    output = Path(args.output)
    problem = output_path_problem(output)
    if problem:
        raise InvalidArgumentError(f"cannot write the detections to {problem}")
    if output.exists() and output.resolve() == Path(args.annotations).resolve():
        raise InvalidArgumentError(f"-o {str(output)!r} is the annotation file itself; choose "
                                   "another file for the detections")
    predictor = _load_predictor(args)

    def save(results: list[dict]) -> None:
        write_text(output, json.dumps(results))

    result = evaluate(predictor, args.annotations, args.images, limit=args.limit,
                      progress=True, on_results=save)
    print(format_report(result))
    print(f"detections written to {output}", file=sys.stderr)
    return 0
