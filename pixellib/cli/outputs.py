"""``pixellib segment``'s effect and export options: --effect, --cutouts, --masks, --no-overlay.

The output picture of each input is, in order: the effect applied to the objects selected by
``--classes`` (all detections without it), or else the usual annotation; then, with
``--boxes`` (or ``--no-overlay``), boxes and captions drawn on top. ``remove-bg`` makes a
transparent picture, so image outputs that cannot hold transparency are written as PNG, and
videos as WebM (VP9 with alpha).
Cut-outs and masks (images only) go to ``DIR/<output stem>_object_<k>_<class>.png``,
``DIR/<output stem>_mask_<k>_<class>.png`` and ``DIR/<output stem>_labels.png``.
"""
from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path

import numpy as np

from ..effects import EFFECTS, Effect, apply_effect, load_background, parse_effect
from ..errors import EffectError, InvalidArgumentError
from ..media.files import output_path_problem
from ..media.images import ALPHA_WRITE_EXTENSIONS
from .args import number_between, user_path
from .jobs import Job

EPILOG = f"""\
examples:
  pixellib segment photo.jpg                          annotated copy: photo_segmented.jpg
  pixellib segment photos/ -o out/ --boxes            a folder, with boxes and labels
  pixellib segment photo.jpg --effect blur-bg --classes person
  pixellib segment photo.jpg --effect blur-bg=extreme (or low, moderate, an odd kernel size)
  pixellib segment photo.jpg --effect replace-bg=beach.jpg --feather 4
  pixellib segment photo.jpg --effect color-bg=#00ff00
  pixellib segment photo.jpg --effect remove-bg       transparent PNG: photo_segmented.png
  pixellib segment street.mp4 --effect pixelate-objects=16 --classes person,car
  pixellib segment photo.jpg --cutouts cutouts/ --masks masks/ --no-overlay

effects: {', '.join(EFFECTS)}
"""


def _effect(text: str) -> Effect:
    try:
        return parse_effect(text)
    except EffectError as e:
        raise argparse.ArgumentTypeError(str(e)) from None




def add_arguments(seg: argparse.ArgumentParser) -> None:
    """The effect and export options of ``pixellib segment``."""
    seg.add_argument("--effect", type=_effect, metavar="NAME[=ARG]",
                     help="apply an effect instead of the mask overlay; --classes selects the "
                          f"objects ({', '.join(EFFECTS)})")
    seg.add_argument("--feather", type=number_between(0, 10_000, " pixels"), default=0,
                     metavar="PX",
                     help="soften the effect's edge over PX pixels (default 0: hard edge)")
    seg.add_argument("--cutouts", type=user_path, metavar="DIR",
                     help="also save each object as a transparent PNG cropped to its mask")
    seg.add_argument("--masks", type=user_path, metavar="DIR",
                     help="also save each object's binary mask PNG and an instance-id "
                          "<stem>_labels.png (0 = background, k = k-th object)")
    seg.add_argument("--no-overlay", action="store_true",
                     help="draw no mask overlay, only boxes and labels")


def prepare(jobs: list[Job], args: argparse.Namespace) -> list[Job]:
    """Check the options once for the run, before the model loads (a bad background picture
    or an output path that cannot be written stops it here, named), and give transparent
    outputs an extension that keeps alpha (.png for images, .webm for videos)."""
    args.effect_background = None
    jobs = _transparent_outputs(jobs, args)
    _check_output_paths(jobs, args)
    _check_coco_file(jobs, args)
    effect = args.effect
    if effect is not None and effect.name == "replace-bg":
        if effect.background is None:
            raise EffectError("replace-bg needs a picture: --effect replace-bg=PATH")
        _check_not_overwritten(Path(effect.background).expanduser(), jobs, args)
        args.effect_background = load_background(effect.background)
    return jobs


def _check_not_overwritten(background: Path, jobs: list[Job], args) -> None:
    """Refuse a run that would write over its replace-bg picture (an input too)."""
    try:
        picture = background.resolve()
    except OSError:
        return  # load_background names what is wrong with it
    written = [j.output for j in jobs] + ([Path(args.coco)] if getattr(args, "coco", None)
                                         else [])
    for path in written:
        if path.expanduser().resolve() == picture:
            raise InvalidArgumentError(
                f"output {str(path)!r} is the replace-bg picture {str(background)!r}; choose "
                "another -o so that inputs are never overwritten")


