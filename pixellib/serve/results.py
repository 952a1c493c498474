"""The work a request hands to the pool: decode, segment, filter, then JSON or an image.

Everything CPU-heavy for a request (decoding, inference, RLE encoding, drawing, encoding the
output image) runs here, on a replica's worker thread.
"""
from __future__ import annotations

import json

import cv2
import numpy as np

from ..errors import ImageReadError, ImageTooLargeError
from ..export import mask_polygons, mask_to_rle
from ..media.images import decode_image, side_limit_error
from ..structures import Detections
from .uploads import ApiError

# Leading bytes of the formats OpenCV decodes: data that starts otherwise is not an image
# (415); data that does but cannot be decoded is a broken image (422).
_MAGIC = (b"\xff\xd8", b"\x89PNG", b"GIF8", b"II*\x00", b"MM\x00*", b"P1", b"P2", b"P3", b"P4",
          b"P5", b"P6", b"P7", b"\x00\x00\x00\x0cjP", b"\xff\x4f\xff\x51", b"#?RADIANCE",
          b"#?RGBE", b"PF", b"Pf", b"\x76\x2f\x31\x01")
# BMP's two letters and RIFF's four start much else (text, WAV, AVI): those two are taken
# with their next fields, the DIB header's size (12 for OS/2 1.x, 16 to 124 for the others)
# and the RIFF form type.
_BMP_INFO_SIZES = range(12, 125)
# ISO base media files (AVIF) start with a box size, then "ftyp" and the brand.
_ISO_BRANDS = (b"ftypavif", b"ftypavis")


def _looks_like_image(data: bytes) -> bool:
    """Whether ``data`` starts like one of the formats OpenCV decodes."""
    return (data.startswith(_MAGIC) or data[4:12] in _ISO_BRANDS
            or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")
            or (data[:2] == b"BM" and len(data) >= 18
                and int.from_bytes(data[14:18], "little") in _BMP_INFO_SIZES))

_MIME = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}


def decode_upload(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    try:
        return decode_image(data, name, max_pixels=max_pixels)
    except ImageTooLargeError as e:
        raise ApiError(413, "image too large", str(e).split(";")[0]) from None
    except ImageReadError as e:
        if not _looks_like_image(data):
            what = "the request body" if name == "body" else repr(name)
            how = ("; send the image itself as the body, or as the multipart/form-data field "
                   "'image'" if name == "body" else "")
            raise ApiError(415, "unsupported media type",
                           f"{what} is not an image in a format the server reads (JPEG, PNG, "
                           f"WebP, BMP, TIFF, ...){how}") from None
        raise ApiError(422, "unreadable image", str(e)) from None


def select(det: Detections, opts: dict) -> Detections:
    """Apply the request's confidence, classes and max_detections (order kept)."""
    if opts["confidence"] is not None:
        det = det[det.scores > np.float32(opts["confidence"])]
    if opts["classes"] is not None:
        det = det.with_classes(opts["classes"])
    if opts["max_detections"] is not None:
        det = det[: opts["max_detections"]]
    return det


def detections_json(det: Detections, *, polygons: bool) -> dict:
    h, w = det.image_size
    objects = []
    for k in range(len(det)):
        mask = det.masks[k]
        obj = {
            "class_id": int(det.class_ids[k]),
            "class_name": det.class_names[k],
            "score": float(det.scores[k]),
            "box": [float(v) for v in det.boxes[k]],
            "area": int(np.count_nonzero(mask)),
            "mask": mask_to_rle(mask),
        }
        if polygons:
            obj["polygons"] = [p.tolist() for p in mask_polygons(mask)]
        objects.append(obj)
    return {"image": {"width": int(w), "height": int(h)}, "count": len(objects),
            "objects": objects}


def _json_bytes(det: Detections, opts: dict) -> bytes:
    """The answer of ``/v1/segment`` (serialised here, off the event loop)."""
    return json.dumps(detections_json(det, polygons=opts["polygons"])).encode()


def segment_job(files: dict, opts: dict, max_pixels: int):
    """A pool job: ``predictor -> JSON bytes``."""
    name, data = files["image"]

    def job(predictor):
        image = decode_upload(data, name, max_pixels)
        return _json_bytes(select(predictor(image), opts), opts)

    return job


def render_job(files: dict, opts: dict, max_pixels: int, effect):
    """A pool job: ``predictor -> (bytes, media type, JSON bytes or None)``: the detections'
    JSON (as :func:`segment_job` makes it) when ``opts["detections"]`` asks for it."""
    name, data = files["image"]
    background = files.get("background")

    def job(predictor):
        # Everything a request can get wrong is checked before the inference runs.
        image = decode_upload(data, name, max_pixels)
        bg = None
        if effect is not None and background is not None:
            bg = decode_upload(background[1], background[0], max_pixels)
            from ..effects.background import refuse_transparency

            try:  # as the CLI and the library refuse it: its hidden colours would show
                refuse_transparency(background[1], f"background picture {background[0]!r}")
            except ImageReadError as e:
                raise ApiError(422, "invalid option", f"background: {e}") from None
        if opts["format"]:
            too_wide = side_limit_error("." + opts["format"], image.shape)
            if too_wide:
                raise ApiError(422, "invalid option", f"format: {too_wide}; ask for png")
        det = select(predictor(image), opts)
        if effect is None:
            from ..visualize import annotate

            out = annotate(image, det, show_boxes=opts["boxes"])
        else:
            from ..effects import apply_effect

            try:
                out = apply_effect(image, det, effect, background=bg,
                                   feather=opts["feather"])
            except ValueError as e:
                raise ApiError(422, "invalid option", f"effect: {e}") from None
            if opts["boxes"]:
                from ..visualize import annotate

                out = annotate(out, det, show_boxes=True, show_masks=False)  # BGRA: alpha kept
        transparent = out.ndim == 3 and out.shape[2] == 4
        # Unasked, transparency comes as PNG, and so does a photo too wide for JPEG.
        fmt = opts["format"] or ("png" if transparent or side_limit_error(".jpeg", out.shape)
                                 else "jpeg")
        if fmt == "jpeg" and transparent:
            raise ApiError(422, "invalid option", "format: this effect makes a transparent "
                           "image; ask for png or webp")
        params = [cv2.IMWRITE_WEBP_QUALITY, 101] if fmt == "webp" else []
        ok, encoded = cv2.imencode("." + fmt, out, params)
        if not ok:
            raise RuntimeError(f"OpenCV could not encode {fmt}")
        return encoded.tobytes(), _MIME[fmt], _json_bytes(det, opts) if opts["detections"] else None

    return job
