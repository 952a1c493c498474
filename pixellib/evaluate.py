"""COCO-style accuracy: run the model over an annotated image set and score it with
``pycocotools``' COCOeval (box and mask AP, the 12 standard numbers each, and AP per class).

Needs the ``eval`` extra (``pip install "pixellib[eval]"``). The command line is
``pixellib evaluate`` (:mod:`pixellib.cli.evaluate`).
"""
from __future__ import annotations

import contextlib
import io
import math
import os
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .classes import COCO_CLASSES, COCO_FILE_NAMES
from .errors import (
    AnnotationFileError,
    ImageReadError,
    InputNotFoundError,
    InvalidArgumentError,
    PixellibError,
)
from .export import (
    COCO_CATEGORY_IDS,
    _decode_counts,
    check_rle_runs,
    to_coco_json,
)
from .media.files import parse_json
from .wording import counted, shortened

#: What each of COCOeval's 12 summary numbers is, in its order.
STAT_NAMES = (
    "AP @[.50:.95] all", "AP @.50 all", "AP @.75 all",
    "AP @[.50:.95] small", "AP @[.50:.95] medium", "AP @[.50:.95] large",
    "AR @[.50:.95] all, 1 det", "AR @[.50:.95] all, 10 dets", "AR @[.50:.95] all, 100 dets",
    "AR @[.50:.95] small", "AR @[.50:.95] medium", "AR @[.50:.95] large",
)
_IMAGE_FIELDS = ("id", "file_name", "width", "height")
_ANNOTATION_FIELDS = ("id", "image_id", "category_id", "bbox", "area", "segmentation")


def load_annotations(path: str | os.PathLike) -> dict:
    """Read a COCO annotation file and check every field evaluation uses.

    Raises :class:`~pixellib.errors.AnnotationFileError` naming the file and the entry
    (``images[3] (id 42): missing 'height'``) for anything missing or malformed.
    """
    path = Path(path)
    if path.is_dir():
        raise AnnotationFileError(f"{path}: a folder, not an annotation file (COCO JSON)")
    if not path.is_file():
        raise InputNotFoundError(f"annotation file not found: {path}")
    try:
        data = parse_json(path.read_text(encoding="utf-8-sig"))  # a BOM is fine too
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise AnnotationFileError(f"{path}: not a readable JSON file: {e}") from None
    if not isinstance(data, dict):
        raise AnnotationFileError(f"{path}: expected a JSON object with 'images', "
                                  f"'annotations' and 'categories'")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise AnnotationFileError(f"{path}: missing list {key!r}")
    if not data["images"]:
        raise AnnotationFileError(f"{path}: 'images' is empty: there is nothing to evaluate")
    image_ids: dict[int, tuple[int, int]] = {}  # id -> (height, width)
    for i, image in enumerate(data["images"]):
        _require(path, "images", i, image, _IMAGE_FIELDS)
        where = f"{path}: images[{i}]"
        _check(where, "id", image["id"], _is_int, "a whole number")
        where += f" (id {image['id']!r})"
        _check(where, "file_name", image["file_name"], lambda v: isinstance(v, str) and v,
               "a file name")
        for key in ("width", "height"):
            if isinstance(image[key], float) and image[key].is_integer():
                image[key] = int(image[key])  # 320.0: pycocotools takes it too
            _check(where, key, image[key], lambda v: _is_int(v) and v > 0, "a whole number > 0")
        if image["id"] in image_ids:
            raise AnnotationFileError(f"{where}: duplicate image id")
        image_ids[image["id"]] = (image["height"], image["width"])
    category_ids, category_names = set(), {}
    for i, category in enumerate(data["categories"]):
        _require(path, "categories", i, category, ("id", "name"))
        where = f"{path}: categories[{i}]"
        _check(where, "id", category["id"], _is_int, "a whole number")
        where += f" (id {category['id']!r})"
        _check(where, "name", category["name"], lambda v: isinstance(v, str) and v.strip(),
               "a class name")
        if category["id"] in category_ids:
            raise AnnotationFileError(f"{where}: duplicate category id")
        key = _class_key(category["name"])
        if key in category_names:  # AP per class is keyed by name: one would hide the other
            raise AnnotationFileError(
                f"{where}: name {category['name']!r} is also categories"
                f"[{category_names[key]}]'s; category names must be distinct")
        category_ids.add(category["id"])
        category_names[key] = i
    ann_ids = set()
    for i, ann in enumerate(data["annotations"]):
        _require(path, "annotations", i, ann, _ANNOTATION_FIELDS)
        _check(f"{path}: annotations[{i}]", "id", ann["id"], _is_id, "a number or a string")
        where = f"{path}: annotations[{i}] (id {ann['id']!r})"
        if ann["id"] in ann_ids:  # pycocotools keys annotations by id: all but one would go
            raise AnnotationFileError(f"{where}: duplicate annotation id; ids must be unique "
                                      "across the file, not per image")
        ann_ids.add(ann["id"])
        bbox = ann["bbox"]
        if not (isinstance(bbox, list) and len(bbox) == 4
                and all(_is_number(v) for v in bbox) and bbox[2] >= 0 and bbox[3] >= 0):
            raise AnnotationFileError(f"{where}: 'bbox' must be [x, y, width, height]")
        for key in ("image_id", "category_id"):
            _check(where, key, ann[key], _is_int, "a whole number")
        if ann["image_id"] not in image_ids:
            raise AnnotationFileError(f"{where}: image_id {ann['image_id']!r} is not in 'images'")
        if ann["category_id"] not in category_ids:
            raise AnnotationFileError(
                f"{where}: category_id {ann['category_id']!r} is not in 'categories'")
        _check(where, "area", ann["area"], lambda v: _is_number(v) and v >= 0, "a number >= 0")
        ann.setdefault("iscrowd", 0)  # COCOeval reads it; absent means a plain object
        _check(where, "iscrowd", ann["iscrowd"], lambda v: _is_int(v) and v in (0, 1), "0 or 1")
        _check(where, "segmentation", ann["segmentation"], _is_segmentation,
               "polygons [[x1, y1, x2, y2, x3, y3, ...], ...] or an RLE "
               "{'size': [height, width], 'counts': ...}")
        problem = _segmentation_problem(ann["segmentation"], *image_ids[ann["image_id"]])
        if problem:
            raise AnnotationFileError(shortened(f"{where}: {problem}", 300))
    return data


