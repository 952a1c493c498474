"""Reading images the way PixelLib does, and writing them atomically.

Every image leaves this module as an ``(H, W, 3)`` uint8 **BGR** C-contiguous array, the same
thing PixelLib 0.7.1 gets from ``cv2.imread(path)`` (docs/design.md, "PixelLib's results"):
alpha dropped, grey replicated to three channels, 16-bit scaled to 8-bit by keeping the high
byte, palette expanded, CMYK converted, and the EXIF orientation applied. Files are decoded
with ``np.fromfile`` + ``cv2.imdecode`` so that paths with spaces or non-ASCII characters work
on every platform.

Differences from ``cv2.imread`` (on purpose):

* A missing path raises :class:`InputNotFoundError`; an unreadable file raises
  :class:`ImageReadError` naming it. ``cv2.imread`` returns ``None`` for both.
* A **truncated JPEG** (no EOI marker after the last scan) is refused with a message that says
  "truncated". ``cv2.imread`` decodes such a file partially (the missing part grey) with only
  a libjpeg warning on stderr; ``cv2.imdecode`` returns ``None`` for it.
* Images whose header claims more than ``max_pixels`` pixels are refused **before** the pixels
  are decoded (the header is read lazily with Pillow), see :func:`resolve_max_pixels`. The
  two formats OpenCV reads and Pillow cannot open (Radiance ``.hdr``, ``.pfm``) are sized
  from their text headers, read as OpenCV reads them. A Radiance file whose size line
  cannot be read is refused (its run-length coding makes a few MB decode to gigabytes); a
  PFM (uncompressed: its data is as large as its pixels) is checked after decoding, within
  OpenCV's own limit of 2**30 pixels.
* A PNG whose chunk lengths run past the end of the file is refused as truncated: besides
  naming the problem, this keeps one corrupt length field (which can claim gigabytes) from
  reaching OpenCV 5's PNG reader, which allocates what a chunk claims (a 60-byte file found
  by fuzzing took about 2 s and 2.5 GB of peak memory in ``cv2.imdecode``).
"""
from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ..errors import (
    ImageReadError,
    ImageTooLargeError,
    InputNotFoundError,
    InvalidArgumentError,
)
from .files import (
    VIDEO_EXTENSIONS,
    extension_problem,
    link_problem,
    name_too_long,
    output_name,
    output_path_problem,
    real_path,
    unwritable_file,
    user_path,
    write_bytes,
)

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike

#: Default refusal limit: 100 megapixels, i.e. a 300 MB BGR array (10000 x 10000). Larger than
#: any camera photo, smaller than what a crafted header can ask for (a PNG claiming 30000x30000
#: would need 2.7 GB). Override per call with ``max_pixels=`` or for the process with the
#: environment variable ``PIXELLIB_MAX_PIXELS``.
DEFAULT_MAX_PIXELS = 100_000_000
MAX_PIXELS_ENV = "PIXELLIB_MAX_PIXELS"

#: Extensions :func:`list_images` picks up and :func:`write_image` can encode (any letter case).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
#: The other extensions ``cv2.imwrite`` encodes, which PixelLib's ``output_image_name`` took:
#: :func:`write_image` writes them too (where this OpenCV build has the encoder), giving each
#: format the channels it takes. They are not picked up from folders (PixelLib's
#: ``segmentBatch`` read .jpg, .png and .tif only).
OTHER_WRITE_EXTENSIONS = (".jpe", ".dib", ".ppm", ".pnm", ".pgm", ".pbm", ".pfm", ".sr",
                          ".ras", ".jp2", ".hdr", ".pic", ".avif", ".gif")
#: Formats that keep transparency; a transparent BGRA image is refused for the others.
ALPHA_WRITE_EXTENSIONS = (".png", ".webp", ".tif", ".tiff", ".bmp", ".dib", ".jp2", ".avif",
                          ".gif")
#: Formats whose OpenCV encoder takes grey images only (colour is converted) or colour only
#: (grey is replicated).
GREY_ONLY_EXTENSIONS = (".pgm", ".pbm")
COLOUR_ONLY_EXTENSIONS = (".ppm", ".gif", ".pfm", ".hdr", ".pic")
#: The largest width or height each format's encoder takes (libjpeg 65500, libwebp 16383).
MAX_SIDE = {".jpg": 65500, ".jpeg": 65500, ".jpe": 65500, ".webp": 16383}


def side_limit_error(ext: str, shape: tuple[int, ...]) -> str | None:
    """Why an image of ``shape`` cannot be encoded as ``ext`` (".jpg", ".webp"...): its width
    or height is past the format's limit; None when it fits."""
    limit = MAX_SIDE.get(ext.lower())
    h, w = shape[:2]
    if limit is None or max(h, w) <= limit:
        return None
    return f"{w}x{h} is past {ext.lstrip('.').upper()}'s limit of {limit} px a side"

