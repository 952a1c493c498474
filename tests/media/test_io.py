"""pixellib.media.images: parity with cv2.imread, bad-input tables, the array policy, fuzzing."""
from __future__ import annotations

import io as _io
import os
import struct
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from pixellib.errors import ImageReadError, ImageTooLargeError, InputNotFoundError, PixellibError
from pixellib.media import images as pio
from pixellib.media.images import (
    ALPHA_WRITE_EXTENSIONS,
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    OTHER_WRITE_EXTENSIONS,
    decode_image,
    list_images,
    read_image,
    resolve_max_pixels,
    write_image,
)

RNG = np.random.default_rng(0)
# Smooth content so JPEG/WebP artefacts are small and parity is about orientation/colour.
BASE = cv2.GaussianBlur(RNG.integers(0, 256, (40, 60, 3), np.uint8), (7, 7), 2)


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[274] = orientation
    return exif.tobytes()


def _chunk(kind: bytes, payload: bytes) -> bytes:
    body = kind + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))


def _png_header(width: int, height: int, complete: bool = True) -> bytes:
    """A PNG (valid CRCs) claiming the given size with a few bytes of pixel data.

    ``complete=False`` stops after IHDR: Pillow cannot open that, OpenCV still reads the size.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    head = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
    if not complete:
        return head
    return head + _chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _chunk(b"IEND", b"")


def _jpeg_bytes(array: np.ndarray, **kwargs) -> bytes:
    buf = _io.BytesIO()
    Image.fromarray(array).save(buf, "JPEG", **kwargs)
    return buf.getvalue()


def _jpeg_claiming(width: int, height: int) -> bytes:
    """A real small JPEG whose SOF0 segment is patched to claim another size."""
    data = bytearray(_jpeg_bytes(BASE))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


# name -> writer(path); every one must decode exactly like cv2.imread.
PARITY_CASES = {
    **{
        f"exif{o}.jpg": (lambda p, o=o: Image.fromarray(BASE).save(p, exif=_exif(o)))
        for o in range(1, 9)
    },
    "exif6.png": lambda p: Image.fromarray(BASE).save(p, exif=_exif(6)),
    "exif8.webp": lambda p: Image.fromarray(BASE).save(p, exif=_exif(8), lossless=True),
    "rgb16.png": lambda p: cv2.imwrite(str(p), BASE.astype(np.uint16) * 257 + 3),
    "grey16.png": lambda p: Image.fromarray(BASE[:, :, 0].astype(np.uint16) * 200).save(p),
    "grey.png": lambda p: Image.fromarray(BASE[:, :, 0]).save(p),
    "grey.jpg": lambda p: Image.fromarray(BASE[:, :, 0]).save(p),
    "rgba.png": lambda p: Image.fromarray(np.dstack([BASE, BASE[:, :, :1]])).save(p),
    "la.png": lambda p: Image.fromarray(BASE).convert("LA").save(p),
    "palette.png": lambda p: Image.fromarray(BASE).convert("P").save(p),
    "onebit.png": lambda p: Image.fromarray(BASE[:, :, 0] > 128).save(p),
    "cmyk.jpg": lambda p: Image.fromarray(BASE).convert("CMYK").save(p),
    "progressive.jpg": lambda p: Image.fromarray(BASE).save(p, progressive=True),
    "plain.bmp": lambda p: Image.fromarray(BASE).save(p),
    "plain.tif": lambda p: Image.fromarray(BASE).save(p),
    "rgba.tif": lambda p: Image.fromarray(np.dstack([BASE, BASE[:, :, :1]])).save(p),
    "plain.webp": lambda p: Image.fromarray(BASE).save(p),
    "anim.gif": lambda p: Image.fromarray(BASE).save(p),
    "radiance.hdr": lambda p: cv2.imwrite(str(p), BASE.astype(np.float32) / 255),
    "portable.ppm": lambda p: cv2.imwrite(str(p), BASE),
    "one_pixel.png": lambda p: Image.fromarray(BASE[:1, :1]).save(p),
    "with space.jpg": lambda p: Image.fromarray(BASE).save(p),
    "ünïcødé 图像.png": lambda p: Image.fromarray(BASE).save(p),
}


@pytest.mark.parametrize("name", list(PARITY_CASES))
def test_file_decodes_like_cv2_imread(tmp_path, name):
    path = tmp_path / name
    PARITY_CASES[name](path)
    got = read_image(path)
    assert got.dtype == np.uint8 and got.ndim == 3 and got.shape[2] == 3
    assert got.flags["C_CONTIGUOUS"]
    expected = cv2.imread(str(path))
    assert expected is not None
    np.testing.assert_array_equal(got, expected)
    assert read_image(str(path)).tobytes() == got.tobytes()  # str and Path agree


def test_exif_rotation_is_applied(tmp_path):
    path = tmp_path / "rotated.jpg"
    Image.fromarray(BASE).save(path, exif=_exif(6))  # 6: rotate 90 degrees clockwise
    assert read_image(path).shape == (60, 40, 3)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


BAD_FILES = {
    "empty.jpg": (lambda p: _write(p, b""), "empty"),
    "truncated.jpg": (lambda p: _write(p, _jpeg_bytes(BASE)[:-300]), "JPEG data is truncated"),
    "no_eoi.jpg": (lambda p: _write(p, _jpeg_bytes(BASE)[:-2]), "truncated"),
    "truncated_progressive.jpg": (
        lambda p: _write(p, _jpeg_bytes(BASE, progressive=True)[:600]), "truncated"),
    "truncated.png": (lambda p: _write(p, cv2.imencode(".png", BASE)[1].tobytes()[:500]),
                      "PNG data is truncated"),
    "png_no_iend.png": (lambda p: _write(p, cv2.imencode(".png", BASE)[1].tobytes()[:-12]),
                        "truncated"),
    "random.png": (lambda p: _write(p, RNG.integers(0, 256, 5000, np.uint8).tobytes()),
                   "cannot decode"),
    "text.jpg": (lambda p: _write(p, b"this is not an image\n" * 20), "cannot decode"),
    "huge.png": (lambda p: _write(p, _png_header(30000, 30000)),
                 "30000x30000 pixels, over the limit"),  # not Pillow's "more than 178956970"
    "huge_ihdr_only.png": (lambda p: _write(p, _png_header(30000, 30000, False)),
                           "30000x30000"),
    "huge_below_pillow_limit.png": (lambda p: _write(p, _png_header(12000, 10000)),
                                    "12000x10000"),
    "huge.jpg": (lambda p: _write(p, _jpeg_claiming(30000, 30000)),
                 "is 900000000 pixels, over the limit"),
    "bad_chunk_length.png": (  # a flipped bit in a length: OpenCV alone allocates 2.5 GB
        lambda p: _write(p, (lambda d: d[:33] + b"\x98" + d[34:])(_png_header(64, 64))),
        "truncated"),
    "a_directory.jpg": (lambda p: p.mkdir(), "directory"),
    # What a file is instead, from its first bytes (a video named .jpg, an iPhone photo)
    "video.jpg": (lambda p: _write(p, b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"
                                   + bytes(200)), "it is an MP4/MOV video, not an image; a "
                                                  "video file needs a video extension"),
    # ... and one named as a video, given where a picture is needed (a background picture)
    "clip.mp4": (lambda p: _write(p, b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"
                                  + bytes(200)), "video, not an image; a picture is needed "
                                                 "here; videos go to process_video"),
    "clip.png": (lambda p: _write(p, b"\x1a\x45\xdf\xa3" + bytes(200)), "Matroska/WebM video"),
    "photo.jpg": (lambda p: _write(p, b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic"
                                   + bytes(200)), "HEIC/HEIF picture"),
    "truncated.gif": (lambda p: _write(p, _pil_bytes("GIF")[:-1]), "GIF data is truncated"),
    "truncated.webp": (lambda p: _write(p, _pil_bytes("WEBP")[:-40]), "WebP data is truncated"),
    "truncated.bmp": (lambda p: _write(p, _pil_bytes("BMP")[:-1]), "BMP data is truncated"),
    "truncated.tif": (lambda p: _write(p, _pil_bytes("TIFF")[:-1]), "TIFF data is truncated"),
}


def _pil_bytes(fmt: str, image: Image.Image | None = None, **kwargs) -> bytes:
    out = _io.BytesIO()
    (image or Image.fromarray(BASE)).save(out, fmt, **kwargs)
    return out.getvalue()


def _animated_gif() -> bytes:
    frames = [Image.fromarray(np.roll(BASE, 7 * i, axis=1)) for i in range(3)]
    out = _io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:])
    return out.getvalue()


# Whole files in the formats checked for truncation beyond JPEG and PNG, from both encoders.
TRUNCATION_FORMATS = {
    "gif": lambda: _pil_bytes("GIF"),
    "animated_gif": _animated_gif,
    "webp": lambda: _pil_bytes("WEBP"),
    "webp_opencv": lambda: cv2.imencode(".webp", BASE)[1].tobytes(),
    "bmp": lambda: _pil_bytes("BMP"),
    "bmp_1bit": lambda: _pil_bytes("BMP", Image.fromarray(BASE[:, :, 0] > 100)),
    "bmp_opencv_bgra": lambda: cv2.imencode(".bmp", np.dstack([BASE, BASE[:, :, :1]]))[1]
    .tobytes(),
    "tif_lzw": lambda: _pil_bytes("TIFF", compression="tiff_lzw"),
    "tif_deflate": lambda: _pil_bytes("TIFF", compression="tiff_adobe_deflate"),
    "tif_opencv": lambda: cv2.imencode(".tiff", BASE)[1].tobytes(),
}


@pytest.mark.parametrize("name", list(TRUNCATION_FORMATS))
def test_truncation_is_said_only_where_opencv_cannot_decode(name):
    """Every cut of a whole file that is called truncated is one OpenCV's decoder refuses
    too, so that no decodable image is refused; and the whole file, and the file with bytes
    appended, are not called truncated."""
    data = TRUNCATION_FORMATS[name]()
    assert pio._truncated_kind(memoryview(data)) is None
    assert pio._truncated_kind(memoryview(data + b"\x00" * 16)) is None
    called = 0
    for cut in sorted({*range(1, len(data), 23), len(data) - 1, len(data) - 2}):
        if pio._truncated_kind(memoryview(data[:cut])):
            called += 1
            assert cv2.imdecode(np.frombuffer(data[:cut], np.uint8), cv2.IMREAD_COLOR) is None, cut
    assert pio._truncated_kind(memoryview(data[:-1]))  # a lost last byte is noticed
    assert called > len(data) // 23 * 0.9


def test_a_tiff_whose_metadata_points_past_its_end_still_decodes(tmp_path):
    """libtiff skips a tag it can do without (here the description, its text cut off): such
    a file decodes in OpenCV and must not be called truncated."""
    data = bytearray(_pil_bytes("TIFF", tiffinfo={270: "a description longer than four"}))
    ifd = int.from_bytes(data[4:8], "little")
    for k in range(int.from_bytes(data[ifd:ifd + 2], "little")):
        entry = ifd + 2 + 12 * k
        if int.from_bytes(data[entry:entry + 2], "little") == 270:
            data[entry + 8:entry + 12] = (len(data) + 1000).to_bytes(4, "little")
    path = _write(tmp_path / "described.tif", bytes(data))
    expected = cv2.imread(str(path))
    assert expected is not None
    np.testing.assert_array_equal(read_image(path), expected)


@pytest.mark.parametrize("name", ["truncated.gif", "truncated.tif", "truncated.bmp"])
def test_truncated_file_is_refused_without_opencv_noise(tmp_path, capfd, name):
    path = tmp_path / name
    BAD_FILES[name][0](path)
    with pytest.raises(ImageReadError, match="truncated"):
        read_image(path)
    assert capfd.readouterr().err == ""


_NO_BOMB_WARNING = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")


@_NO_BOMB_WARNING
@pytest.mark.parametrize("name", list(BAD_FILES))
def test_bad_files_raise_image_read_error_naming_the_file(tmp_path, name):
    make, phrase = BAD_FILES[name]
    path = tmp_path / name
    make(path)
    start = time.perf_counter()
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    assert time.perf_counter() - start < 1.0  # refused from the header, nothing allocated
    assert str(path) in str(info.value)
    assert phrase in str(info.value)


@pytest.mark.parametrize("name, header", [
    ("claims.hdr", b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 2000 +X 3000\n"),
    ("claims.pfm", b"PF\n3000 2000\n-1.0\n"),
    # Any spacing and signed numbers, as OpenCV's sscanf("-Y %d +X %d") takes them; a
    # header longer than the first 4 KB.
    ("wide_spaces.hdr", b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y  2000  +X  3000\n"),
    ("no_spaces.hdr", b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y2000+X3000\n"),
    ("tabs_signs.hdr", b"#?RGBE\nFORMAT=32-bit_rle_rgbe\n\n-Y\t+2000\t+X +3000\n"),
    ("long_header.hdr", b"#?RADIANCE\n" + b"# a comment line of some length\n" * 400
     + b"FORMAT=32-bit_rle_rgbe\n\n-Y 2000 +X 3000\n"),
])
def test_radiance_and_pfm_sizes_come_from_their_headers(tmp_path, name, header):
    """Pillow cannot open these; their text header still states the size, so an image past
    the limit is refused before OpenCV decodes (and allocates) anything."""
    path = _write(tmp_path / name, header + bytes(64))
    with pytest.raises(ImageTooLargeError, match="3000x2000"):
        read_image(path, max_pixels=1_000_000)
    with pytest.raises(ImageTooLargeError, match="3000x2000"):
        decode_image(path.read_bytes(), max_pixels=1_000_000)


def _radiance(width: int, height: int, size_line: bytes) -> bytes:
    """A run-length coded Radiance picture: each row a run of 128s per channel."""
    row = bytearray([2, 2, width >> 8, width & 255])
    for _ in range(4):
        left = width
        while left:
            run = min(127, left)
            row += bytes([128 + run, 128])
            left -= run
    return b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n" + size_line + b"\n" + bytes(row) * height


@pytest.mark.parametrize("size_line", [b"-Y 30 +X 40", b"-Y  30  +X  40", b"-Y30+X40",
                                       b"-Y +30 +X +40", b"-Y\t30\t+X\t40"])
def test_radiance_size_is_read_as_opencv_reads_it(tmp_path, size_line):
    """The header's size agrees with what OpenCV decodes, for every spelling it takes; a
    run-length coded one over the limit (16 MP in ~1 MB) is refused before decoding."""
    path = _write(tmp_path / "small.hdr", _radiance(40, 30, size_line))
    np.testing.assert_array_equal(read_image(path), cv2.imread(str(path)))
    assert read_image(path).shape == (30, 40, 3)
    big = _radiance(4000, 4000, size_line.replace(b"30", b"4000").replace(b"40", b"4000"))
    start = time.perf_counter()
    with pytest.raises(ImageTooLargeError, match="4000x4000"):
        decode_image(big, "big.hdr", max_pixels=1_000_000)
    assert time.perf_counter() - start < 0.5  # OpenCV alone takes ~1 s and 250 MB


@pytest.mark.parametrize("header", [
    b"#?RADIANCE\nEXPOSURE=1\n-Y 2000 +X 3000\n",                  # no FORMAT line
    b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n-Y 2000 +X 3000\n",      # no blank line
    b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\nY 2000 X 3000\n",     # no size line
    b"#?RGBE\r\nFORMAT=32-bit_rle_rgbe\r\n\r\n-Y 2000 +X 3000\r\n",  # CRLF lines
    b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n+X 3000 -Y 2000\n",   # an orientation it lacks
])
def test_radiance_header_without_a_size_opencv_reads_is_refused(tmp_path, header):
    data = header + bytes(64)
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is None
    with pytest.raises(ImageReadError, match="Radiance") as info:
        read_image(_write(tmp_path / "odd.hdr", data))
    assert "odd.hdr" in str(info.value)


def test_write_image_names_the_side_limit_of_jpeg_and_webp(tmp_path):
    wide = np.zeros((2, 16384, 3), np.uint8)
    with pytest.raises(ValueError, match="WEBP's limit of 16383 px") as info:
        write_image(tmp_path / "wide.webp", wide)
    assert "wide.webp" in str(info.value) and ".png" in str(info.value)
    assert write_image(tmp_path / "wide.jpg", wide).stat().st_size > 0  # JPEG takes 65500
    with pytest.raises(ValueError, match="JPG's limit of 65500 px"):
        write_image(tmp_path / "wider.jpg", np.zeros((65501, 1), np.uint8))
    assert list(tmp_path.iterdir()) == [tmp_path / "wide.jpg"]  # nothing half-written


@pytest.mark.parametrize("empty", [""])
def test_an_empty_path_is_named_empty(empty):
    """read_image("") said "cannot read image '.': it is a directory"."""
    with pytest.raises(InputNotFoundError, match="image path is empty"):
        read_image(empty)


def test_missing_file_raises_input_not_found(tmp_path):
    path = tmp_path / "nope ü.jpg"
    with pytest.raises(InputNotFoundError, match="nope ü.jpg"):
        read_image(path)
    with pytest.raises(FileNotFoundError):  # the builtin a user would catch
        read_image(str(path))


def test_jpeg_with_data_after_eoi_is_fine(tmp_path):
    path = _write(tmp_path / "trailer.jpg", _jpeg_bytes(BASE) + b"camera trailer \xff\xd8\x00")
    np.testing.assert_array_equal(read_image(path), cv2.imread(str(path)))


def test_pixel_limit_argument_and_environment(tmp_path, monkeypatch):
    path = tmp_path / "small.png"
    Image.fromarray(BASE).save(path)  # 60x40 = 2400 pixels
    assert read_image(path, max_pixels=2400).shape == (40, 60, 3)
    with pytest.raises(ImageReadError, match="60x40"):
        read_image(path, max_pixels=2399)
    monkeypatch.setenv("PIXELLIB_MAX_PIXELS", "1000")
    assert resolve_max_pixels() == 1000
    with pytest.raises(ImageReadError, match="PIXELLIB_MAX_PIXELS"):
        read_image(path)
    assert read_image(path, max_pixels=5000).shape == (40, 60, 3)  # argument wins
    monkeypatch.setenv("PIXELLIB_MAX_PIXELS", "lots")
    with pytest.raises(ValueError, match="PIXELLIB_MAX_PIXELS"):
        read_image(path)
    monkeypatch.delenv("PIXELLIB_MAX_PIXELS")
    assert resolve_max_pixels() == DEFAULT_MAX_PIXELS == 100_000_000
    for bad in (0, -5, 1.5, True):
        with pytest.raises(ValueError):
            resolve_max_pixels(bad)


def test_limit_above_pillows_bomb_guard_falls_back_to_decoding(tmp_path, monkeypatch):
    path = tmp_path / "small.png"
    Image.fromarray(BASE).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow refuses > 200 pixels
    assert read_image(path).shape == (40, 60, 3)  # our limit is higher: decoded, checked after
    with pytest.raises(ImageReadError, match="60x40 pixels"):  # its size, not Pillow's bound
        read_image(path, max_pixels=150)


@pytest.mark.parametrize("ext, kind", [(".gif", "frames"), (".webp", "frames"), (".png", "frames"),
                                       (".tif", "pages")])
def test_animations_and_page_stacks_say_only_the_first_is_read(tmp_path, caplog, ext, kind):
    """An animated GIF or a scanned multi-page TIFF gave page 1's objects without a word."""
    first, second = Image.fromarray(BASE), Image.fromarray(255 - BASE)
    path = tmp_path / f"several{ext}"
    first.save(path, save_all=True, append_images=[second, Image.fromarray(BASE // 2)])
    with caplog.at_level("WARNING", logger="pixellib"):
        image = read_image(path)
        decode_image(path.read_bytes(), "upload")
    expected = cv2.cvtColor(np.asarray(first.convert("RGB")), cv2.COLOR_RGB2BGR)
    assert np.abs(image.astype(int) - expected).mean() < 8  # the first frame
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2 and f"'{path}' holds 3 {kind}" in said[0], said
    assert "'upload' holds 3" in said[1] and "only the first is read" in said[1]
    caplog.clear()
    single = tmp_path / f"single{ext}"
    first.save(single)
    with caplog.at_level("WARNING", logger="pixellib"):
        read_image(single)
    assert not caplog.records


def test_a_broken_later_page_leaves_the_size_check_before_decoding(tmp_path, monkeypatch):
    """Counting a TIFF's pages left Pillow on a later page when one was corrupt: its size,
    not the first page's, went to the pixel limit, and a huge first page was decoded."""
    pages = [Image.fromarray(np.zeros(shape, np.uint8)) for shape in
             ((400, 600, 3), (10, 20, 3), (10, 20, 3))]
    buf = _io.BytesIO()
    pages[0].save(buf, format="TIFF", save_all=True, append_images=pages[1:])
    data = bytearray(buf.getvalue())

    def after(ifd):  # where an IFD's "next IFD" offset is
        return ifd + 2 + 12 * struct.unpack("<H", data[ifd:ifd + 2])[0]

    second = struct.unpack("<I", data[after(struct.unpack("<I", data[4:8])[0]):][:4])[0]
    data[after(second):after(second) + 4] = struct.pack("<I", len(data) - 3)  # cut 3rd IFD
    decoded = []
    monkeypatch.setattr(pio.cv2, "imdecode", lambda *a: decoded.append(a))
    for blob in (bytes(data), buf.getvalue()):
        with pytest.raises(ImageTooLargeError, match="600x400"):
            decode_image(blob, "scan.tif", max_pixels=1000)
    assert decoded == []  # refused from the header, both times


def test_non_image_source_type():
    with pytest.raises(TypeError, match="list"):
        read_image([[1, 2, 3]])


# ---------------------------------------------------------------- arrays

def test_uint8_bgr_array_is_returned_as_is():
    image = np.ascontiguousarray(BASE)
    assert read_image(image) is image


def test_array_conversions():
    grey = BASE[:, :, 0]
    np.testing.assert_array_equal(read_image(grey), np.dstack([grey] * 3))
    np.testing.assert_array_equal(read_image(grey[:, :, None]), np.dstack([grey] * 3))
    np.testing.assert_array_equal(read_image(np.dstack([BASE, grey])), BASE)
    flipped = read_image(BASE[:, ::-1])
    assert flipped.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(flipped, BASE[:, ::-1])
    np.testing.assert_array_equal(read_image(np.ones((2, 2), bool)), np.full((2, 2, 3), 255))
    np.testing.assert_array_equal(read_image(BASE.astype(np.float32) + 0.4), BASE)
    np.testing.assert_array_equal(read_image(BASE.astype(np.int64)), BASE)
    np.testing.assert_array_equal(read_image(BASE.astype(">u2") * 256), BASE)


def test_uint16_array_matches_cv2_16bit_png(tmp_path):
    deep = RNG.integers(0, 65536, (20, 30, 3)).astype(np.uint16)
    path = tmp_path / "deep.png"
    cv2.imwrite(str(path), deep)
    np.testing.assert_array_equal(read_image(deep), cv2.imread(str(path)))


BAD_ARRAYS = {
    "empty": (np.zeros((0, 5, 3), np.uint8), "H, W >= 1"),
    "one_dim": (np.zeros(5, np.uint8), "shape (5,)"),
    "four_dim": (np.zeros((1, 2, 2, 3), np.uint8), "shape (1, 2, 2, 3)"),
    "two_channels": (np.zeros((2, 2, 2), np.uint8), "shape (2, 2, 2)"),
    "nan": (np.full((2, 2, 3), np.nan, np.float32), "NaN"),
    "inf": (np.full((2, 2), np.inf), "NaN or infinite"),
    "float_over": (np.full((2, 2, 3), 300.0), "0..255"),
    "negative_int": (np.full((2, 2, 3), -1, np.int32), "[-1, -1]"),
    "complex": (np.zeros((2, 2, 3), complex), "complex"),
    "object": (np.zeros((2, 2, 3), object), "object"),
}


@pytest.mark.parametrize("name", list(BAD_ARRAYS))
def test_bad_arrays(name):
    array, phrase = BAD_ARRAYS[name]
    with pytest.raises(ImageReadError) as info:
        read_image(array)
    assert phrase in str(info.value)


def test_float_in_unit_range_warns(caplog):
    read_image(np.full((2, 2, 3), 0.5, np.float32))
    assert "0..255" in caplog.text


# ---------------------------------------------------------------- fuzzing

_SEEDS = [
    cv2.imencode(ext, BASE[:16, :16])[1].tobytes() for ext in (".png", ".jpg", ".bmp", ".webp")
] + [_jpeg_bytes(BASE[:16, :16], progressive=True), _png_header(64, 64)]


@st.composite
def _file_bytes(draw):
    kind = draw(st.sampled_from(["random", "mutated", "cut"]))
    if kind == "random":
        return draw(st.binary(max_size=2048))
    data = bytearray(draw(st.sampled_from(_SEEDS)))
    if kind == "cut":
        return bytes(data[: draw(st.integers(0, len(data)))])
    for _ in range(draw(st.integers(1, 8))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@_NO_BOMB_WARNING
@settings(max_examples=200, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(data=_file_bytes())
def test_fuzz_file_bytes(fuzz_dir, data):
    path = fuzz_dir / "fuzz.img"
    path.write_bytes(data)
    try:
        image = read_image(path, max_pixels=1_000_000)
    except PixellibError as exc:
        assert str(path) in str(exc)
        reasons = ("data is truncated", "empty", "over the limit", "cannot decode")
        event(f"refused: {next((r for r in reasons if r in str(exc)), 'other')}")
        return
    event("decoded")
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.flags["C_CONTIGUOUS"] and image.shape[0] * image.shape[1] <= 1_000_000


_DTYPES = [np.uint8, np.uint16, np.int32, np.float32, np.float64, np.bool_]


@st.composite
def _arrays(draw):
    dtype = np.dtype(draw(st.sampled_from(_DTYPES)))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5))
    if np.issubdtype(dtype, np.floating):
        elements = st.floats(-10, 300, width=dtype.itemsize * 8) | st.sampled_from(
            [np.nan, np.inf, -np.inf, 0.0, 255.0])
    elif dtype == np.int32:
        elements = st.integers(-5, 300)
    else:
        elements = None
    return draw(hnp.arrays(dtype, shape, elements=elements))


@settings(max_examples=200, deadline=1000)
@given(array=_arrays())
def test_fuzz_arrays(array):
    before = array.copy()
    try:
        image = read_image(array)
    except PixellibError:
        event("refused")
        return
    finally:
        np.testing.assert_array_equal(array, before)  # never modified
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.shape[:2] == array.shape[:2] and image.flags["C_CONTIGUOUS"]
    event("accepted")


# ---------------------------------------------------------------- writing, listing

@pytest.mark.parametrize("ext", IMAGE_EXTENSIONS + (".PNG",))
def test_write_image_round_trip(tmp_path, ext):
    path = tmp_path / "new dir" / "sub" / f"out{ext}"
    assert write_image(path, BASE) == path
    got = read_image(path)
    assert got.shape == BASE.shape
    if ext.lower() in (".png", ".bmp", ".tif", ".tiff"):
        np.testing.assert_array_equal(got, BASE)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp left behind


LOSSLESS_OTHER = (".dib", ".ppm", ".pnm", ".pfm", ".sr", ".ras")


@pytest.mark.parametrize("ext", OTHER_WRITE_EXTENSIONS)
def test_write_image_other_opencv_formats(tmp_path, ext):
    """The other extensions cv2.imwrite encodes (PixelLib's output_image_name took them) are
    written with the channels each encoder takes: colour, grey and opaque BGRA all go."""
    grey = BASE[:, :, 0].copy()
    opaque = np.dstack([BASE, np.full(BASE.shape[:2], 255, np.uint8)])
    for name, image in (("colour", BASE), ("grey", grey), ("opaque", opaque)):
        path = tmp_path / f"{name}{ext}"
        assert write_image(path, image) == path
        got = read_image(path)
        assert got.shape == BASE.shape, (ext, name)
        want = np.dstack([grey] * 3) if name == "grey" else BASE
        if ext == ".pgm" and name != "grey":  # a grey-only format: converted as OpenCV does
            want = np.dstack([cv2.cvtColor(BASE, cv2.COLOR_BGR2GRAY)] * 3)
        if ext in LOSSLESS_OTHER or (ext == ".pgm"):
            np.testing.assert_array_equal(got, want)
        elif ext in (".hdr", ".pic"):  # float RGBE: within one step
            assert np.abs(got.astype(int) - want).max() <= 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{n}{ext}" for n in ("colour", "grey", "opaque"))


@pytest.mark.parametrize("ext", [e for e in OTHER_WRITE_EXTENSIONS
                                 if e not in ALPHA_WRITE_EXTENSIONS] + [".jpg"])
def test_write_image_refuses_transparency_where_the_format_has_none(tmp_path, ext):
    cut = np.dstack([BASE, np.zeros(BASE.shape[:2], np.uint8)])
    with pytest.raises(ValueError, match="no transparency"):
        write_image(tmp_path / f"cut{ext}", cut)
    assert list(tmp_path.iterdir()) == []


def test_write_image_replaces_and_respects_umask(tmp_path):
    path = tmp_path / "a.png"
    write_image(path, BASE)
    write_image(path, BASE[:, :, 0])
    assert read_image(path).shape == (40, 60, 3)
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_replaced_output_keeps_its_permissions_and_owner_and_a_link_is_replaced(tmp_path):
    """Writing over an output made a private (0600) file readable by all (0644) and gave a
    file of another owner to the writer. A link at the output name is replaced, what it led
    to left alone: written through, a link in a batch folder to the input photo replaced
    the photo, and one to a device node replaced the node."""
    private = tmp_path / "private.png"
    write_image(private, BASE)
    private.chmod(0o600)
    write_image(private, BASE[:, :, 0])
    assert private.stat().st_mode & 0o777 == 0o600
    assert read_image(private)[0, 0, 0] == read_image(private)[0, 0, 1]  # the new content
    if os.geteuid() == 0:  # only root may give a file away: an owner kept
        other = tmp_path / "other.png"
        write_image(other, BASE)
        os.chown(other, 65534, 65534)
        write_image(other, BASE[:, :, 0])
        assert (other.stat().st_uid, other.stat().st_gid) == (65534, 65534)
    (tmp_path / "photos").mkdir()
    photo = tmp_path / "photos" / "a.png"
    write_image(photo, BASE)
    before = photo.read_bytes()
    link, dangling = tmp_path / "link.png", tmp_path / "dangling.png"
    link.symlink_to(photo)
    dangling.symlink_to(tmp_path / "photos" / "new.png")
    for name in (link, dangling):
        write_image(name, BASE[:, :, 1])
        assert not name.is_symlink()
        np.testing.assert_array_equal(read_image(name)[:, :, 0], BASE[:, :, 1])
    assert photo.read_bytes() == before
    assert [p.name for p in (tmp_path / "photos").iterdir()] == ["a.png"]


def test_a_read_only_output_is_refused_and_one_in_a_locked_folder_written_in_place(
        tmp_path):
    """A read-only (0444) output was silently replaced; a writable output in a folder that
    may not be written was never written (the temporary file could not be made there),
    though cv2.imwrite writes it. Run without root's powers, for permissions to apply."""
    import sys

    locked = tmp_path / "locked"
    locked.mkdir()
    write_image(locked / "out.png", BASE)
    write_image(tmp_path / "ro.png", BASE)
    (tmp_path / "ro.png").chmod(0o444)
    inode = (locked / "out.png").stat().st_ino
    write_image(tmp_path / "photo.png", BASE)
    os.link(tmp_path / "photo.png", locked / "photo.png")  # the input, under a second name
    locked.chmod(0o555)
    script = ("import os, sys, cv2, numpy as np\n"
              "from pixellib.media.files import atomic_path\n"
              "from pixellib.media.images import write_image\n"
              "try:\n"
              "    write_image(sys.argv[1], np.zeros((5, 7, 3), np.uint8))\n"
              "except ValueError as e:\n"
              "    print('refused:', e)\n"
              "with atomic_path(sys.argv[2]) as tmp:\n"
              "    print('staged in', oct(os.stat(tmp.parent).st_mode & 0o777))\n"
              "    cv2.imwrite(str(tmp), np.full((5, 7, 3), 9, np.uint8))\n"
              "print('left', os.path.exists(tmp.parent))\n"
              "try:\n"
              "    write_image(sys.argv[3], np.zeros((5, 7, 3), np.uint8))\n"
              "except OSError as e:\n"
              "    print('hard link:', e)\n")
    argv = [sys.executable, "-c", script, str(tmp_path / "ro.png"), str(locked / "out.png"),
            str(locked / "photo.png")]
    from faults import run_locked_out

    done = run_locked_out(argv, locked)
    assert done.returncode == 0, done.stderr
    assert "refused: " in done.stdout and "ro.png': the file is read-only" in done.stdout
    assert "staged in 0o700" in done.stdout and "left False" in done.stdout  # a private folder
    assert read_image(tmp_path / "ro.png").shape == BASE.shape  # untouched
    assert read_image(locked / "out.png").shape == (5, 7, 3)  # written, into the same file
    assert (locked / "out.png").stat().st_ino == inode
    assert sorted(p.name for p in locked.iterdir()) == ["out.png", "photo.png"]
    assert "hard link: " in done.stdout and "other names (hard links)" in done.stdout
    assert read_image(tmp_path / "photo.png").shape == BASE.shape  # the input untouched


def test_an_output_that_is_a_device_or_a_pipe_is_refused_not_replaced(tmp_path):
    """``--coco /dev/stdout`` (as root, in a container) replaced /dev/stdout by a plain
    file for every later process, printed nothing and exited 0."""
    from pixellib.media.files import write_bytes
    from pixellib.media.images import check_image_output

    fifo = tmp_path / "fifo.jpg"
    os.mkfifo(fifo)
    to_null = tmp_path / "null.json"
    to_null.symlink_to(os.devnull)
    with pytest.raises(ValueError, match=r"fifo\.jpg': it is not a regular file \(a device, "
                                         r"a pipe or a socket\)"):
        check_image_output(fifo)
    with pytest.raises(OSError, match=r"null\.json': it is not a regular file"):
        write_bytes(to_null, b"{}")
    assert to_null.is_symlink() and os.readlink(to_null) == os.devnull
    # a link to the standard output, redirected to a file (a regular one): replaced, it
    # was /dev/stdout itself that became a plain file
    stdout = tmp_path / "stdout"
    stdout.symlink_to("/proc/self/fd/1")
    with pytest.raises(OSError, match=r"stdout': it is a link to '/proc/self/fd/1' \(a "
                                      r"standard stream or a device\)"):
        write_bytes(stdout, b"{}")
    assert stdout.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo.jpg", "null.json", "stdout"]


@pytest.mark.parametrize("code", ["EBUSY", "EPERM"])
def test_an_output_that_cannot_be_renamed_over_is_copied_into(tmp_path, monkeypatch, code):
    """A file bind-mounted into a container (docker -v out.jpg:/out.jpg) cannot be renamed
    over (EBUSY), nor another user's writable file in a sticky folder like /tmp (EPERM):
    the model ran, and then nothing was written."""
    import errno

    path = tmp_path / "mounted.png"
    write_image(path, BASE)
    inode = path.stat().st_ino

    def busy(src, dst):
        raise OSError(getattr(errno, code), os.strerror(getattr(errno, code)), str(dst))

    monkeypatch.setattr(os, "replace", busy)
    write_image(path, BASE[:, :, 2])
    np.testing.assert_array_equal(read_image(path)[:, :, 0], BASE[:, :, 2])
    assert path.stat().st_ino == inode and [p.name for p in tmp_path.iterdir()] == [path.name]


@pytest.mark.parametrize(
    "name, image",
    [("x.tga", BASE), ("x.heic", BASE), ("noext", BASE), ("x.png", BASE.astype(np.float32)),
     ("x.png", np.zeros((0, 3, 3), np.uint8)), ("x.png", np.zeros((2, 2, 2), np.uint8))],
)
def test_write_image_errors_leave_nothing(tmp_path, name, image):
    with pytest.raises(ValueError, match=name):
        write_image(tmp_path / name, image)
    assert list(tmp_path.iterdir()) == []


def test_an_image_output_that_is_a_folder_says_so(tmp_path):
    """It said "unknown image extension ''" for an existing folder or a name ending in /."""
    from pixellib.media.images import check_image_output

    (tmp_path / "out").mkdir()
    for name in (str(tmp_path / "out"), str(tmp_path / "out") + "/",
                 str(tmp_path / "new") + "/", str(tmp_path / "shots.png") + "/"):
        with pytest.raises(ValueError, match="it is a folder; name the image file") as info:
            check_image_output(name)
        assert "unknown image extension" not in str(info.value)
    check_image_output(tmp_path / "out" / "a.png")  # fine


def test_a_bytes_output_name_says_what_a_name_must_be(tmp_path):
    """``output_image_name=b"out.jpg"`` failed with "a bytes-like object is required, not
    'str'", which names neither the output nor what to give."""
    from pixellib.media.images import check_image_output
    from pixellib.media.writer import check_video_output

    with pytest.raises(TypeError, match=r"output image name must be a path \(str or "
                                        r"os\.PathLike\), got bytes b'out\.jpg'"):
        check_image_output(b"out.jpg")
    with pytest.raises(TypeError, match=r"output video name must be a path .*got int 3"):
        check_video_output(3)
    assert list(tmp_path.iterdir()) == []


def test_an_output_name_that_is_only_an_extension_or_empty_says_so(tmp_path):
    """``output_image_name='.jpg'`` said "unknown image extension ''", and an empty video
    name "cannot write video '.'": neither said what was wrong with the name given."""
    from pixellib.media.images import check_image_output
    from pixellib.media.writer import check_video_output

    with pytest.raises(ValueError, match=r"'\.jpg' is a file name with no extension.*"
                                         r"'output\.jpg'"):
        check_image_output(tmp_path / ".jpg")
    with pytest.raises(ValueError, match=r"'\.mp4' is a file name with no extension.*"
                                         r"'output\.mp4'"):
        check_video_output(tmp_path / ".mp4")
    with pytest.raises(ValueError, match=r"'\.jpg' is a file name with no extension.*"
                                         r"'output\.mp4'"):  # a video's example
        check_video_output(tmp_path / ".jpg")
    with pytest.raises(ValueError, match=r"unknown image extension '\.xyz'; use one of "
                                         r"\.jpg.*\(or another that OpenCV writes: "):
        check_image_output(tmp_path / "a.xyz")
    with pytest.raises(ValueError, match=r"video to '': the file name is empty"):
        check_video_output("")
    with pytest.raises(ValueError, match=r"unknown extension '\.xyz'; use one of \.mp4"):
        check_video_output(tmp_path / "a.xyz")
    assert list(tmp_path.iterdir()) == []


def test_a_pipe_named_like_an_image_is_refused_not_waited_on(tmp_path):
    """Reading a named pipe blocked until some writer came: the CLI hung on it."""
    os.mkfifo(tmp_path / "pipe.jpg")
    with pytest.raises(ImageReadError, match="pipe.jpg.*not a regular file"):
        read_image(tmp_path / "pipe.jpg")


def test_write_image_failure_during_write_cleans_up(tmp_path, monkeypatch):
    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(pio.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_image(tmp_path / "a.jpg", BASE)
    assert list(tmp_path.iterdir()) == []


def test_list_images(tmp_path):
    for name in ["b.JPG", "a.png", "c.Tiff", "d.txt", "e.webp", "notes.jpg.bak"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "folder.jpg").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["a.png", "b.JPG", "c.Tiff", "e.webp"]
    with pytest.raises(InputNotFoundError):
        list_images(tmp_path / "missing")
    with pytest.raises(ImageReadError, match="not a folder"):
        list_images(tmp_path / "a.png")


def test_a_pipe_or_device_named_like_an_image_is_listed_and_then_named(tmp_path):
    """A batch left them out silently ("0 failed"); named on the command line they were
    reported. Listed, reading them says what they are."""
    os.mkfifo(tmp_path / "pipe.jpg")
    (tmp_path / "zero.png").symlink_to("/dev/zero")
    (tmp_path / "real.png").write_bytes(b"x")
    assert [p.name for p in list_images(tmp_path)] == ["pipe.jpg", "real.png", "zero.png"]
    for name in ("pipe.jpg", "zero.png"):
        with pytest.raises(ImageReadError, match="not a regular file"):
            read_image(tmp_path / name)


def test_transparent_images_are_not_written_as_jpeg(tmp_path):
    from pixellib.errors import InvalidArgumentError

    cutout = np.zeros((4, 5, 4), np.uint8)
    cutout[1:3, 1:3] = (10, 20, 30, 255)  # the object; the rest is transparent
    for name in ("cut.jpg", "cut.JPEG"):
        with pytest.raises(InvalidArgumentError, match="JPEG has no transparency"):
            write_image(tmp_path / name, cutout)
    assert list(tmp_path.iterdir()) == []
    opaque = cutout.copy()
    opaque[:, :, 3] = 255
    write_image(tmp_path / "opaque.jpg", opaque)  # nothing is lost: written as BGR
    assert cv2.imread(str(tmp_path / "opaque.jpg")).shape == (4, 5, 3)
    write_image(tmp_path / "cut.png", cutout)
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "cut.png"), cv2.IMREAD_UNCHANGED),
                                  cutout)


def test_transparent_tiff_says_its_fourth_channel_is_alpha(tmp_path):
    """TIFF readers other than OpenCV and Pillow need ExtraSamples to know that the fourth
    channel is transparency (unassociated alpha, 2); OpenCV's encoder leaves it out."""
    cutout = np.zeros((4, 5, 4), np.uint8)
    cutout[1:3, 1:3] = (10, 20, 30, 255)
    for name in ("cut.tif", "cut.tiff"):
        write_image(tmp_path / name, cutout)
        with Image.open(tmp_path / name) as im:
            assert im.mode == "RGBA" and tuple(im.tag_v2.get(338, ())) == (2,)
            assert im.tag_v2.get(259) == 5  # LZW, as OpenCV writes it
            assert im.getpixel((1, 1)) == (30, 20, 10, 255) and im.getpixel((0, 0))[3] == 0
        np.testing.assert_array_equal(
            cv2.imread(str(tmp_path / name), cv2.IMREAD_UNCHANGED), cutout)
