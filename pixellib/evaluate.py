"""COCO-style accuracy: run the model over an annotated image set and score it with
``pycocotools``' COCOeval (box and mask AP, the 12 standard numbers each, and AP per class).

Needs the ``eval`` extra (``pip install "pixellib[eval]"``). The command line is
``pixellib evaluate`` (:mod:`pixellib.cli.evaluate`).
"""
from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import AnnotationFileError, InputNotFoundError, InvalidArgumentError
from .export import to_coco_json

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
        data = json.loads(path.read_text(encoding="utf-8-sig"))  # a BOM is fine too
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise AnnotationFileError(f"{path}: not a readable JSON file: {e}") from None
    if not isinstance(data, dict):
        raise AnnotationFileError(f"{path}: expected a JSON object with 'images', "
                                  f"'annotations' and 'categories'")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise AnnotationFileError(f"{path}: missing list {key!r}")
    if not data["images"]:
        raise AnnotationFileError(f"{path}: 'images' is empty: there is nothing to evaluate")
    image_ids = set()
    for i, image in enumerate(data["images"]):
        _require(path, "images", i, image, _IMAGE_FIELDS)
        where = f"{path}: images[{i}]"
        _check(where, "id", image["id"], _is_id, "a number or a string")
        where += f" (id {image['id']!r})"
        _check(where, "file_name", image["file_name"], lambda v: isinstance(v, str) and v,
               "a file name")
        for key in ("width", "height"):
            _check(where, key, image[key], lambda v: _is_int(v) and v > 0, "a whole number > 0")
        image_ids.add(image["id"])
    if len(image_ids) != len(data["images"]):
        raise AnnotationFileError(f"{path}: duplicate image ids in 'images'")
    category_ids = set()
    for i, category in enumerate(data["categories"]):
        _require(path, "categories", i, category, ("id", "name"))
        _check(f"{path}: categories[{i}]", "id", category["id"], _is_id, "a number or a string")
        category_ids.add(category["id"])
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
            _check(where, key, ann[key], _is_id, "a number or a string")
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
    return data


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and np.isfinite(value))


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
        raise AnnotationFileError(f"{where}: {key!r} must be {expected}, got {value!r}"[:300])


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
    to exist in ``image_dir`` before any model runs."""
    image_dir = Path(image_dir)
    if limit is not None and (not _is_int(limit) or limit < 1):
        raise InvalidArgumentError(f"limit must be a whole number >= 1, got {limit!r}")
    if not image_dir.is_dir():
        raise InputNotFoundError(f"image folder not found: {image_dir}")
    images = annotations["images"][:limit] if limit is not None else annotations["images"]
    out = []
    for i, image in enumerate(images):
        file = image_dir / image["file_name"]
        if not file.is_file():
            raise InputNotFoundError(
                f"{source}: images[{i}] (id {image['id']}): file {image['file_name']!r} "
                f"not found in {image_dir}")
        out.append((image, file))
    return out


def detect(predictor, items: list[tuple[dict, Path]], *, progress: bool = True) -> list[dict]:
    """Run ``predictor`` on every image; return COCO results (``loadRes`` format: image_id,
    category_id, bbox [x, y, w, h], score, segmentation as compressed RLE)."""
    from tqdm import tqdm

    results = []
    for image, file in tqdm(items, unit="img", disable=not progress, desc="evaluate"):
        det = predictor(file)
        h, w = det.image_size
        if (h, w) != (image["height"], image["width"]):
            raise AnnotationFileError(
                f"image id {image['id']} ({file}): the annotations say "
                f"{image['width']}x{image['height']}, the file is {w}x{h}")
        for ann in to_coco_json(det, image_id=image["id"])["annotations"]:
            results.append({k: ann[k] for k in ("image_id", "category_id", "bbox", "score",
                                               "segmentation")})
    return results


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


def coco_evaluate(annotations: dict, results: list[dict],
                  image_ids: list | None = None) -> Evaluation:
    """Score ``results`` against ``annotations`` (both COCO dicts/lists) with COCOeval,
    restricted to ``image_ids`` when given (e.g. the first N images)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    ids = list(image_ids) if image_ids is not None else [im["id"] for im in annotations["images"]]
    quiet = io.StringIO()  # pycocotools prints progress chatter; keep only the tables
    with contextlib.redirect_stdout(quiet):
        gt = COCO()
        gt.dataset = annotations
        gt.createIndex()
    names = {c["id"]: c["name"] for c in annotations["categories"]}
    summaries, per_class, text = {}, {}, []
    for iou_type in ("bbox", "segm"):
        if not results:  # COCOeval cannot load none: its numbers, by hand
            summaries[iou_type] = _no_detection_stats(annotations, ids)
            class_ap = {cid: 0.0 for cid in names if gt.getAnnIds(imgIds=ids, catIds=[cid])}
        else:
            with contextlib.redirect_stdout(quiet):
                # Mask AP measures object size by mask area: without the box, loadRes takes
                # the area from the mask instead of the box (as detectron2's evaluator does).
                dt = gt.loadRes([{k: v for k, v in r.items()
                                  if iou_type == "bbox" or k != "bbox"} for r in results])
                ev = COCOeval(gt, dt, iou_type)
                ev.params.imgIds = ids
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
                      text="\n".join(text))


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
    lines = [f"{ev.images} images, {ev.detections} detections", "",
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
    return "\n".join(lines)


def evaluate(predictor, annotation_file: str | os.PathLike, image_dir: str | os.PathLike, *,
             limit: int | None = None, progress: bool = True,
             on_results: Callable[[list[dict]], None] | None = None) -> Evaluation:
    """Load and check the annotations, run ``predictor`` over the (first ``limit``) images,
    hand the results to ``on_results`` (e.g. to save them) and score them."""
    annotations = load_annotations(annotation_file)
    items = image_paths(annotations, image_dir, limit=limit, source=annotation_file)
    results = detect(predictor, items, progress=progress)
    if on_results is not None:
        on_results(results)
    return coco_evaluate(annotations, results, [image["id"] for image, _ in items])