# A JPEG marker inside entropy-coded data: 0xFF followed by anything but a stuffed zero, a
# restart marker RSTn (0xD0-0xD7) or another 0xFF fill byte.
_JPEG_MARKER_IN_SCAN = re.compile(rb"\xff(?=[^\x00\xd0-\xd7\xff])")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def resolve_max_pixels(max_pixels: int | None = None) -> int:
    """The pixel limit in effect: the argument, else ``$PIXELLIB_MAX_PIXELS``, else the default.

    Raises ``ValueError`` (naming the source) when the value is not a positive integer.
    """
    source = "max_pixels"
    if max_pixels is None:
        env = os.environ.get(MAX_PIXELS_ENV, "").strip()
        if not env:
            return DEFAULT_MAX_PIXELS
        source = f"environment variable {MAX_PIXELS_ENV}"
        try:
            max_pixels = int(env.replace("_", ""))
        except ValueError:
            raise InvalidArgumentError(
                f"{source} must be a positive integer, got {env!r}"
            ) from None
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)):
        raise InvalidArgumentError(f"{source} must be a positive integer, got {max_pixels!r}")
    if max_pixels <= 0:
        raise InvalidArgumentError(f"{source} must be a positive integer, got {max_pixels}")
    return int(max_pixels)


def read_image(
    source: PathLike | np.ndarray, *, max_pixels: int | None = None
) -> np.ndarray:
    """Load an image as an ``(H, W, 3)`` uint8 BGR C-contiguous array.

    ``source`` is a path (``str`` / ``os.PathLike``) or a numpy array.

    Paths are decoded exactly like ``cv2.imread(path)`` (``IMREAD_COLOR``), see the module
    docstring. Raises :class:`InputNotFoundError` for a missing path and
    :class:`ImageReadError` (naming the file) for a directory, an empty, truncated or
    undecodable file, or an image over the pixel limit (``max_pixels``; ``None`` means
    :func:`resolve_max_pixels`).

    Arrays are taken to be in OpenCV's channel order already (BGR / BGRA) and are converted
    with this policy, anything else raising :class:`ImageReadError` that says what was
    expected and what was given:

    * shape ``(H, W)`` or ``(H, W, 1)`` is grey and replicated to three channels;
      ``(H, W, 3)`` is BGR; ``(H, W, 4)`` is BGRA and the alpha channel is dropped.
      ``H`` and ``W`` must be at least 1.
    * uint8 is used as is (the same object is returned when it is already ``(H, W, 3)`` and
      C-contiguous; nothing here ever writes into it).
    * uint16 keeps the high byte (``>> 8``), which is what ``cv2.imread`` does with a 16-bit
      PNG.
    * bool becomes 0 / 255.
    * other integer types are accepted when every value lies in ``[0, 255]``.
    * floats are read on the **0..255 scale** (like ``ndarray.astype(np.uint8)`` after
      rounding): they must be finite and within ``[0, 255]``; they are rounded to the nearest
      integer. A float image in ``[0, 1]`` is therefore nearly black: multiply it by 255 first
      (a warning is logged when every value is ``<= 1``).
    * complex, object, string and other dtypes are refused.

    The pixel limit does not apply to arrays (they are already in memory).
    """
    if isinstance(source, np.ndarray):
        return _from_array(source)
    if isinstance(source, (str, os.PathLike)):
        if os.fspath(source) == "":  # Path("") is ".": "it is a directory" would mislead
            raise InputNotFoundError("image path is empty: ''")
        return _from_file(user_path(source), resolve_max_pixels(max_pixels))
    raise TypeError(
        f"image source must be a path or a numpy array, got {type(source).__name__}"
    )


def _from_file(path: Path, max_pixels: int) -> np.ndarray:
    try:
        exists = path.exists()
    except (OSError, ValueError):  # e.g. an embedded NUL byte or a name too long
        exists = False
    if not exists:
        if path.is_symlink():
            raise InputNotFoundError(f"image not found: {str(path)!r} is {link_problem(path)}")
        raise InputNotFoundError(f"image not found: {str(path)!r}")
    if path.is_dir():
        raise ImageReadError(f"cannot read image {str(path)!r}: it is a directory")
    if not path.is_file():  # a named pipe would block the read until a writer comes
        raise ImageReadError(f"cannot read image {str(path)!r}: not a regular file (a pipe, "
                             "socket or device)")
    size = _header_size(path, max_pixels)
    if size is not None and size[0] * size[1] > max_pixels:
        raise ImageTooLargeError(_too_large(path, f"{size[0]}x{size[1]}", max_pixels))
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise ImageReadError(f"cannot read image {str(path)!r}: {exc}") from exc
    return _decode(data, str(path), max_pixels)


def decode_image(
    data: bytes, name: str = "<bytes>", *, max_pixels: int | None = None
) -> np.ndarray:
    """Decode encoded image bytes (an upload, say) exactly like :func:`read_image` reads a file.

    ``name`` only labels the error messages (it is never opened). The same checks apply: the
    header size against the pixel limit before any pixel is decoded (refused with
    :class:`ImageTooLargeError`), then truncated, empty and undecodable data
    (:class:`ImageReadError`).
    """
    max_pixels = resolve_max_pixels(max_pixels)
    size = _header_size(data, max_pixels, label=name)
    if size is not None and size[0] * size[1] > max_pixels:
        raise ImageTooLargeError(_too_large(name, f"{size[0]}x{size[1]}", max_pixels))
    return _decode(np.frombuffer(data, dtype=np.uint8), name, max_pixels)


