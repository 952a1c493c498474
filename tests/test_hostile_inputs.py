"""Inputs built to hurt, found by fuzzing the readers of untrusted bytes: each is refused
with the reader's own error, quickly and in bounded memory, never a traceback, a stuck server
or gigabytes asked for."""
from __future__ import annotations

import json
import os
import pickle
import resource
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from pixellib.errors import AnnotationFileError, RayJobError

ROOT = Path(__file__).parents[1]
DEEP = "[" * 100_000 + "]" * 100_000  # nested past what json's decoder follows


def _run(code: str, *, memory: int | None = None, timeout: float = 120):
    """``code`` in a fresh interpreter (killed after ``timeout`` s, address space capped at
    ``memory`` bytes): a regression here would hang or exhaust the test process itself."""
    def limit():
        if memory:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout, preexec_fn=limit,
                          env=dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1"))


def test_a_tiff_whose_strip_table_repeats_is_refused_at_once(tmp_path):
    """A 1 MB TIFF whose directory repeats StripOffsets 65,535 times, each naming 500,000
    offsets: the completeness check read every repeat into a Python list (hours of CPU),
    before any decoder; one upload held a server replica past every timeout."""
    n, count = 1 << 20, 65535
    ifd = struct.pack("<H", count) + struct.pack("<HHII", 273, 3, n // 2, 0) * count
    data = b"II*\0" + struct.pack("<I", 8) + ifd + b"\0" * 4
    path = tmp_path / "strips.tif"
    path.write_bytes(data + b"\0" * (n - len(data)))
    done = _run("from pixellib.media.images import read_image\n"
                "from pixellib.errors import ImageReadError\n"
                f"try:\n    read_image({str(path)!r})\n"
                "except ImageReadError as e:\n    print('refused:', e)\n", timeout=60)
    assert done.returncode == 0 and "refused: " in done.stdout, done.stderr


def test_a_model_file_with_a_huge_key_is_named_in_bounded_memory(tmp_path):
    """A 1 MB pickle whose only key is a tuple of 9,000 references to 1 MB of bytes: the
    message quoting the key built its full repr first (36 GB), a MemoryError traceback."""
    path = tmp_path / "bomb.pkl"
    big = b"\0" * (1 << 20)
    with open(path, "wb") as f:
        pickle.dump({(big,) * 9000: 1}, f, protocol=4)
    done = _run("import sys\nfrom pixellib.cli.main import main\n"
                f"sys.exit(main(['info', {str(path)!r}]))", memory=4 << 30)
    assert done.returncode == 1, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "bomb.pkl" in line and "no weights found" in line and len(line) < 1000, line
    # an integer past 4,300 digits has no text form at all (ValueError from repr)
    from pixellib.checkpoint.files import read_checkpoint
    from pixellib.errors import ModelFileError

    huge = 1 << 20000  # pickled by the LONG4 opcode, never converted to text
    with open(path, "wb") as f:
        pickle.dump({huge: 1}, f, protocol=4)
    with pytest.raises(ModelFileError, match="an integer of 20001 bits"):
        read_checkpoint(path)


def _coco(tmp_path, **annotation):
    data = {"images": [{"id": 1, "file_name": "a.jpg", "height": 10, "width": 10}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1],
                             "area": 1, "iscrowd": 0,
                             "segmentation": [[0, 0, 1, 0, 1, 1]], **annotation}],
            "categories": [{"id": 1, "name": "person"}]}
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return path


def test_annotation_files_with_huge_numbers_or_deep_nesting_are_named(tmp_path):
    """2**64 in a bbox made np.isfinite raise a TypeError; ``[[[[...`` a RecursionError."""
    from pixellib.evaluate import load_annotations

    assert load_annotations(_coco(tmp_path))["annotations"]  # the file itself is fine
    for field, value in (("bbox", [2**64, 0, 1, 1]), ("area", 2**64),
                         ("segmentation", [[0, 0, 2**64, 0, 1, 1]])):
        with pytest.raises(AnnotationFileError, match=f"ann.json.*'{field}'"):
            load_annotations(_coco(tmp_path, **{field: value}))
    (tmp_path / "deep.json").write_text(DEEP)
    with pytest.raises(AnnotationFileError, match="deep.json: .*nested too deep"):
        load_annotations(tmp_path / "deep.json")


def test_a_batch_record_line_nested_too_deep_is_skipped():
    """One such line in ``.pixellib-done.jsonl`` made every later run in that folder end in
    a RecursionError traceback after its first output."""
    from pixellib.cli.record import _entries_of

    good = json.dumps({"output": "out/a.jpg", "source": "a.jpg"})
    entries, lines = _entries_of(f"{DEEP}\n{good}\n".encode())
    assert list(entries) == ["out/a.jpg"] and lines == 2


def test_ray_result_shards_and_settings_nested_too_deep_or_too_large_are_named(tmp_path):
    from pixellib.ray.job import read_shard
    from pixellib.ray.settings import SETTINGS_FILE, check_same

    for name, text in (("part-deep.jsonl", DEEP),
                       ("part-huge.jsonl", json.dumps({"path": "a.jpg", "height": 10**30}))):
        (tmp_path / name).write_text(text + "\n")
        with pytest.raises(RayJobError, match=f"{name}: not a readable result shard"):
            read_shard(tmp_path / name)
    (tmp_path / SETTINGS_FILE).write_text(DEEP)
    with pytest.raises(RayJobError, match="not a settings record pixellib can read"):
        check_same(tmp_path, {})


