"""``pixellib evaluate``: COCO box and mask AP of a model on an annotated image folder."""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
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
    from tqdm import tqdm

    from ..evaluate import evaluate, format_report, prepare
    from ..media.files import write_text
    from ..torchbackend.instance.segmentation import SkippedImageWarning
    from .main import _load_predictor

    # bad input fails before the model loads: annotations, images, categories, the output
    plan = prepare(args.annotations, args.images, limit=args.limit)
    output = Path(args.output).expanduser()
    images = [Path(args.images) / image["file_name"] for image in plan.annotations["images"]]
    _check_output(output, [Path(args.annotations), *images])
    predictor = _load_predictor(args)

    def save(results: list[dict]) -> None:
        write_text(output, json.dumps(results))

    with warnings.catch_warnings():  # a skipped image: one line, above the progress bar
        warnings.simplefilter("always", SkippedImageWarning)
        default_show = warnings.showwarning

        def show(message, category, *rest, **kw):
            if issubclass(category, SkippedImageWarning):
                tqdm.write(f"pixellib: warning: {message}", file=sys.stderr)
            else:
                default_show(message, category, *rest, **kw)

        warnings.showwarning = show
        result = evaluate(predictor, plan, progress=True, on_results=save)
    print(format_report(result))
    print(f"detections written to {output}", file=sys.stderr)
    return 0


def _check_output(output: Path, inputs: list[Path]) -> None:
    """Refuse an output that is one of the inputs or that cannot be written, before the
    detection pass (hours on COCO val2017) rather than after it."""
    from ..media.files import output_path_problem, real_path, unwritable_file, writable_file

    if str(output) == "-":  # a file named '-' was written, where stdout was meant
        raise InvalidArgumentError("-o -: the detections go to a file, not to stdout; name "
                                   "a .json file")
    problem = output_path_problem(output)
    unwritable = None if problem else unwritable_file(output)
    if unwritable:
        problem = f"{str(output)!r}: {unwritable[1]}"
    if problem:
        raise InvalidArgumentError(f"cannot write the detections to {problem}")
    if output.exists():
        target = real_path(output)
        for i, path in enumerate(inputs):
            if real_path(path) == target:
                what = "the annotation file" if i == 0 else "one of the images"
                raise InvalidArgumentError(f"-o {str(output)!r} is {what} itself; choose "
                                           "another file for the detections")
    if writable_file(output):  # written in place, even in a folder one may not write in
        return
    folder = next(p for p in (output.absolute(), *output.absolute().parents) if p.is_dir()
                  or p == Path(p.anchor))
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise InvalidArgumentError(f"cannot write the detections to {str(output)!r}: "
                                   f"{e.strerror or e}") from None