def _decode(data: np.ndarray, label: str, max_pixels: int) -> np.ndarray:
    if data.size == 0:
        raise ImageReadError(f"cannot read image {label!r}: the file is empty (0 bytes)")
    try:
        kind = _truncated_kind(memoryview(data))
    except _TooComplex as exc:
        raise ImageReadError(_too_complex(label, exc)) from None
    if kind:
        raise ImageReadError(
            f"cannot read image {label!r}: the {kind} data is truncated (it ends before "
            "the end its own structure announces); the file was probably not completely "
            "written or downloaded"
        )
    try:
        image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise ImageReadError(f"cannot decode image {label!r}: {exc}") from exc
    if image is None:
        kind = _not_an_image(memoryview(data), label)
        if kind:
            raise ImageReadError(f"cannot decode image {label!r}: {kind}")
        raise ImageReadError(
            f"cannot decode image {label!r}: not an image format OpenCV can read, or "
            "the file is corrupt or truncated"
        )
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3, image.shape
    h, w = image.shape[:2]
    if h * w > max_pixels:  # header unreadable by Pillow: checked after decoding instead
        raise ImageTooLargeError(_too_large(label, f"{w}x{h}", max_pixels))
    return np.ascontiguousarray(image)


# ISO base media brands of still pictures OpenCV cannot decode (HEIC/HEIF: iPhone photos).
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs",
                b"mif1", b"msf1"}
_VIDEO_HINT = ("a video file needs a video extension (.mp4, .mov, .mkv, .webm, .avi...): the "
               "command line and segmentBatch pick videos by it; in Python, process_video "
               "reads it")


def _not_an_image(data: memoryview, label: str) -> str | None:
    """What an undecodable file is instead, when its first bytes say so: a HEIC photo or a
    video (an MP4/MOV, Matroska/WebM or AVI container)."""
    # A video named as one was given where a picture is needed; one named like a picture
    # would be taken for a picture by the command line and segmentBatch too.
    hint = ("a picture is needed here; videos go to process_video (or the command line)"
            if os.path.splitext(label)[1].lower() in VIDEO_EXTENSIONS else _VIDEO_HINT)
    if data[4:8] == b"ftyp":
        if bytes(data[8:12]) in _HEIF_BRANDS:
            return ("it is a HEIC/HEIF picture (iPhones save photos so), which OpenCV cannot "
                    "decode: convert it to JPEG or PNG first")
        if bytes(data[8:12]) in (b"avif", b"avis"):
            return None
        return f"it is an MP4/MOV video, not an image; {hint}"
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return f"it is a Matroska/WebM video, not an image; {hint}"
    if data[:4] == b"RIFF" and data[8:12] == b"AVI ":
        return f"it is an AVI video, not an image; {hint}"
    return None


def _too_complex(label: object, exc: _TooComplex) -> str:
    return (f"cannot read image {str(label)!r}: the JPEG holds {exc}: refused, as no camera "
            "or editor writes such a file and reading it takes seconds to minutes")


def _too_large(path: Path | str, size: str, max_pixels: int) -> str:
    return (
        f"image {str(path)!r} is {size} pixels, over the limit of {max_pixels} pixels; "
        f"raise the limit with the environment variable {MAX_PIXELS_ENV} (in Python, also "
        "read_image(..., max_pixels=N))"
    )


def _header_size(
    path: Path | bytes, max_pixels: int, label: str | None = None
) -> tuple[int, int] | None:
    """``(width, height)`` from the file header without decoding pixels; ``None`` if unknown.

    Pillow's lazy ``Image.open`` only parses the header. Its own bomb guard raises
    ``DecompressionBombError`` above ``2 * Image.MAX_IMAGE_PIXELS``; when our limit is not
    above that, such an image is over our limit as well and is refused here.
    """
    pil_limit = Image.MAX_IMAGE_PIXELS
    jpeg = _odd_jpeg_size(path, label)
    if jpeg is not None:
        return jpeg[0]
    try:
        # Pillow's warnings (e.g. DecompressionBombWarning above 89 MP) pass through:
        # warnings.catch_warnings() is not thread-safe before Python 3.14.
        with Image.open(io.BytesIO(path) if isinstance(path, bytes) else path) as im:
            size = tuple(int(v) for v in im.size)  # the first frame's: counting frames seeks
            _say_if_several_frames(im, label or ("<bytes>" if isinstance(path, bytes) else path))
            return size
    except Image.DecompressionBombError as exc:
        if pil_limit is not None and max_pixels <= 2 * pil_limit:
            raise ImageTooLargeError(
                _too_large(label or path, _bomb_size(path, str(exc), pil_limit), max_pixels)
            ) from None
        return None
    except Exception as exc:  # noqa: BLE001 - advisory probe; the decoder has the last word
        logger.debug("no header size for %s from Pillow: %r", label or path, exc)
    # Pillow gives up on a PNG cut short before its first IDAT; OpenCV may still allocate
    # the size that the IHDR chunk (always first, at a fixed offset) claims.
    head = _head(path, _TEXT_HEADER_BYTES)
    if head is None:
        return None
    if (size := _png_size(head)) is not None:
        return size
    if head.startswith((b"#?RADIANCE", b"#?RGBE")):  # the signatures OpenCV decodes
        # Run-length coding packs 16 MP into ~4 MB: the size must be known before decoding.
        try:
            size = _radiance_size(_header_lines(path))
        except OSError:
            return None
        if size is None:
            raise ImageReadError(
                f"cannot decode image {str(label or path)!r}: a Radiance (.hdr) header "
                "without the size line OpenCV reads ('-Y <height> +X <width>' after the "
                "'FORMAT=32-bit_rle_rgbe' line and a blank line)")
        return size
    return _text_header_size(head)