def test_a_multipart_boundary_too_long_for_the_parser_is_a_400():
    """A boundary over 256 bytes: the parser refused it as it was made, outside the
    handler, and the server answered 500 "internal error"."""
    from pixellib.serve.uploads import ApiError, split_body

    for length in (256, 300, 5000):
        with pytest.raises(ApiError) as info:
            split_body(f"multipart/form-data; boundary={'b' * length}", b"x")
        assert info.value.status == 400 and info.value.error == "malformed multipart"



def test_a_jpeg_of_thousands_of_scans_is_refused_and_a_progressive_photo_read(tmp_path):
    """Each of thousands of tiny scans over a big image cost libjpeg ~4 ms: a 341 KB upload
    held a server replica for 95 s, past its --timeout. A progressive photo has ~10 scans."""
    import io

    from PIL import Image

    from pixellib.errors import ImageReadError
    from pixellib.media.images import MAX_JPEG_SCANS, decode_image

    buffer = io.BytesIO()
    Image.new("L", (64, 48), 128).save(buffer, "JPEG", progressive=True)
    data = buffer.getvalue()
    assert decode_image(data, "progressive.jpg").shape == (48, 64, 3)
    second = data.index(b"\xff\xda", data.index(b"\xff\xda") + 2)
    header = data[second:second + 2 + int.from_bytes(data[second + 2:second + 4], "big")]
    for scans, refused in ((MAX_JPEG_SCANS - 10, False), (MAX_JPEG_SCANS + 100, True)):
        bomb = data[:-2] + header * scans + b"\xff\xd9"
        if refused:
            with pytest.raises(ImageReadError, match=f"bomb.jpg.*more than {MAX_JPEG_SCANS} "
                                                     "scans"):
                decode_image(bomb, "bomb.jpg")
        else:
            assert decode_image(bomb, "many.jpg").shape == (48, 64, 3)


def test_a_jpeg_padded_with_fill_bytes_or_empty_segments_is_read_or_refused_at_once(
        tmp_path, monkeypatch):
    """Pillow's header parse, used for the size check, reads fill bytes and marker segments
    one by one in Python: 18.6 MB of either took it 12-17 s per upload, while OpenCV decodes
    such a file in milliseconds. Fill bytes are now walked over by our own header walk, the
    size still checked before decoding; past MAX_JPEG_SEGMENTS segments the file is refused."""
    import cv2
    import numpy as np
    from PIL import Image

    from pixellib.errors import ImageReadError, ImageTooLargeError
    from pixellib.media.images import MAX_JPEG_SEGMENTS, decode_image, read_image

    ok, encoded = cv2.imencode(".jpg", np.full((48, 64, 3), 90, np.uint8))
    plain = encoded.tobytes()
    expected = decode_image(plain, "plain.jpg")

    def no_pillow(*args, **kwargs):
        raise AssertionError("Pillow parsed a padded JPEG's header")

    monkeypatch.setattr(Image, "open", no_pillow)
    # 3 MB of fill bytes: past the first 64 KB read for the header, so the whole file is walked
    padded = plain[:2] + b"\xff" * 3_000_000 + plain[2:]
    (tmp_path / "padded.jpg").write_bytes(padded)
    assert np.array_equal(read_image(tmp_path / "padded.jpg"), expected)
    assert np.array_equal(decode_image(padded, "padded.jpg"), expected)
    # the size is still checked before anything is decoded
    sof = plain.index(b"\xff\xc0")
    huge = bytearray(padded)
    at = 3_000_000 + sof + 5
    huge[at:at + 4] = struct.pack(">HH", 40000, 40000)
    monkeypatch.setattr(cv2, "imdecode", no_pillow)
    with pytest.raises(ImageTooLargeError, match="huge.jpg.* 40000x40000 pixels"):
        decode_image(bytes(huge), "huge.jpg")
    monkeypatch.undo()

    empty = b"\xff\xef\x00\x02"  # an APP15 segment holding nothing
    fine = plain[:2] + empty * (MAX_JPEG_SEGMENTS - 100) + plain[2:]
    assert np.array_equal(decode_image(fine, "fine.jpg"), expected)
    bomb = plain[:2] + empty * (MAX_JPEG_SEGMENTS + 1) + plain[2:]
    (tmp_path / "bomb.jpg").write_bytes(bomb)
    for read in (lambda: decode_image(bomb, "bomb.jpg"),
                 lambda: read_image(tmp_path / "bomb.jpg")):
        with pytest.raises(ImageReadError, match=f"bomb.jpg.*more than {MAX_JPEG_SEGMENTS} "
                                                 "marker segments"):
            read()


def test_a_tiff_of_many_pages_is_warned_about_without_reading_them_all(tmp_path, caplog):
    """Pillow's n_frames, read for the warning's page count, read every page directory:
    100,000 pages of a 10 MB TIFF took 83 s. The count stops at 100."""
    from pixellib.media.images import FRAMES_COUNTED, decode_image

    out = bytearray(b"II*\0" + struct.pack("<I", 8))
    pages = 1000
    for k in range(pages):  # 1x1 grey pages, chained
        base = len(out)
        data_at = base + 2 + 12 * 8 + 4
        tags = [(256, 3, 1, 1), (257, 3, 1, 1), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
                (273, 4, 1, data_at), (278, 3, 1, 1), (279, 4, 1, 1)]
        out += struct.pack("<H", 8) + b"".join(struct.pack("<HHII", *t) for t in tags)
        out += struct.pack("<I", data_at + 4 if k < pages - 1 else 0) + b"\x80\0\0\0"
    with caplog.at_level("WARNING", logger="pixellib"):
        assert decode_image(bytes(out), "pages.tif").shape == (1, 1, 3)
    (said,) = [r.getMessage() for r in caplog.records]
    assert f"'pages.tif' holds {FRAMES_COUNTED} or more pages; only the first" in said
