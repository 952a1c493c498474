"""The README's Python examples run verbatim, in order, and do what their comments say.

They share one namespace, as a reader following the page would (the tracking example uses
the ``predictor`` and ``iter_frames`` of earlier ones), and run in a folder holding the files
they name: a synthetic R50 checkpoint as ``pointrend_resnet50.pkl``, a photo as ``image.jpg``
and two short clips as ``in.mp4`` and ``clip.mp4``. The Ray example needs a cluster: the Ray
tests run it (tests/ray_cluster/test_ray.py).
"""
from __future__ import annotations

import contextlib
import io
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from doc_blocks import python_blocks

ROOT = Path(__file__).parents[1]
PHOTO = ROOT / "tests" / "data" / "images" / "street.jpg"
BLOCKS = [(line, code) for line, code in python_blocks((ROOT / "README.md").read_text("utf-8"))
          if "pixellib.ray" not in code]


def _clip(path: Path, frames: int = 2) -> None:
    from pixellib.media.writer import VideoWriter

    photo = cv2.resize(cv2.imread(str(PHOTO)), (240, 160), interpolation=cv2.INTER_AREA)
    with VideoWriter(path, 10, (240, 160)) as writer:
        for k in range(frames):
            writer.write(np.roll(photo, 4 * k, axis=1))


@pytest.fixture(scope="module")
def page(r50_checkpoint, tmp_path_factory):
    """The examples run one after another in their folder: (folder, namespace, output)."""
    folder = tmp_path_factory.mktemp("readme")
    shutil.copy(r50_checkpoint, folder / "pointrend_resnet50.pkl")
    shutil.copy(PHOTO, folder / "image.jpg")
    _clip(folder / "in.mp4")
    _clip(folder / "clip.mp4")
    namespace: dict = {"__name__": "__readme__"}
    printed = io.StringIO()
    before = os.getcwd()
    os.chdir(folder)  # (contextlib.chdir is Python 3.11+)
    try:
        with contextlib.redirect_stdout(printed):
            for line, code in BLOCKS:
                try:
                    exec(compile(code, f"README.md:{line}", "exec"), namespace)
                except Exception as exc:  # name the block that failed
                    raise AssertionError(f"README.md line {line}: {exc!r}") from exc
    finally:
        os.chdir(before)
    return folder, namespace, printed.getvalue()


def test_the_readme_has_the_examples_these_tests_check():
    used = ["segmentImage(", "Predictor(", "VideoWriter(", "track_frames(", "apply_effect("]
    assert [next((line for line, code in BLOCKS if word in code), None) for word in used] == \
        sorted(line for line, code in BLOCKS)[: len(used)], "README examples moved or gone"


def test_quick_start_and_core_api_write_what_they_say(page):
    folder, ns, _ = page
    image, detections = ns["image"], ns["detections"]
    assert len(detections) > 0  # the synthetic model finds objects in the photo
    assert cv2.imread(str(folder / "output_image.jpg")).shape == image.shape
    annotated = cv2.imread(str(folder / "out.jpg"))
    assert annotated.shape == image.shape and np.abs(annotated.astype(int) - image).mean() > 1
    assert ns["detections"].masks.shape == (len(detections), *image.shape[:2])
    assert (ns["people"].class_ids == 0).all()
    coco = ns["coco"]
    assert len(coco["annotations"]) == len(detections)
    assert coco["images"][0]["file_name"] == "image.jpg"


def test_video_examples_copy_the_clip(page):
    from pixellib.media.video import probe_video

    folder, ns, _ = page
    assert ns["info"].frame_count == 2 and ns["info"].size == (240, 160)
    assert ns["count"] == 2
    out = probe_video(folder / "out.mp4")
    assert (out.frame_count, out.size) == (2, (240, 160))


def test_tracking_example_prints_ids_and_names_per_frame(page):
    _, _, printed = page
    lines = [line for line in printed.splitlines() if line.startswith("[")]
    assert len(lines) == 2, printed  # one line per frame: the ids' array and the names
    assert all("]" in line for line in lines)


def test_effects_and_cutouts_example(page):
    folder, ns, _ = page
    image, detections, out = ns["image"], ns["detections"], ns["out"]
    assert out.shape == image.shape and out.dtype == np.uint8
    cutouts = sorted((folder / "cutouts").glob("object_*.png"))
    assert len(cutouts) == len(detections)
    assert cv2.imread(str(cutouts[0]), cv2.IMREAD_UNCHANGED).shape[2] == 4  # RGBA
    masks = sorted((folder / "masks").glob("mask_*.png"))
    assert len(masks) == len(detections) and (folder / "masks" / "labels.png").is_file()