def _odd_jpeg_size(
    path: Path | bytes, label: str | None
) -> tuple[tuple[int, int] | None] | None:
    """For a JPEG whose header Pillow would parse byte by byte (more than
    ``_JPEG_PILLOW_FILL`` fill bytes before the first scan), ``(size,)`` from our own walk
    (``size`` may be None); ``None`` for any other file, left to Pillow. Raises
    :class:`ImageReadError` for a JPEG past the segment or scan limits."""
    head = _head(path, _JPEG_HEAD_BYTES)
    if head is None or head[:2] != b"\xff\xd8":
        return None
    try:
        size, fill, ended = _jpeg_header(memoryview(head))
        if ended and len(head) == _JPEG_HEAD_BYTES:  # a header longer than that: walk it all
            whole = path if isinstance(path, bytes) else path.read_bytes()
            size, fill, ended = _jpeg_header(memoryview(whole))
    except _TooComplex as exc:
        raise ImageReadError(_too_complex(label or path, exc)) from None
    except OSError:
        return None
    return (size,) if fill > _JPEG_PILLOW_FILL else None


# The start of a JPEG read for its header; a photo's EXIF segment (64 KB at most) fits in it.
_JPEG_HEAD_BYTES = 1 << 16


def _head(path: Path | bytes, n: int) -> bytes | None:
    """The first ``n`` bytes of a file or of bytes; None when the file cannot be read."""
    if isinstance(path, bytes):
        return path[:n]
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError:
        return None


