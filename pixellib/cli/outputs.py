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
import os
import re
import threading
from pathlib import Path

import numpy as np

from ..classes import COCO_CLASSES
from ..effects import EFFECTS, Effect, apply_effect, load_background, parse_effect
from ..errors import EffectError, InvalidArgumentError
from ..media.files import Rollback, name_too_long, output_path_problem, real_path
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
    _check_extras_folders(jobs, args)
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
    picture = real_path(background)
    written = [j.output for j in jobs] + ([Path(args.coco)] if getattr(args, "coco", None)
                                         else [])
    for path in written:
        if real_path(path) == picture:
            raise InvalidArgumentError(
                f"output {str(path)!r} is the replace-bg picture {str(background)!r}; choose "
                "another -o so that inputs are never overwritten")


# --extract's crops, in <output stem>_extracts/.
_EXTRACT_NAME = r"(segmented_object|object_extract)_\d+\.jpg"
# The class part of an object file's name: a COCO name, spaces written "_".
_CLASS = "(?:" + "|".join(re.escape(name.replace(" ", "_")) for name in COCO_CLASSES) + ")"
_EXTRA_SUFFIXES = {"cutouts": rf"_object_\d+_{_CLASS}\.png",
                   "masks": rf"_(?:mask_\d+_{_CLASS}|labels)\.png"}
#: The longest name each option writes for a stem, past the stem (100 objects at most).
_LONGEST_EXTRA = {"cutouts": "_object_100_" + max(COCO_CLASSES, key=len) + ".png",
                  "masks": "_mask_100_" + max(COCO_CLASSES, key=len) + ".png",
                  "extract": "_extracts"}


def _stems_named_in(name: str, option: str) -> set[str]:
    """The output stems whose ``--cutouts`` / ``--masks`` files (``option``) include one
    named ``name``: ``a`` for ``a_labels.png``; none for a name these files never take."""
    found = set()
    at = name.find("_", 1)
    while at != -1:
        if re.fullmatch(_EXTRA_SUFFIXES[option], name[at:]):
            found.add(name[:at])
        at = name.find("_", at + 1)
    return found


def _check_extras_folders(jobs: list[Job], args: argparse.Namespace) -> None:
    """Refuse, before any work, a ``--cutouts`` or ``--masks`` folder (or an ``--extract``
    folder) where an input, the replace-bg picture or another output of the run has a name
    those files take (writing them, or a re-run's clean-up of the old ones, would replace or
    delete it: an input ``a_labels.png`` beside ``a.jpg``, or the output folder's own copy
    of that input), and names those files would take that are too long for the file
    system."""
    folders = {option: real_path(getattr(args, option))
               for option in ("cutouts", "masks") if getattr(args, option, None)}
    extras = [option for option in _LONGEST_EXTRA if getattr(args, option, None)]
    for job in (j for j in jobs if not j.video):
        for option in extras:
            too_long = name_too_long(job.output.with_name(job.output.stem
                                                          + _LONGEST_EXTRA[option]))
            if too_long:
                raise InvalidArgumentError(f"--{option} of {str(job.source)!r}: {too_long}")
    picture = args.effect.background if (
        args.effect is not None and args.effect.name == "replace-bg") else None
    read = [("the input", path) for job in jobs
            for path in (job.source.absolute(), real_path(job.source))]
    read += [("the replace-bg picture", Path(user_path(picture)).absolute())] if picture else []
    read += [("the replace-bg picture", real_path(picture))] if picture else []
    if args.extract:  # an input in an output's <stem>_extracts/, named like a crop
        extracts = {real_path(job.output.with_name(f"{job.output.stem}_extracts")): job
                    for job in jobs if not job.video}
        for what, path in read:
            job = extracts.get(real_path(path.parent))
            if job is not None and re.fullmatch(_EXTRACT_NAME, path.name):
                raise InvalidArgumentError(
                    f"{what} {str(path)!r} is in {str(job.output.stem)}_extracts/, where "
                    f"--extract writes the crops of {str(job.source)!r} under that name: "
                    "choose another -o")
    if not folders:
        return
    written = [("the output", job.output) for job in jobs]
    places = {real_path(path): (what, path) for what, path in read + written + (
        [("the --coco file", Path(args.coco))] if getattr(args, "coco", None) else [])}
    for option, folder in folders.items():  # -o c.jpg --cutouts c.jpg: the folder was made,
        if folder in places:                  # then the output could not be written
            what, path = places[folder]
            raise InvalidArgumentError(f"--{option} {str(getattr(args, option))!r} is "
                                       f"{what} {str(path)!r}: choose another --{option} "
                                       "folder")
    stems = {job.output.stem: job for job in jobs if not job.video}  # images only
    for what, path in read + written:
        where = real_path(path.parent)
        for option, folder in folders.items():
            if where != folder:
                continue
            for stem in _stems_named_in(path.name, option) & stems.keys():
                raise InvalidArgumentError(
                    f"--{option} {str(getattr(args, option))!r} would hold {what} "
                    f"{str(path)!r}, a name the {option} of {str(stems[stem].source)!r} "
                    f"take: choose another --{option} folder")


