"""PixelLib's formats: target-class dicts, the results dict, and extracted-object files.

Pure functions between the core's :class:`~pixellib.structures.Detections` (boxes float32
``(N, 4)``, masks ``(N, H, W)``) and what PixelLib 0.7.1 users index into (docs/design.md,
"PixelLib's results"):

=====================  ==========================================================================
``boxes``              numpy int64 ``(N, 4)`` ``x1, y1, x2, y2``: the float boxes truncated
``class_ids``          numpy int64 ``(N,)``
``class_names``        ``list[str]``, COCO names with spaces (``"traffic light"``)
``object_counts``      ``collections.Counter`` of ``class_names``
``scores``             numpy float32 ``(N,)``: whole percentages, ``trunc(score * 100)`` in float32
``masks``              numpy bool ``(H, W, N)`` (``(H, W, 0)`` when empty), or with
                       ``mask_points_values`` an ``(N,)`` object array (``[]`` when empty)
                       whose entry per object is a list of ``(K, 2)`` int64 ``x, y`` outline
                       arrays (one per separate part or hole), see :func:`points_array`
``extracted_objects``  ``[]`` unless extracting, else one BGR crop per object
=====================  ==========================================================================

Everything is in result order: descending score. PixelLib itself returns ``scores`` as an int64
torch tensor and, after class filtering, changes the types of several keys; here the types
are the same in every case.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

import numpy as np

from ...classes import COCO_CLASSES, class_id
from ...errors import InvalidArgumentError
from ...export import extract_objects, mask_polygons, save_extracts  # noqa: F401 - re-export
from ...structures import Detections
from ...visualize import annotate, check_style
from ...wording import short_repr

# select_target_classes' parameters, in PixelLib's order (COCO's): "traffic_light", ...
FLAG_NAMES = tuple(name.replace(" ", "_") for name in COCO_CLASSES)


def _is_flag(value) -> bool:
    """True, False, None (PixelLib's ``flag == True`` reads it as False) or a number equal
    to 1 or 0, which it reads as True or False."""
    if value is None:
        return True
    return (isinstance(value, (bool, np.bool_, int, float, np.integer, np.floating))
            and value in (0, 1))


def target_flags(*positional, **flags) -> dict[str, str]:
    """PixelLib's ``select_target_classes``: ``{class name: "valid" | "invalid"}`` for all 80.

    ``flags`` are class names with spaces written as underscores (``traffic_light=True``);
    True (or 1) selects the class, False, 0 or None does not; other values (``"no"``, 2...)
    are a ``TypeError`` (PixelLib silently selected nothing with them).
    ``positional`` flags follow PixelLib's parameter order,
    :data:`FLAG_NAMES` (``target_flags(True)`` selects person). An unknown name raises
    ``ValueError`` listing the valid ones.
    """
    if len(positional) > len(FLAG_NAMES):
        raise TypeError(f"select_target_classes() takes {len(FLAG_NAMES)} class flags, got "
                        f"{len(positional)} positional ones")
    for name, on in zip(FLAG_NAMES, positional):
        if not _is_flag(on):
            raise TypeError(f"select_target_classes() takes True or False by position (in "
                            f"COCO's order, first {name!r}), got {on!r}; name a class as "
                            "select_target_classes(car=True)")
        if name in flags:
            raise TypeError(f"select_target_classes() got multiple values for {name!r}")
        flags[name] = on
    for name, on in flags.items():
        if not _is_flag(on):  # PixelLib tests `flag == True`: "no" or 2 selected nothing
            raise TypeError(f"select_target_classes({name}=...) takes True or False, got "
                            f"{on!r}")
    selected = {COCO_CLASSES[class_id(name)] for name, on in flags.items() if on}
    for name in flags:  # also validate the names passed as False
        class_id(name)
    return {name: "valid" if name in selected else "invalid" for name in COCO_CLASSES}


def target_class_ids(targets) -> np.ndarray | None:
    """Class ids selected by ``segment_target_classes``; ``None`` means keep everything.

    Accepts what :func:`target_flags` returns (a mapping of names to ``"valid"`` /
    ``"invalid"`` or to booleans; names with spaces or underscores), and, as an extension,
    an iterable of class names or ids, or one name.
    """
    if targets is None:
        return None
    ids: set[int] = set()
    if isinstance(targets, Mapping):
        for name, flag in targets.items():
            cid = class_id(str(name))
            if isinstance(flag, str) and flag in ("valid", "invalid"):
                on = flag == "valid"
            elif isinstance(flag, (bool, np.bool_)):
                on = bool(flag)
            else:
                raise InvalidArgumentError(
                    f"segment_target_classes[{name!r}] must be 'valid', 'invalid' or a bool, "
                    f"got {flag!r}; build it with select_target_classes(person=True, ...)"
                )
            if on:
                ids.add(cid)
    elif isinstance(targets, str):
        ids.add(class_id(targets))
    elif isinstance(targets, Iterable):
        for item in targets:
            if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
                if not 0 <= int(item) < len(COCO_CLASSES):
                    raise InvalidArgumentError(
                        f"class id must be in [0, {len(COCO_CLASSES)}), got {item}"
                    )
                ids.add(int(item))
            else:
                ids.add(class_id(str(item)))
    else:
        raise TypeError(
            "segment_target_classes must be the dict from select_target_classes(), class "
            f"names or ids, got {type(targets).__name__}"
        )
    return np.array(sorted(ids), dtype=np.int64)


def filter_results(results: Mapping, ids: np.ndarray | None) -> dict:
    """``results`` (the dict above) with only the objects whose class id is in ``ids``
    (None keeps them all): every per-object key filtered alike, ``object_counts`` recounted."""
    n = len(results["class_ids"])
    keep = (np.ones(n, bool) if ids is None
            else np.isin(np.asarray(results["class_ids"], np.int64), ids))
    index = np.flatnonzero(keep)

    def per_object(values):
        if isinstance(values, np.ndarray) and values.dtype != object:
            return values[index]
        return [values[int(k)] for k in index]

    names = per_object(results["class_names"])
    masks = results["masks"]
    if isinstance(masks, np.ndarray) and masks.dtype == bool and masks.ndim == 3:
        masks = masks[:, :, index]  # (H, W, N)
    elif len(masks) == n:  # mask_points_values outlines
        masks = points_array(per_object(masks))
    extracted = results.get("extracted_objects", [])
    return {**results,
            "boxes": per_object(np.asarray(results["boxes"])),
            "class_ids": per_object(np.asarray(results["class_ids"])),
            "class_names": names,
            "object_counts": Counter(names),
            "scores": per_object(np.asarray(results["scores"])),
            "masks": masks,
            "extracted_objects": (per_object(extracted) if len(extracted) == n
                                  else list(extracted))}


def score_percent(scores: np.ndarray) -> np.ndarray:
    """PixelLib's integer percentages: ``trunc(score * 100)`` with the product in float32."""
    return (np.asarray(scores, np.float32) * np.float32(100)).astype(np.int64)


# PixelLib's defaults, passed on when no box is drawn (the caller's values then go unused).
UNUSED_STYLE = (0.6, 1, 2)


def flags(**values) -> tuple[bool, ...]:
    """The on/off options given, as bools in the order given. PixelLib tested them with
    ``== True``, so ``0``, ``1``, numpy bools and None (off) keep their meaning; anything
    else (the string ``"False"``, which ``bool()`` would take for on, or ``2``) is refused
    with an :class:`~pixellib.errors.InvalidArgumentError` naming the option."""
    out = []
    for name, value in values.items():
        if value is None:
            out.append(False)
        elif isinstance(value, (bool, np.bool_)):
            out.append(bool(value))
        elif (isinstance(value, (int, float, np.integer, np.floating))
              and not isinstance(value, complex) and value in (0, 1)):
            out.append(value == 1)
        else:
            kind = f" (a {type(value).__name__})" if isinstance(value, (str, bytes)) else ""
            raise InvalidArgumentError(
                f"{name} must be True or False, got {short_repr(value)}{kind}")
    return tuple(out)


def checked_style(show_bboxes, text_size, text_thickness, box_thickness) -> tuple:
    """``(text_size, text_thickness, box_thickness)``, refused up front (before any image is
    read or segmented) when boxes are drawn and OpenCV could not draw them: an
    :class:`~pixellib.errors.InvalidArgumentError` naming the argument."""
    if not show_bboxes:  # nothing is drawn with them, and PixelLib took anything (None too)
        return UNUSED_STYLE
    whole = [int(v) if isinstance(v, float) and v.is_integer() else v
             for v in (text_thickness, box_thickness)]
    check_style(text_size, *whole)
    return text_size, text_thickness, box_thickness


def draw(image: np.ndarray, det: Detections, *, show_bboxes: bool, text_size: float,
         text_thickness: int, box_thickness: int) -> np.ndarray:
    """The annotated copy of ``image`` (masks at 50 %, boxes and ``"name 98.00"`` captions)."""
    return annotate(image, det, show_boxes=bool(show_bboxes), text_size=text_size,
                    text_thickness=int(text_thickness), box_thickness=int(box_thickness))


def results_dict(det: Detections, *, mask_points_values: bool = False,
                 extracted_objects: list[np.ndarray] | None = None) -> dict:
    """The results dict described in the module docstring, built from ``det``."""
    names = det.class_names
    if mask_points_values:
        masks = points_array([mask_polygons(m) for m in det.masks])
    else:
        masks = np.ascontiguousarray(np.moveaxis(det.masks, 0, -1))  # (N, H, W) -> (H, W, N)
    return {
        "boxes": det.boxes.astype(np.int64),  # truncation toward 0 = floor, boxes are >= 0
        "class_ids": det.class_ids.astype(np.int64, copy=True),
        "class_names": names,
        "object_counts": Counter(names),
        "scores": score_percent(det.scores).astype(np.float32),
        "masks": masks,
        "extracted_objects": list(extracted_objects or []),
    }


def points_array(outlines: list) -> np.ndarray | list:
    """The ``mask_points_values`` container: an ``(N,)`` object array whose entry ``k`` is
    object ``k``'s list of ``(K, 2)`` int64 outlines, or ``[]`` with no object, as PixelLib's
    ``np.asarray(outlines, dtype=object)`` gives in general. (When every object has one part
    of the same length, ``np.asarray`` stacks them into an ``(N, 1, K, 2)`` array of Python
    objects, whose outlines OpenCV's drawing functions refuse; that layout is not kept.)"""
    if not outlines:
        return []
    cells = np.empty(len(outlines), dtype=object)
    for k, parts in enumerate(outlines):
        cells[k] = parts
    return cells


def extract(image: np.ndarray, det: Detections, *, from_box: bool) -> list[np.ndarray]:
    """One BGR crop per detection: mask cut-out on black (PixelLib's crop: the rows and
    columns holding mask pixels), or with ``from_box`` the box crop."""
    return extract_objects(image, det.masks, det.boxes.astype(np.int64), from_box=from_box,
                           drop_gaps=True)