def _class_key(name: str) -> str:
    """A class name as compared with COCO's: case, ``_``/``-`` and spacing aside."""
    return " ".join(name.replace("_", " ").replace("-", " ").lower().split())


# PixelLib's names and the annotation files' (which spell "hair drier").
_COCO_KEYS = {_class_key(name): k for names in (COCO_CLASSES, COCO_FILE_NAMES)
              for k, name in enumerate(names)}


def category_map(annotations: dict, source: str | os.PathLike = "annotations"
                 ) -> tuple[dict[int, int], list[str]]:
    """The file's category id for each official COCO category id the model gives, matched
    by **name** (any case, ``_`` or ``-`` for spaces), and the names of the file's categories
    that are no COCO class (the model cannot find them: they score 0).

    COCO val2017 maps every id to itself; a user's own file with ``person`` as 1 and ``car``
    as 2 gets the model's cars scored as its 2s. Raises :class:`AnnotationFileError` when
    no category is a COCO class."""
    if not annotations["categories"]:
        raise AnnotationFileError(f"{source}: 'categories' is empty: nothing to evaluate")
    mapping, unmatched = {}, []
    for category in annotations["categories"]:
        k = _COCO_KEYS.get(_class_key(category["name"]))
        if k is None:
            unmatched.append(category["name"])
        elif COCO_CATEGORY_IDS[k] in mapping:
            raise AnnotationFileError(
                f"{source}: categories {mapping[COCO_CATEGORY_IDS[k]]} and {category['id']} "
                f"are both the COCO class {COCO_CLASSES[k]!r}")
        else:
            mapping[COCO_CATEGORY_IDS[k]] = category["id"]
    if not mapping:
        names = ", ".join(repr(c["name"]) for c in annotations["categories"][:5])
        raise AnnotationFileError(
            f"{source}: none of the {len(annotations['categories'])} categories ({names}"
            f"{', ...' if len(annotations['categories']) > 5 else ''}) is one of the 80 COCO "
            "classes the model detects (person, bicycle, car, ...): nothing to evaluate")
    return mapping, unmatched