def _png_size(head: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from a PNG's IHDR chunk (always first, at a fixed offset)."""
    if len(head) >= 24 and head[:8] == _PNG_SIGNATURE and head[12:16] == b"IHDR":
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    return None


def _bomb_size(path: Path | bytes, message: str, pil_limit: int) -> str:
    """The size of an image Pillow refused as a decompression bomb: ``WxH`` from a PNG's
    header, else the pixel count Pillow's message states, else a lower bound."""
    size = _png_size(_head(path, 24) or b"")
    if size:
        return f"{size[0]}x{size[1]}"
    match = re.search(r"\((\d+) pixels\)", message)
    return match.group(1) if match else f"more than {2 * pil_limit}"


# Formats whose extra frames or pages are pictures of their own. (A camera's MPO JPEG also has
# several, but the others are previews of the first.)
_MULTI_FRAME_FORMATS = {"GIF": "frames", "PNG": "frames", "WEBP": "frames", "TIFF": "pages"}


def _say_if_several_frames(im: Image.Image, label) -> None:
    """A warning naming the file when it is an animation or a multi-page document: like
    ``cv2.imread``, only the first frame or page is read."""
    kind = _MULTI_FRAME_FORMATS.get(im.format or "")
    try:
        several = bool(kind) and getattr(im, "is_animated", False)
        count = _frames_up_to(im, FRAMES_COUNTED) if several else 1
    except Exception:  # noqa: BLE001 - a corrupt later frame: the decoder has the last word
        return
    if several:
        said = ("several" if count < 2 else f"{count} or more" if count >= FRAMES_COUNTED
                else str(count))
        logger.warning("%r holds %s %s; only the first is read (split it into images to "
                       "segment each)", str(label), said, kind)


#: Frames or pages counted for that warning, at most: Pillow's ``n_frames`` reads every page
#: directory (100,000 pages of a 10 MB TIFF took 83 s, for a warning).
FRAMES_COUNTED = 100


def _frames_up_to(im: Image.Image, cap: int) -> int:
    """The number of frames of ``im``, counted up to ``cap``; ``im`` is left at frame 0."""
    count = 1
    try:
        while count < cap:
            im.seek(count)
            count += 1
    except EOFError:
        pass
    finally:
        im.seek(0)
    return count


# Radiance .hdr and .pfm, which Pillow cannot open, state their size in a text header.
_TEXT_HEADER_BYTES = 4096
_RADIANCE_SIZE = re.compile(rb"-Y\s*([-+]?\d+)\s*\+X\s*([-+]?\d+)")


def _header_lines(source: Path | bytes):
    """The header's lines as OpenCV's Radiance reader gets them (``fgets`` into 128 bytes:
    up to 127 bytes, through the newline), from a file or bytes."""
    if isinstance(source, bytes):
        pos = 0
        while pos < len(source):
            end = source.find(b"\n", pos, pos + 127)
            end = min(pos + 127, len(source)) if end < 0 else end + 1
            yield source[pos:end]
            pos = end
        return
    with open(source, "rb") as f:
        while line := f.readline(127):
            yield line


def _radiance_size(lines) -> tuple[int, int] | None:
    """``(width, height)`` read the way OpenCV's Radiance reader reads it (``RGBE_ReadHeader``:
    lines up to ``FORMAT=32-bit_rle_rgbe``, a blank line, then ``sscanf("-Y %d +X %d")``,
    which takes any spacing and signed numbers); ``None`` where OpenCV fails too."""
    for line in lines:
        if line[:1] in (b"", b"\0", b"\n"):
            return None
        if line == b"FORMAT=32-bit_rle_rgbe\n":
            break
    else:
        return None
    if next(lines, None) != b"\n":
        return None
    match = _RADIANCE_SIZE.match(next(lines, b""))
    if match is None:
        return None
    height, width = int(match.group(1)), int(match.group(2))
    return (width, height) if width > 0 and height > 0 else None
_PFM_SIZE = re.compile(rb"P[Ff]\s+(\d+)\s+(\d+)\s")


def _text_header_size(head: bytes) -> tuple[int, int] | None:
    """``(width, height)`` a PFM header states (Radiance headers: :func:`_radiance_size`)."""
    if head.startswith((b"PF", b"Pf")):
        match = _PFM_SIZE.match(head)
        if match:
            return int(match.group(1)), int(match.group(2))
    return None


def _truncated_kind(data: memoryview) -> str | None:
    """The format's name (``"JPEG"``, ``"PNG"``, ``"GIF"``, ``"WebP"``, ``"BMP"``,
    ``"TIFF"``) when such a file ends before the data its own structure says it holds,
    else ``None``. Each check says "truncated" only where OpenCV's decoder fails too (it
    then prints its own error lines on stderr, which this check spares library users); a
    structure it does not understand is left to the decoder."""
    if data[:2] == b"\xff\xd8" and not _jpeg_is_complete(data):
        return "JPEG"
    if data[:8] == _PNG_SIGNATURE and not _png_is_complete(data):
        return "PNG"
    if data[:6] in (b"GIF87a", b"GIF89a") and not _gif_is_complete(data):
        return "GIF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) < 8 + _u32(data, 4, "<"):
        return "WebP"
    if data[:2] == b"BM" and len(data) < _bmp_needs(data):
        return "BMP"
    if data[:4] in (b"II*\x00", b"MM\x00*") and not _tiff_is_complete(data):
        return "TIFF"
    return None


def _u32(data: memoryview, pos: int, order: str) -> int:
    return int.from_bytes(data[pos: pos + 4], "little" if order == "<" else "big")


def _u16(data: memoryview, pos: int, order: str) -> int:
    return int.from_bytes(data[pos: pos + 2], "little" if order == "<" else "big")


def _gif_is_complete(data: memoryview) -> bool:
    """True when the blocks (colour tables, extensions, images and their length-prefixed
    sub-blocks) lead to the trailer byte inside the data, or the structure is not one this
    walk knows. OpenCV refuses a GIF without its trailer."""
    n = len(data)
    if n < 13:
        return False

    def table(flags: int) -> int:
        return 3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0

    def sub_blocks(pos: int) -> int:  # the position after the terminator, or n + 1
        while pos < n:
            size = data[pos]
            pos += 1 + size
            if size == 0:
                return pos
        return n + 1

    pos = 13 + table(data[10])
    while pos < n:
        kind = data[pos]
        if kind == 0x3B:  # trailer
            return True
        if kind == 0x21:  # extension: introducer, label, sub-blocks
            pos = sub_blocks(pos + 2)
        elif kind == 0x2C:  # image: descriptor, local table, LZW code size, sub-blocks
            if pos + 10 > n:
                return False
            pos = sub_blocks(pos + 11 + table(data[pos + 9]))
        else:
            return True
    return False


def _bmp_needs(data: memoryview) -> int:
    """Bytes an uncompressed BMP needs for its headers and pixel rows (0 when its header is
    not one of the common ones, or compressed: the decoder decides)."""
    if len(data) < 18:
        return 0
    offset, header = _u32(data, 10, "<"), _u32(data, 14, "<")
    if header == 12:
        if len(data) < 26:
            return 26
        width, height = _u16(data, 18, "<"), _u16(data, 20, "<")
        bits, compression = _u16(data, 24, "<"), 0
    elif header in (40, 52, 56, 108, 124):
        if len(data) < 34:
            return 34
        width = int.from_bytes(data[18:22], "little", signed=True)
        height = int.from_bytes(data[22:26], "little", signed=True)
        bits, compression = _u16(data, 28, "<"), _u32(data, 30, "<")
    else:
        return 0
    if compression not in (0, 3) or bits not in (1, 4, 8, 16, 24, 32) or width <= 0:
        return 0
    if offset < 14 + header:
        return 0
    return offset + (width * bits + 31) // 32 * 4 * abs(height)


# Bytes per value of the TIFF field types (BYTE, ASCII, SHORT, LONG, RATIONAL, SBYTE,
# UNDEFINED, SSHORT, SLONG, SRATIONAL, FLOAT, DOUBLE, IFD).
_TIFF_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8,
                    13: 4}


# Tags whose values libtiff must read to decode a page (a metadata tag it cannot read, such
# as ImageDescription or XMP, is skipped with a warning): BitsPerSample, StripOffsets,
# StripByteCounts, ColorMap, TileOffsets, TileByteCounts, ExtraSamples, SampleFormat.
_TIFF_NEEDED = {258, 273, 279, 320, 324, 325, 338, 339}