def _check_coco_file(jobs: list[Job], args) -> None:
    """Refuse a ``--coco`` file that is an input, an output picture or the model file: it is
    written last, over whatever is there."""
    coco = getattr(args, "coco", None)
    if not coco:
        return
    target = real_path(coco)
    for job in jobs:
        if target == real_path(job.source):
            raise InvalidArgumentError(
                f"--coco {str(coco)!r} is the input {str(job.source)!r}; choose another file "
                "so that inputs are never overwritten")
        if target == real_path(job.output):
            raise InvalidArgumentError(
                f"--coco {str(coco)!r} is also the output picture of {str(job.source)!r}; "
                "choose another file")
    records = {real_path(job.record) for job in jobs if job.record is not None}
    if target in records:
        raise InvalidArgumentError(f"--coco {str(coco)!r} is the output folder's record of "
                                   "finished outputs; choose another file")
    model = getattr(args, "model", None)
    if model and target == real_path(model):
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
                named = job.output.with_suffix(".png")
                if real_path(named) == real_path(job.source):  # never the input's own name
                    named = job.output.with_name(f"{job.output.stem}_segmented.png")
                raise EffectError(
                    f"remove-bg makes a transparent picture, which {job.output.suffix} cannot "
                    f"hold: name the output {named.name}"
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


def clear_previous_extras(job: Job, args: argparse.Namespace, group: Rollback) -> None:
    """Delete the files an earlier run wrote for this output (its ``--extract`` crops,
    ``--cutouts`` and ``--masks``), so that a re-run with fewer objects leaves no stale
    object files beside the new ones; as part of ``group``, which puts them back if this run
    fails for the image. Only names this command writes are touched."""
    extracts = job.output.with_name(f"{job.output.stem}_extracts")
    found: list[Path] = []
    if args.extract and extracts.is_dir():
        found += [p for p in extracts.iterdir() if re.fullmatch(_EXTRACT_NAME, p.name)]
    for option in _EXTRA_SUFFIXES:
        if getattr(args, option, None):
            found += _earlier_extras(Path(getattr(args, option)), option, job.output.stem, args)
    for path in found:
        if path.is_file():
            group.remove(path)


_listing_lock = threading.Lock()


def _earlier_extras(folder: Path, option: str, stem: str, args: argparse.Namespace) -> list:
    """The files in ``folder`` that ``--option`` wrote for ``stem`` before this run. The
    folder is listed once per run, by stem (a listing per image took a time that grew with
    the folder: minutes for 10,000 photos' cut-outs)."""
    with _listing_lock:
        listings = vars(args).setdefault("_earlier_extras", {})
        if (folder, option) not in listings:
            by_stem: dict[str, list[str]] = {}
            if folder.is_dir():
                for entry in os.scandir(folder):
                    for owner in _stems_named_in(entry.name, option):
                        by_stem.setdefault(owner, []).append(entry.name)
            listings[(folder, option)] = by_stem
        return [folder / name for name in listings[(folder, option)].pop(stem, [])]


def save_extras(image: np.ndarray, det, job: Job, args: argparse.Namespace,
                group: Rollback) -> None:
    """Write ``--cutouts`` and ``--masks`` files for one image, as part of ``group``."""
    from ..effects.cutouts import save_cutouts, save_masks

    prefix = f"{job.output.stem}_"
    if args.cutouts:
        save_cutouts(image, det, Path(args.cutouts), prefix=prefix, rollback=group)
    if args.masks:
        save_masks(det, Path(args.masks), prefix=prefix, rollback=group)