def _segmentation_problem(seg, height: int, width: int) -> str | None:
    """What makes a (well-typed) segmentation unusable for an image of ``height x width``:
    an RLE of another size or with runs that do not cover it, a polygon far outside the
    image (pycocotools rasterizes the whole extent: one coordinate of 1e12 exhausts memory)."""
    if isinstance(seg, dict):
        if list(seg["size"]) != [height, width]:
            return (f"RLE 'size' {seg['size']} is not the image's [height, width] "
                    f"[{height}, {width}]")
        counts = seg["counts"]
        if isinstance(counts, str):
            try:
                runs = _decode_counts(counts)
            except PixellibError as e:
                return f"RLE 'counts' is not a COCO compressed string: {e}"
        else:
            if not all(_is_int(v) for v in counts):
                return "RLE 'counts' must be whole numbers"
            runs = counts
        try:
            check_rle_runs(runs, height, width)
        except PixellibError as e:
            return f"RLE 'counts': {e}"
        return None
    for poly in seg:
        xs, ys = poly[0::2], poly[1::2]
        if (min(xs) < -width or max(xs) > 2 * width or min(ys) < -height
                or max(ys) > 2 * height):
            far = next((x, y) for x, y in zip(xs, ys) if not (
                -width <= x <= 2 * width and -height <= y <= 2 * height))
            return (f"polygon point {far} is far outside the {width}x{height} image "
                    "(more than the image's size beyond its edges)")
    return None


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    """A finite number; integers past 2**53, which no float holds exactly (2**64 made
    np.isfinite raise a TypeError), are none."""
    if isinstance(value, float):
        return math.isfinite(value)
    return _is_int(value) and abs(value) <= 2**53


def _is_id(value) -> bool:
    return _is_int(value) or (isinstance(value, str) and bool(value))


def _is_segmentation(value) -> bool:
    if isinstance(value, dict):
        size = value.get("size")
        return (isinstance(size, list) and len(size) == 2 and all(_is_int(v) for v in size)
                and isinstance(value.get("counts"), (str, list)))
    return (isinstance(value, list) and len(value) > 0 and all(
        isinstance(poly, list) and len(poly) >= 6 and len(poly) % 2 == 0
        and all(_is_number(v) for v in poly) for poly in value))


def _check(where: str, key: str, value, ok: Callable, expected: str) -> None:
    if not ok(value):
        raise AnnotationFileError(
            shortened(f"{where}: {key!r} must be {expected}, got {value!r}", 300))


def _require(path: Path, section: str, index: int, entry, fields: Iterable[str]) -> None:
    if not isinstance(entry, dict):
        raise AnnotationFileError(f"{path}: {section}[{index}] is not an object")
    missing = [f for f in fields if f not in entry]
    if missing:
        ident = f" (id {entry['id']})" if "id" in entry else ""
        names = ", ".join(repr(m) for m in missing)
        raise AnnotationFileError(f"{path}: {section}[{index}]{ident}: missing {names}")


def image_paths(annotations: dict, image_dir: str | os.PathLike, *, limit: int | None = None,
                source: str | os.PathLike = "annotations") -> list[tuple[dict, Path]]:
    """``(image entry, path)`` for the first ``limit`` images (all when None), each checked
    before any model runs: the file is there, and its size (from the header, turned by its
    EXIF orientation as it will be read) is the one the annotations give."""
    image_dir = Path(image_dir)
    if limit is not None and (not _is_int(limit) or limit < 1):
        raise InvalidArgumentError(f"limit must be a whole number >= 1, got {limit!r}")
    if not image_dir.is_dir():
        raise InputNotFoundError(f"image folder not found: {image_dir}")
    images = annotations["images"][:limit] if limit is not None else annotations["images"]
    out = []
    for i, image in enumerate(images):
        file = image_dir / image["file_name"]
        where = f"{source}: images[{i}] (id {image['id']})"
        if file.is_dir():
            raise AnnotationFileError(
                f"{where}: {image['file_name']!r} in {image_dir} is a folder, not an image")
        if not file.is_file():
            raise InputNotFoundError(
                f"{where}: file {image['file_name']!r} not found in {image_dir}")
        problem = _size_problem(file, image["height"], image["width"])
        if problem:
            raise AnnotationFileError(f"{where}: {problem}")
        out.append((image, file))
    return out


