"""Background pictures for ``replace-bg``: reading them with clear errors, and fitting them.

A background is scaled to **cover** the image (the smaller scale that leaves no gap) and
centre-cropped, so it is never stretched. Accepted: any picture OpenCV decodes, as a path or
an array. A grey picture is replicated to three channels and a 16-bit one scaled to 8 bits
(both are pictures a user may reasonably hand us). A picture with an alpha channel is
accepted only when it is fully opaque: a transparent area would have no defined colour to
show, so it is refused with an error that names the file.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ..errors import ImageReadError, InputNotFoundError
from ..media.images import read_image


def load_background(background, *, what: str | None = None) -> np.ndarray:
    """``background`` (a path or an array) as an ``(H, W, 3)`` uint8 BGR array.

    Raises :class:`InputNotFoundError` for a missing file and :class:`ImageReadError` naming
    the picture when it is not an image, is empty, truncated or over the pixel limit
    (:func:`~pixellib.media.images.read_image`'s checks, EXIF orientation applied too), or
    has transparent pixels.
    """
    if isinstance(background, (str, os.PathLike)):
        path = Path(background).expanduser()
        what = what or f"background picture {str(background)!r}"
        if not path.exists():
            raise InputNotFoundError(f"{what} not found")
        if path.is_dir():
            raise ImageReadError(f"{what} is a folder, not a picture")
        # Read as photos are: the pixel limit from the header, truncation named, and the
        # EXIF orientation applied (a phone's portrait background stays upright).
        image = read_image(path)
        refuse_transparency(path, what)
        return image
    if not isinstance(background, np.ndarray):
        raise TypeError(f"{what or 'background picture'} must be a path or a numpy array, got "
                        f"{type(background).__name__}")
    return _to_bgr(background, what or "background picture")


def refuse_transparency(source: Path | bytes, what: str) -> None:
    """Raise :class:`ImageReadError` naming ``what`` when the picture (a file, or its encoded
    bytes as uploaded) has an alpha channel with transparent pixels."""
    encoded = source if isinstance(source, bytes) else None
    try:
        with Image.open(io.BytesIO(encoded) if encoded is not None else source) as im:
            alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
    except Exception:  # noqa: BLE001 - a format Pillow cannot open has no alpha OpenCV keeps
        return
    if alpha:
        data = (np.frombuffer(encoded, np.uint8) if encoded is not None
                else np.fromfile(str(source), np.uint8))
        _to_bgr(cv2.imdecode(data, cv2.IMREAD_UNCHANGED), what)


def _to_bgr(array: np.ndarray, what: str) -> np.ndarray:
    if array.dtype == np.uint16:
        array = (array >> 8).astype(np.uint8)
    if array.dtype != np.uint8:
        raise ImageReadError(f"{what}: expected 8-bit pixels, got dtype {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.size == 0:
        raise ImageReadError(f"{what}: the picture is empty (shape {array.shape})")
    if array.ndim == 2:
        array = cv2.cvtColor(array, cv2.COLOR_GRAY2BGR)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ImageReadError(f"{what}: expected an (H, W, 3) BGR picture, got shape {array.shape}")
    if array.shape[2] == 4:
        if array[:, :, 3].min() < 255:
            raise ImageReadError(
                f"{what} has transparent pixels (an alpha channel); a background must be "
                "opaque: flatten it onto a colour first"
            )
        array = array[:, :, :3]
    return np.ascontiguousarray(array)


def fit_background(background: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``background`` (BGR) scaled to cover ``size = (height, width)`` and centre-cropped.

    The aspect ratio is kept: the scale is ``max(H / h, W / w)``; the overflowing side is
    cropped equally on both ends. A picture of exactly ``size`` is returned as is. When more
    than half of the scaled picture would be cropped away (a long strip), the part that shows
    is cut out first and only it is scaled, so that a 1 x 5000 strip behind a photo costs no
    more than the photo (scaled whole it took ~0.9 GB).
    """
    height, width = size
    bh, bw = background.shape[:2]
    if (bh, bw) == (height, width):
        return background
    scale = max(height / bh, width / bw)
    new_w = max(width, int(np.ceil(bw * scale - 1e-9)))
    new_h = max(height, int(np.ceil(bh * scale - 1e-9)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    if new_w > 2 * width or new_h > 2 * height:
        shown_w = min(bw, max(1, round(width / scale)))
        shown_h = min(bh, max(1, round(height / scale)))
        left, top = (bw - shown_w) // 2, (bh - shown_h) // 2
        shown = background[top:top + shown_h, left:left + shown_w]
        return cv2.resize(shown, (width, height), interpolation=interpolation)
    resized = cv2.resize(background, (new_w, new_h), interpolation=interpolation)
    top, left = (new_h - height) // 2, (new_w - width) // 2
    return np.ascontiguousarray(resized[top:top + height, left:left + width])