def _tiff_is_complete(data: memoryview) -> bool:
    """False when the first page's directory (its entries, the values of the tags a decoder
    needs, the next page's offset) or the strips or tiles it points to run past the end of
    the data. libtiff (in OpenCV) refuses such a page; OpenCV reads the first page only."""
    n, order = len(data), "<" if data[:2] == b"II" else ">"
    if n < 8:
        return False
    ifd = _u32(data, 4, order)
    if ifd + 2 > n:
        return False
    count = _u16(data, ifd, order)
    if ifd + 2 + 12 * count + 4 > n:
        return False
    tables = {}
    for i in range(count):
        entry = ifd + 2 + 12 * i
        tag, kind = _u16(data, entry, order), _u16(data, entry + 2, order)
        size, values = _TIFF_TYPE_SIZES.get(kind), _u32(data, entry + 4, order)
        if size is None or tag not in _TIFF_NEEDED:  # libtiff skips those it can do without
            continue
        where = entry + 8 if size * values <= 4 else _u32(data, entry + 8, order)
        if where + size * values > n:
            return False
        # read at once (a 1 MB file can hold 500,000 offsets) and once per tag: libtiff
        # ignores a repeated tag (65,535 repeats took hours as Python lists)
        if tag in (273, 279, 324, 325) and kind in (3, 4) and tag not in tables:
            tables[tag] = np.frombuffer(data, np.dtype(f"{order}u{size}"), values,
                                        where).astype(np.int64)
    for offsets, counts in ((273, 279), (324, 325)):
        if offsets in tables and counts in tables:
            if len(tables[offsets]) != len(tables[counts]):
                return True
            if (tables[offsets] + tables[counts] > n).any():
                return False
    return True


def _png_is_complete(data: memoryview) -> bool:
    """True when the chunk lengths lead from the signature to an IEND chunk inside the data."""
    pos, n = len(_PNG_SIGNATURE), len(data)
    while pos + 8 <= n:
        end = pos + 12 + int.from_bytes(data[pos : pos + 4], "big")
        if end > n:
            return False
        if data[pos + 4 : pos + 8] == b"IEND":
            return True
        pos = end
    return False


#: Scans a JPEG may hold: a progressive one has about 10. Thousands of tiny scans over a big
#: image cost the decoder ~4 ms each (a 341 KB upload held a server replica for 95 s);
#: libjpeg-turbo suggests limiting them for untrusted input, here as its TurboJPEG API does.
MAX_JPEG_SCANS = 500
#: Marker segments a JPEG may hold outside its scans' data: a photo has a few dozen (a
#: progressive one a few hundred). Millions of empty ones (4 bytes each) cost every reader a
#: step apiece: an 18.6 MB file of them took Pillow's header parse 12 s.
MAX_JPEG_SEGMENTS = 10_000
# Fill bytes before the first scan past which Pillow's header parse, which reads them one by
# one (18.6 million took it 17 s), is skipped: the size then comes from our own walk.
_JPEG_PILLOW_FILL = 1 << 16
_JPEG_FILL = re.compile(rb"\xff+")  # fill bytes, then the marker's own 0xFF
# What :func:`_jpeg_markers` yields instead of a marker byte.
_ENDS, _MALFORMED = -1, -2


class _TooComplex(Exception):
    """A JPEG past :data:`MAX_JPEG_SCANS` scans or :data:`MAX_JPEG_SEGMENTS` segments; the
    argument says which, in words."""


def _jpeg_markers(data: memoryview):
    """Walk a JPEG's markers from its SOI: yield ``(marker, pos, fill)`` per marker, ``pos``
    just after the marker byte and ``fill`` the fill bytes before it; skip each segment by its
    length and each scan's entropy-coded data up to the next real marker. Runs of fill bytes
    are skipped by a regular expression, not byte by byte. Ends after EOI, or with
    ``(_ENDS, ...)`` where the data runs out first, or ``(_MALFORMED, ...)`` where a marker
    should start and does not. Raises :class:`_TooComplex` past :data:`MAX_JPEG_SCANS` scans
    or :data:`MAX_JPEG_SEGMENTS` segments."""
    pos, n, scans, segments = 2, len(data), 0, 0
    while True:
        if pos + 1 >= n:
            yield _ENDS, pos, 0
            return
        run = _JPEG_FILL.match(data, pos)
        if run is None:
            yield _MALFORMED, pos, 0
            return
        if run.end() >= n:
            yield _ENDS, n, n - pos
            return
        fill = run.end() - pos - 1
        marker, pos = data[run.end()], run.end() + 1
        segments += 1
        if segments > MAX_JPEG_SEGMENTS:
            raise _TooComplex(f"more than {MAX_JPEG_SEGMENTS} marker segments (a photo has a "
                              "few dozen)")
        yield marker, pos, fill
        if marker == 0xD9:  # EOI
            return
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            continue
        if pos + 2 > n:
            yield _ENDS, pos, 0
            return
        pos += int.from_bytes(data[pos : pos + 2], "big")
        if marker == 0xDA:  # SOS: entropy-coded data follows the header
            scans += 1
            if scans > MAX_JPEG_SCANS:
                raise _TooComplex(f"more than {MAX_JPEG_SCANS} scans (a progressive photo has "
                                  "about 10)")
            match = _JPEG_MARKER_IN_SCAN.search(data, pos)
            if match is None:
                yield _ENDS, n, 0
                return
            pos = match.start()


def _jpeg_is_complete(data: memoryview) -> bool:
    """False only when a JPEG's marker structure runs out of bytes before the EOI marker.
    A malformed structure returns True: the decoder then decides. Raises
    :class:`_TooComplex` (see :func:`_jpeg_markers`)."""
    for marker, _, _ in _jpeg_markers(data):
        if marker == _ENDS:
            return False
        if marker in (_MALFORMED, 0xD9):
            return True
    return True