def _size_problem(file: Path, height: int, width: int) -> str | None:
    """Why ``file`` is not ``width x height`` as read (EXIF orientation applied, as
    ``cv2.imread`` and detectron2 do); None when it is, or when its header says nothing (the
    detection pass then checks the decoded image)."""
    from PIL import Image

    try:
        with Image.open(file) as im:
            w, h = im.size
            orientation = im.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - advisory: an unreadable file is reported when read
        return None
    turned = orientation in (5, 6, 7, 8)
    if turned:
        w, h = h, w
    if (h, w) == (height, width):
        return None
    said = _size_mismatch(file, height, width, h, w)
    if turned and (w, h) == (height, width):
        return (f"{said}: its EXIF orientation ({orientation}) turns it when read, and the "
                "annotations give the size as stored; annotate the turned image, or remove "
                "the orientation tag after turning the pixels")
    return said


def _size_mismatch(file: Path, height: int, width: int, h: int, w: int) -> str:
    return f"the annotations say {width}x{height}, the file {file} is {w}x{h}"


def detect(predictor, items: list[tuple[dict, Path]], *, progress: bool = True,
           categories: dict[int, int] | None = None) -> tuple[list[dict], list, int]:
    """Run ``predictor`` on every image; return ``(results, skipped, left_out)``: the COCO
    results (``loadRes`` format: image_id, category_id, bbox [x, y, w, h], score,
    segmentation as compressed RLE), the ``(image entry, reason)`` of images that could not
    be read (each also a :class:`SkippedImageWarning`), and how many detections were left
    out for a class the annotations do not have.

    ``categories`` maps official COCO ids to the file's (:func:`category_map`); None keeps
    the official ids."""
    from .runtime.progress import ProgressBar
    from .torchbackend.instance.segmentation import SkippedImageWarning

    results, skipped, left_out = [], [], 0
    for image, file in ProgressBar(items, unit="img", disable=not progress, desc="evaluate"):
        try:
            det = predictor(file)
            h, w = det.image_size
            if (h, w) != (image["height"], image["width"]):
                raise ImageReadError(
                    _size_mismatch(file, image["height"], image["width"], h, w))
        except (ImageReadError, InputNotFoundError) as e:
            reason = f"image id {image['id']} ({file}) left out of the scores: {e}"
            skipped.append((image, str(e)))
            warnings.warn(reason, SkippedImageWarning, stacklevel=2)
            continue
        for ann in to_coco_json(det, image_id=image["id"])["annotations"]:
            if categories is not None:
                if ann["category_id"] not in categories:
                    left_out += 1
                    continue
                ann["category_id"] = categories[ann["category_id"]]
            results.append({k: ann[k] for k in ("image_id", "category_id", "bbox", "score",
                                               "segmentation")})
    return results, skipped, left_out


@dataclass
class Evaluation:
    """COCOeval's summaries: ``box``/``mask`` are the 12 numbers (see :data:`STAT_NAMES`;
    -1 where nothing qualifies), ``per_class`` maps category name to (box AP, mask AP)
    over IoU .50:.95 (None for a class without ground truth)."""

    box: list[float]
    mask: list[float]
    per_class: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    images: int = 0
    detections: int = 0
    text: str = ""  # COCOeval's own printed tables
    objects: int = 0  # ground-truth objects (not crowd regions) in the images scored
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, why) not read
    unmatched_categories: list[str] = field(default_factory=list)  # no COCO class is them
    left_out: int = 0  # detections of COCO classes the annotations do not have