def _check_coco_file(jobs: list[Job], args) -> None:
    """Refuse a ``--coco`` file that is an input, an output picture or the model file: it is
    written last, over whatever is there."""
    coco = getattr(args, "coco", None)
    if not coco:
        return
    target = Path(coco).expanduser().resolve()
    for job in jobs:
        if target == job.source.expanduser().resolve():
            raise InvalidArgumentError(
                f"--coco {str(coco)!r} is the input {str(job.source)!r}; choose another file "
                "so that inputs are never overwritten")
        if target == job.output.expanduser().resolve():
            raise InvalidArgumentError(
                f"--coco {str(coco)!r} is also the output picture of {str(job.source)!r}; "
                "choose another file")
    records = {job.record.expanduser().resolve() for job in jobs if job.record is not None}
    if target in records:
        raise InvalidArgumentError(f"--coco {str(coco)!r} is the output folder's record of "
                                   "finished outputs; choose another file")
    model = getattr(args, "model", None)
    if model and target == Path(model).expanduser().resolve():
        raise InvalidArgumentError(f"--coco {str(coco)!r} is the model file; choose another file")


def _transparent_outputs(jobs: list[Job], args: argparse.Namespace) -> list[Job]:
    if args.effect is None or not args.effect.transparent:
        return jobs
    explicit = args.output is not None and len(jobs) == 1 and Path(args.output).suffix
    out = []
    for job in jobs:
        keeps = job.output.suffix.lower() == ".webm" if job.video else (
            job.output.suffix.lower() in ALPHA_WRITE_EXTENSIONS)
        if not keeps:
            if explicit:
                if job.video:
                    check_video(job, args)
                raise EffectError(
                    f"remove-bg makes a transparent picture, which {job.output.suffix} cannot "
                    f"hold: name the output {job.output.with_suffix('.png').name}"
                )
            job = dataclasses.replace(
                job, output=job.output.with_suffix(".webm" if job.video else ".png"))
        out.append(job)
    return out


def _check_output_paths(jobs: list[Job], args: argparse.Namespace) -> None:
    """Refuse, before any work, outputs that cannot be written: a file where a folder is
    needed or the other way round (a failure after every image was segmented otherwise)."""
    problems = [output_path_problem(j.output) for j in jobs]
    if getattr(args, "coco", None):
        problems.append(output_path_problem(args.coco))
    for option in ("cutouts", "masks"):
        if getattr(args, option, None):
            problems.append(output_path_problem(getattr(args, option), folder=True))
    problem = next((p for p in problems if p), None)
    if problem:
        raise InvalidArgumentError(f"cannot write {problem}")


def check_video(job: Job, args: argparse.Namespace) -> None:
    """Refuse a video job the effect cannot be written to (before any frame is segmented)."""
    if (args.effect is not None and args.effect.transparent
            and job.output.suffix.lower() != ".webm"):
        raise EffectError(
            f"remove-bg on video needs .webm output (VP9 with alpha); {job.output.name} "
            "cannot hold transparency"
        )


def render(image: np.ndarray, det, args: argparse.Namespace) -> np.ndarray:
    """The output picture for ``image`` and its (``--classes``-filtered) detections."""
    from ..visualize import annotate

    boxes = bool(args.boxes or args.no_overlay)
    if args.effect is None:
        return annotate(image, det, show_boxes=boxes, show_masks=not args.no_overlay)
    out = apply_effect(image, det, args.effect, feather=args.feather,
                       background=getattr(args, "effect_background", None))
    if not boxes:
        return out
    return annotate(out, det, show_boxes=True, show_masks=False)  # BGRA: alpha kept


def clear_previous_extras(job: Job, args: argparse.Namespace) -> None:
    """Delete the files an earlier run wrote for this output (its ``--extract`` crops,
    ``--cutouts`` and ``--masks``), so that a re-run with fewer objects leaves no stale
    object files beside the new ones. Only names this command writes are touched."""
    stem = re.escape(job.output.stem)
    targets = []
    if args.extract:
        targets.append((job.output.with_name(f"{job.output.stem}_extracts"),
                        r"(segmented_object|object_extract)_\d+\.jpg"))
    if args.cutouts:
        targets.append((Path(args.cutouts), rf"{stem}_object_\d+_[a-z_]+\.png"))
    if args.masks:
        targets.append((Path(args.masks), rf"{stem}_(mask_\d+_[a-z_]+|labels)\.png"))
    for folder, pattern in targets:
        if folder.is_dir():
            for path in folder.iterdir():
                if re.fullmatch(pattern, path.name) and path.is_file():
                    path.unlink()


def save_extras(image: np.ndarray, det, job: Job, args: argparse.Namespace) -> None:
    """Write ``--cutouts`` and ``--masks`` files for one image."""
    from ..effects.cutouts import save_cutouts, save_masks

    prefix = f"{job.output.stem}_"
    if args.cutouts:
        save_cutouts(image, det, Path(args.cutouts), prefix=prefix)
    if args.masks:
        save_masks(det, Path(args.masks), prefix=prefix)