# SOFn markers: C0-CF but DHT (C4), JPG (C8) and DAC (CC).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_header(data: memoryview) -> tuple[tuple[int, int] | None, int, bool]:
    """``(size, fill, ended)`` from a JPEG's markers before its first scan: ``(width,
    height)`` of its frame header (None without one, or with a height left to a DNL
    marker), the fill bytes seen, and whether the data ran out before the first scan."""
    fill = 0
    for marker, pos, before in _jpeg_markers(data):
        fill += before
        if marker == _ENDS:
            return None, fill, True
        if marker in (_MALFORMED, 0xD9, 0xDA):
            return None, fill, False
        if marker in _JPEG_SOF:
            if pos + 7 > len(data):
                return None, fill, True
            height = int.from_bytes(data[pos + 3 : pos + 5], "big")
            width = int.from_bytes(data[pos + 5 : pos + 7], "big")
            return ((width, height) if height else None), fill, False
    return None, fill, False


def _from_array(array: np.ndarray) -> np.ndarray:
    shape = array.shape
    expected = "an (H, W), (H, W, 1), (H, W, 3) BGR or (H, W, 4) BGRA array"
    if array.ndim not in (2, 3) or (array.ndim == 3 and shape[2] not in (1, 3, 4)):
        raise ImageReadError(f"expected {expected}, got an array of shape {shape}")
    if shape[0] == 0 or shape[1] == 0:
        raise ImageReadError(f"expected {expected} with H, W >= 1, got shape {shape}")
    image = _to_uint8(array)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    if image.shape[2] == 4:
        image = image[:, :, :3]
    return np.ascontiguousarray(image)


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """Apply the dtype policy of :func:`read_image` (shape untouched)."""
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    dtype = array.dtype
    if dtype == np.uint8:
        return array
    if dtype == np.uint16:
        return (array >> 8).astype(np.uint8)
    if dtype == np.bool_:
        return array.astype(np.uint8) * np.uint8(255)
    if np.issubdtype(dtype, np.integer):
        lo, hi = int(array.min()), int(array.max())
        if lo < 0 or hi > 255:
            raise ImageReadError(
                f"expected {dtype} image values in [0, 255], got values in [{lo}, {hi}]; "
                "convert to uint8 first"
            )
        return array.astype(np.uint8)
    if np.issubdtype(dtype, np.floating):
        if not np.isfinite(array).all():
            raise ImageReadError(f"{dtype} image contains NaN or infinite values")
        lo, hi = float(array.min()), float(array.max())
        if lo < 0 or hi > 255:
            raise ImageReadError(
                f"expected {dtype} image values on the 0..255 scale, got values in "
                f"[{lo:g}, {hi:g}]"
            )
        if hi <= 1.0 and hi > 0:
            logger.warning(
                "float image has all values in [0, 1]; it is read on the 0..255 scale and "
                "will be nearly black (multiply by 255 if it was meant as [0, 1])"
            )
        return np.rint(array).astype(np.uint8)
    raise ImageReadError(
        f"expected a uint8 image (or uint16, bool, integer, float), got dtype {dtype}"
    )


def check_image_output(path: PathLike, inputs: Sequence = ()) -> None:
    """Raise the :class:`InvalidArgumentError` :func:`write_image` would raise for ``path``
    itself (an extension outside :data:`IMAGE_EXTENSIONS`, a folder there, a file where a
    folder is needed), so that callers can refuse it before doing the work; also when
    ``path`` is one of the ``inputs`` given as file paths (arrays are skipped): the user's
    photo would be replaced by its segmented copy."""
    text = output_name(path, "output image")
    folder_like = text.endswith(("/", os.sep))
    if not text.strip():
        raise InvalidArgumentError(f"cannot write an image to {text!r}: the file "
                                   "name is empty; name the image file, e.g. 'output.jpg'")
    path = user_path(path)
    ext = path.suffix.lower()
    too_long = name_too_long(path)
    if too_long:
        raise InvalidArgumentError(f"cannot write {too_long}")
    if folder_like or path.is_dir():  # an image file is needed here
        raise InvalidArgumentError(
            f"cannot write {str(path)!r}: it is a folder; name the image file, e.g. "
            f"{str(path / 'output.jpg')!r}")
    if ext not in IMAGE_EXTENSIONS and ext not in OTHER_WRITE_EXTENSIONS:
        raise InvalidArgumentError(
            f"cannot write {str(path)!r}: "
            + extension_problem(path, "image ", IMAGE_EXTENSIONS, more=(
                f" (or another that OpenCV writes: {', '.join(OTHER_WRITE_EXTENSIONS)})"))
        )
    if ext in OTHER_WRITE_EXTENSIONS and not cv2.haveImageWriter("image" + ext):
        raise InvalidArgumentError(
            f"cannot write {str(path)!r}: this OpenCV build ({cv2.__version__}) has no "
            f"{ext} encoder; use one of {', '.join(IMAGE_EXTENSIONS)}"
        )
    problem = output_path_problem(path)
    if problem:
        raise InvalidArgumentError(f"cannot write {problem}")
    unwritable = unwritable_file(path)
    if unwritable:
        raise InvalidArgumentError(f"cannot write {str(path)!r}: {unwritable[1]}")
    for source in inputs:
        if isinstance(source, (str, os.PathLike)) and real_path(path) == real_path(source):
            raise InvalidArgumentError(
                f"cannot write {str(path)!r}: it is the input image itself; choose another "
                "output name, so that the photo is not replaced by its segmented copy")