def coco_evaluate(annotations: dict, results: list[dict],
                  image_ids: list | None = None) -> Evaluation:
    """Score ``results`` against ``annotations`` (both COCO dicts/lists) with COCOeval,
    restricted to ``image_ids`` when given (e.g. the first N images)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    ids = list(image_ids) if image_ids is not None else [im["id"] for im in annotations["images"]]
    numbered, numbered_results, numbered_ids = _numbered(annotations, results, ids)
    quiet = io.StringIO()  # pycocotools prints progress chatter; keep only the tables
    with contextlib.redirect_stdout(quiet):
        gt = COCO()
        gt.dataset = numbered
        gt.createIndex()
    names = {c["id"]: c["name"] for c in numbered["categories"]}
    summaries, per_class, text = {}, {}, []
    for iou_type in ("bbox", "segm"):
        if not results:  # COCOeval cannot load none: its numbers, by hand
            summaries[iou_type] = _no_detection_stats(annotations, ids)
            # 0 for the classes with an object to find; crowd regions are none (COCOeval
            # leaves a class with only crowd regions out, as None).
            class_ap = {cid: 0.0 for cid in names
                        if gt.getAnnIds(imgIds=numbered_ids, catIds=[cid], iscrowd=False)}
        else:
            with contextlib.redirect_stdout(quiet):
                # Mask AP measures object size by mask area: without the box, loadRes takes
                # the area from the mask instead of the box (as detectron2's evaluator does).
                dt = gt.loadRes([{k: v for k, v in r.items()
                                  if iou_type == "bbox" or k != "bbox"}
                                 for r in numbered_results])
                ev = COCOeval(gt, dt, iou_type)
                ev.params.imgIds = numbered_ids
                ev.evaluate()
                ev.accumulate()
            table = io.StringIO()
            with contextlib.redirect_stdout(table):
                ev.summarize()
            text.append(f"{'box' if iou_type == 'bbox' else 'mask'} ({iou_type}):\n"
                        + table.getvalue())
            summaries[iou_type] = [float(v) for v in ev.stats]
            # precision: [IoU thresholds, recall points, categories, area ranges, max dets]
            precision = ev.eval["precision"][:, :, :, 0, -1]
            class_ap = {}
            for k, cid in enumerate(ev.params.catIds):
                p = precision[:, :, k]
                class_ap[cid] = float(np.mean(p[p > -1])) if (p > -1).any() else None
        for cid, name in names.items():
            box_ap, mask_ap = per_class.get(name, (None, None))
            ap = class_ap.get(cid)
            per_class[name] = (ap, mask_ap) if iou_type == "bbox" else (box_ap, ap)
    used = set(ids)
    return Evaluation(box=summaries["bbox"], mask=summaries["segm"], per_class=per_class,
                      images=len(ids),
                      detections=sum(1 for r in results if r["image_id"] in used),
                      text="\n".join(text),
                      objects=sum(1 for a in annotations["annotations"]
                                  if a["image_id"] in used and not a.get("iscrowd")))


def _numbered(annotations: dict, results: list[dict],
              image_ids: list) -> tuple[dict, list[dict], list[int]]:
    """Copies of the annotations, results and image ids with images, categories and
    annotations numbered 1, 2, 3... in file order, which is what COCOeval scores right:
    it takes annotation id 0 for "no match" (ids from 0 lowered AP with no word), fails on
    string ids after the whole detection pass, and turns all image ids into floats when one
    is 2**63 or more (images whose ids a float cannot hold then dropped out of the scores)."""
    image_no = {im["id"]: k for k, im in enumerate(annotations["images"], 1)}
    category_no = {c["id"]: k for k, c in enumerate(annotations["categories"], 1)}
    for image_id in list(image_ids) + [r["image_id"] for r in results]:
        if image_id not in image_no:
            raise InvalidArgumentError(f"image id {image_id!r} is not in the annotations' "
                                       "'images'")
    numbered = {
        **annotations,
        "images": [{**im, "id": image_no[im["id"]]} for im in annotations["images"]],
        "categories": [{**c, "id": category_no[c["id"]]} for c in annotations["categories"]],
        "annotations": [{**a, "id": k, "image_id": image_no[a["image_id"]],
                         "category_id": category_no[a["category_id"]]}
                        for k, a in enumerate(annotations["annotations"], 1)],
    }
    # A class the annotations lack gets 0, no category's number: COCOeval leaves it out, as
    # it would have left the class out under its own id.
    numbered_results = [{**r, "image_id": image_no[r["image_id"]],
                         "category_id": category_no.get(r["category_id"], 0)} for r in results]
    return numbered, numbered_results, [image_no[i] for i in image_ids]


def _no_detection_stats(annotations: dict, image_ids: list) -> list[float]:
    """COCOeval's 12 numbers without a detection: 0 where there is ground truth to find,
    -1 (COCO's "nothing to measure") for area ranges without any (COCO's bounds, both
    inclusive: small up to 32**2, medium 32**2 to 96**2, large from 96**2)."""
    used = set(image_ids)
    areas = [a["area"] for a in annotations["annotations"]
             if a["image_id"] in used and not a.get("iscrowd")]
    ranges = [(0, 1e10), (0, 32**2), (32**2, 96**2), (96**2, 1e10)]
    has = [any(lo <= area <= hi for area in areas) for lo, hi in ranges]
    pick = [0, 0, 0, 1, 2, 3, 0, 0, 0, 1, 2, 3]  # AP, AP50, AP75, APs/m/l, AR1/10/100, ARs/m/l
    return [0.0 if has[k] else -1.0 for k in pick]


def format_report(ev: Evaluation) -> str:
    """The two 12-number tables side by side, then AP per class (classes with ground truth)."""
    lines = [f"{counted(ev.images, 'image')}, {counted(ev.detections, 'detection')}", "",
             f"{'':32s} {'box':>7s} {'mask':>7s}"]
    for name, b, m in zip(STAT_NAMES, ev.box, ev.mask):
        lines.append(f"{name:32s} {b:7.3f} {m:7.3f}")
    rows = [(n, b, m) for n, (b, m) in ev.per_class.items() if b is not None or m is not None]
    if rows:
        lines += ["", f"{'AP per class':32s} {'box':>7s} {'mask':>7s}"]
        for name, b, m in rows:
            fb = f"{b:7.3f}" if b is not None else f"{'-':>7s}"
            fm = f"{m:7.3f}" if m is not None else f"{'-':>7s}"
            lines.append(f"{name:32s} {fb} {fm}")
    notes = []
    if ev.objects == 0:
        notes.append("no ground-truth object in these images: every AP and AR is -1 "
                     "(COCO's 'nothing to measure')")
    if ev.unmatched_categories:
        names = ev.unmatched_categories
        many = len(names) > 1
        notes.append(f"{counted(len(names), 'category', 'categories')} "
                     f"{'are' if many else 'is'} no COCO class, so the model finds "
                     f"{'none of them' if many else 'none'}: {', '.join(names[:10])}"
                     f"{', ...' if len(names) > 10 else ''}")
    if ev.left_out:
        notes.append(f"{ev.left_out} detections of COCO classes the annotations do not have "
                     "are left out")
    if ev.skipped:
        notes.append(f"{counted(len(ev.skipped), 'image')} could not be read and "
                     f"{'are' if len(ev.skipped) > 1 else 'is'} left out of the scores: "
                     + "; ".join(f"{f}: {why}" for f, why in ev.skipped[:5])
                     + ("; ..." if len(ev.skipped) > 5 else ""))
    if notes:
        lines += [""] + [f"note: {n}" for n in notes]
    return "\n".join(lines)


@dataclass
class Plan:
    """What :func:`prepare` checked: the annotations, the images to run (``(entry, path)``),
    the file's category for each official COCO id and the categories no COCO class is."""

    annotations: dict
    items: list[tuple[dict, Path]]
    categories: dict[int, int]
    unmatched_categories: list[str]


def prepare(annotation_file: str | os.PathLike, image_dir: str | os.PathLike, *,
            limit: int | None = None) -> Plan:
    """Every check that needs no model: the annotation file (:func:`load_annotations`), the
    images (:func:`image_paths`) and the categories (:func:`category_map`)."""
    annotations = load_annotations(annotation_file)
    items = image_paths(annotations, image_dir, limit=limit, source=annotation_file)
    categories, unmatched = category_map(annotations, annotation_file)
    return Plan(annotations, items, categories, unmatched)


def evaluate(predictor, annotation_file: str | os.PathLike | Plan,
             image_dir: str | os.PathLike | None = None, *, limit: int | None = None,
             progress: bool = True,
             on_results: Callable[[list[dict]], None] | None = None) -> Evaluation:
    """Load and check the annotations (or take a :func:`prepare`'d plan), run ``predictor``
    over the (first ``limit``) images, hand the results to ``on_results`` (e.g. to save them)
    and score them.

    Categories are matched to the model's classes by name (:func:`category_map`). An image
    that cannot be read is left out of the scores with a :class:`SkippedImageWarning` and
    listed in :attr:`Evaluation.skipped`; when none can be read, :class:`ImageReadError`."""
    if isinstance(annotation_file, Plan):
        plan = annotation_file
    elif image_dir is None:
        raise InvalidArgumentError("evaluate() needs the image folder after the annotation "
                                   "file (or a plan from prepare())")
    else:
        plan = prepare(annotation_file, image_dir, limit=limit)
    results, skipped, left_out = detect(predictor, plan.items, progress=progress,
                                        categories=plan.categories)
    if len(skipped) == len(plan.items):
        raise ImageReadError(f"none of the {len(plan.items)} images could be read; the "
                             f"first: {skipped[0][1]}")
    if on_results is not None:
        on_results(results)
    gone = {image["id"] for image, _ in skipped}
    ev = coco_evaluate(plan.annotations, results,
                       [image["id"] for image, _ in plan.items if image["id"] not in gone])
    ev.skipped = [(image["file_name"], why) for image, why in skipped]
    ev.unmatched_categories = list(plan.unmatched_categories)
    ev.left_out = left_out
    return ev