def write_image(path: PathLike, image_bgr: np.ndarray, params: Sequence[int] = ()) -> Path:
    """Encode ``image_bgr`` by the file extension and write it atomically; return the path.

    ``image_bgr`` is uint8 ``(H, W)`` grey, ``(H, W, 3)`` BGR or ``(H, W, 4)`` BGRA, as
    ``cv2.imwrite`` takes it; ``params`` are ``cv2.imwrite`` flags, e.g.
    ``(cv2.IMWRITE_JPEG_QUALITY, 90)`` (OpenCV's default JPEG quality is 95).

    A BGRA image with transparent pixels is refused for JPEG, which would drop its alpha
    (an opaque one is written as BGR). Parent folders are created; a leading ``~`` is the
    home folder. The bytes go to a hidden temporary file in the same folder
    which then replaces ``path`` (``os.replace``), so readers never see a half-written image
    and nothing is left behind on error. Raises ``ValueError`` naming the path for an
    extension outside :data:`IMAGE_EXTENSIONS` and :data:`OTHER_WRITE_EXTENSIONS` or an array
    of the wrong shape / dtype. Grey-only and colour-only formats (.pgm, .ppm...) get the
    image converted, as their OpenCV encoders refuse the other kind.
    """
    path = user_path(path)
    ext = path.suffix.lower()
    check_image_output(path)
    image = np.asarray(image_bgr)
    if (
        image.dtype != np.uint8
        or image.ndim not in (2, 3)
        or (image.ndim == 3 and image.shape[2] not in (1, 3, 4))
        or image.size == 0
    ):
        raise InvalidArgumentError(
            f"cannot write {str(path)!r}: expected a non-empty uint8 (H, W), (H, W, 3) or "
            f"(H, W, 4) array, got {image.dtype} of shape {image.shape}"
        )
    if (ext not in ALPHA_WRITE_EXTENSIONS and image.ndim == 3 and image.shape[2] == 4
            and (image[:, :, 3] != 255).any()):
        # JPEG has no alpha: OpenCV would drop it and show the cut-out on black
        fmt = "JPEG" if ext in (".jpg", ".jpeg", ".jpe") else f"the {ext} format"
        raise InvalidArgumentError(
            f"cannot write {str(path)!r}: the image is transparent in places and {fmt} has "
            "no transparency; write it as .png, .webp or .tif, or pass image[:, :, :3] to "
            "keep the colours without it")
    image = _channels_for(ext, image)
    too_wide = side_limit_error(ext, image.shape)
    if too_wide:
        raise InvalidArgumentError(
            f"cannot write {str(path)!r}: {too_wide}; write it as .png or .tif")
    if ext in (".tif", ".tiff") and image.ndim == 3 and image.shape[2] == 4 and not params:
        # OpenCV's TIFF leaves out ExtraSamples, so readers other than OpenCV and Pillow
        # cannot tell that the fourth channel is transparency: Pillow writes it (LZW, as
        # OpenCV compresses).
        buffer = io.BytesIO()
        rgba = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
        Image.fromarray(rgba, "RGBA").save(buffer, format="TIFF", compression="tiff_lzw")
        return write_bytes(path, buffer.getvalue())
    ok, encoded = cv2.imencode(ext, image, list(params))
    if not ok:
        raise InvalidArgumentError(f"cannot write {str(path)!r}: OpenCV failed to encode {ext}")
    return write_bytes(path, encoded.tobytes())


def _channels_for(ext: str, image: np.ndarray) -> np.ndarray:
    """``image`` with the channels the ``ext`` encoder takes: grey for .pgm / .pbm, colour
    for .ppm, .gif and the float formats, no (opaque) alpha for the formats without it."""
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 4 and ext not in ALPHA_WRITE_EXTENSIONS:
        image = image[:, :, :3]
    if ext in GREY_ONLY_EXTENSIONS and image.ndim == 3:
        code = cv2.COLOR_BGR2GRAY if image.shape[2] == 3 else cv2.COLOR_BGRA2GRAY
        image = cv2.cvtColor(image, code)
    elif ext in COLOUR_ONLY_EXTENSIONS and image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return np.ascontiguousarray(image)


# pixellib.media.files.temporary_name's pattern: a half-written output a killed run left.
_TEMPORARY = re.compile(r"\..+\.[0-9a-f]{12}\.tmp\.[^.]+")


def list_images(folder: PathLike) -> list[Path]:
    """Image files directly in ``folder`` (not recursive) sorted by name.

    A file counts when its extension is in :data:`IMAGE_EXTENSIONS`, in any letter case
    (a broken link, a pipe or a device with such a name too, so that a batch reports it
    instead of leaving it out silently; a folder with such a name does not, nor a hidden
    temporary file a killed run left, ``.<name>.<hex>.tmp.<ext>``). Raises
    :class:`InputNotFoundError` when the folder does not exist and :class:`ImageReadError`
    when it is not a folder.
    """
    folder = user_path(folder)
    if not folder.exists():
        raise InputNotFoundError(f"folder not found: {str(folder)!r}")
    if not folder.is_dir():
        raise ImageReadError(f"not a folder: {str(folder)!r}")
    # A broken link, a pipe or a device named like an image is listed too: reading it then
    # fails, naming it, instead of the file silently missing from the batch.
    found = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS
             and not p.is_dir() and not _TEMPORARY.fullmatch(p.name)]
    return sorted(found, key=lambda p: p.name)
