"""pixellib.torchbackend.instance: PixelLib's instanceSegmentation on the synthetic R50 model.

Most tests share one instance in rapid mode with a threshold that leaves about a dozen
umbrellas and a cat on car_rgba.png (scores 0.806 .. 0.481; the next ones are 0.47 and 0.467),
so each forward costs a few seconds on two cores.
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from pixellib.classes import COCO_CLASSES
from pixellib.errors import (
    ImageReadError,
    InputNotFoundError,
    InvalidArgumentError,
    ModelNotFoundError,
)
from pixellib.media.images import read_image
from pixellib.predictor import Predictor
from pixellib.torchbackend.instance import SkippedImageWarning, instanceSegmentation

ROOT = Path(__file__).resolve().parents[2]
IMAGES = Path(__file__).parents[1] / "data" / "images"
CAR = IMAGES / "car_rgba.png"
SPEED, CONFIDENCE = "rapid", 0.475
KEYS = ["boxes", "class_ids", "class_names", "object_counts", "scores", "masks",
        "extracted_objects"]


@pytest.fixture(scope="module")
def ins(r50_model):
    ins = instanceSegmentation()
    ins.load_model(r50_model, detection_speed=SPEED, confidence=CONFIDENCE, device="cpu")
    return ins


@pytest.fixture(scope="module")
def base(ins):
    """(results, output) for car_rgba.png with boxes drawn: the reference for other tests."""
    return ins.segmentImage(str(CAR), show_bboxes=True)


def _select(results: dict, keep: np.ndarray) -> dict:
    """The entries of a results dict where ``keep`` is True, in order."""
    idx = np.flatnonzero(keep)
    return {
        "boxes": results["boxes"][idx],
        "class_ids": results["class_ids"][idx],
        "class_names": [results["class_names"][i] for i in idx],
        "scores": results["scores"][idx],
        "masks": results["masks"][:, :, idx],
    }


def _assert_same_results(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for key in a:
        if key == "extracted_objects":
            assert len(a[key]) == len(b[key])
            for x, y in zip(a[key], b[key]):
                np.testing.assert_array_equal(x, y)
        elif isinstance(a[key], np.ndarray):
            assert a[key].dtype == b[key].dtype
            np.testing.assert_array_equal(a[key], b[key])
        else:
            assert a[key] == b[key]


def _rasterise(polygons: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Mask from outlines traced on boundary pixel centres: filled outer contours XOR filled
    hole contours, plus the outline pixels themselves (they belong to the mask)."""
    filled = np.zeros(shape, bool)
    outline = np.zeros(shape, np.uint8)
    for poly in polygons:
        canvas = np.zeros(shape, np.uint8)
        cv2.fillPoly(canvas, [poly.astype(np.int32).reshape(-1, 1, 2)], 1)
        filled ^= canvas.astype(bool)
        cv2.polylines(outline, [poly.astype(np.int32).reshape(-1, 1, 2)], True, 1)
    return filled | outline.astype(bool)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return np.logical_and(a, b).sum() / max(np.logical_or(a, b).sum(), 1)


# --------------------------------------------------------------------------- package


def test_import_pixellib_is_light():
    code = ("import sys, pixellib; assert 'torch' not in sys.modules; "
            "assert pixellib.__version__ == '0.8.0'; "
            "assert pixellib.Predictor.__name__ == 'Predictor'; "
            "assert pixellib.instanceSegmentation.__name__ == 'instanceSegmentation'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


# --------------------------------------------------------------------------- results dict


def test_results_dict_types_shapes_and_consistency(base):
    results, output = base
    h, w = 540, 960
    assert list(results) == KEYS
    n = len(results["class_names"])
    assert n >= 10 and {"umbrella", "cat"} <= set(results["class_names"])

    boxes = results["boxes"]
    assert isinstance(boxes, np.ndarray) and boxes.dtype == np.int64 and boxes.shape == (n, 4)
    assert (boxes[:, 0] <= boxes[:, 2]).all() and (boxes[:, 1] <= boxes[:, 3]).all()
    assert boxes.min() >= 0 and (boxes[:, [0, 2]] <= w).all() and (boxes[:, [1, 3]] <= h).all()

    ids = results["class_ids"]
    assert isinstance(ids, np.ndarray) and ids.dtype == np.int64 and ids.shape == (n,)
    assert isinstance(results["class_names"], list)
    assert results["class_names"] == [COCO_CLASSES[i] for i in ids]
    assert type(results["object_counts"]) is Counter
    assert results["object_counts"] == Counter(results["class_names"])

    scores = results["scores"]
    assert isinstance(scores, np.ndarray) and scores.dtype == np.float32 and scores.shape == (n,)
    assert (scores == np.trunc(scores)).all() and scores.min() >= 47 and scores.max() <= 100
    assert (np.diff(scores) <= 0).all()  # descending score order

    masks = results["masks"]
    assert isinstance(masks, np.ndarray) and masks.dtype == np.bool_
    assert masks.shape == (h, w, n)
    for k in range(n):  # a mask lies inside its (truncated) box
        ys, xs = np.nonzero(masks[:, :, k])
        assert ys.size > 0
        x1, y1, x2, y2 = boxes[k]
        assert xs.min() >= x1 and xs.max() <= x2 and ys.min() >= y1 and ys.max() <= y2
    assert results["extracted_objects"] == []
    assert output.shape == (h, w, 3) and output.dtype == np.uint8


def test_frame_matches_core_input_untouched_output_deterministic(ins, base, r50_model, tmp_path):
    frame = cv2.imread(str(CAR), cv2.IMREAD_COLOR)
    before = frame.copy()
    out_path = tmp_path / "out dir" / "annotated.png"
    results, output = ins.segmentFrame(frame, show_bboxes=True, output_image_name=out_path)

    np.testing.assert_array_equal(frame, before)
    assert output is not frame and not np.shares_memory(output, frame)
    _assert_same_results(results, base[0])
    np.testing.assert_array_equal(output, base[1])  # same image, same picture
    np.testing.assert_array_equal(cv2.imread(str(out_path)), output)

    det = Predictor(r50_model, speed=SPEED, confidence=CONFIDENCE)(frame)
    np.testing.assert_array_equal(results["boxes"], det.boxes.astype(np.int64))
    np.testing.assert_array_equal(results["boxes"], np.floor(det.boxes))
    np.testing.assert_array_equal(results["class_ids"], det.class_ids)
    np.testing.assert_array_equal(results["scores"],
                                  np.trunc(det.scores * np.float32(100)).astype(np.float32))
    np.testing.assert_array_equal(results["masks"], np.moveaxis(det.masks, 0, -1))


def test_empty_results(r50_model, ins, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    strict = instanceSegmentation()
    strict.load_model(r50_model, detection_speed=SPEED, confidence=0.9)
    gray = IMAGES / "small_gray.png"
    image = read_image(gray)
    results, output = strict.segmentImage(gray, show_bboxes=True, extract_segmented_objects=True,
                                          save_extracted_objects=True)
    assert list(results) == KEYS
    assert results["boxes"].shape == (0, 4) and results["boxes"].dtype == np.int64
    assert results["class_ids"].shape == (0,) and results["class_ids"].dtype == np.int64
    assert results["class_names"] == [] and results["object_counts"] == Counter()
    assert results["scores"].shape == (0,) and results["scores"].dtype == np.float32
    assert results["masks"].shape == (237, 321, 0) and results["masks"].dtype == np.bool_
    assert results["extracted_objects"] == []
    np.testing.assert_array_equal(output, image)  # nothing drawn
    assert list(tmp_path.iterdir()) == []  # nothing to save

    results, _ = strict.segmentImage(gray, mask_points_values=True)
    assert results["masks"] == []

    # filtered down to nothing: the same types and shapes
    results, _ = ins.segmentImage(CAR, ins.select_target_classes(toothbrush=True))
    assert results["masks"].shape == (540, 960, 0) and results["boxes"].shape == (0, 4)
    assert results["scores"].dtype == np.float32 and results["class_names"] == []


def test_filter_and_mask_extraction(ins, base, tmp_path):
    targets = ins.select_target_classes(cat=True)
    folder = tmp_path / "extracts"
    results, _ = ins.segmentImage(str(CAR), segment_target_classes=targets,
                                  extract_segmented_objects=True, save_extracted_objects=True,
                                  extracted_objects_folder=folder)
    keep = np.array([n == "cat" for n in base[0]["class_names"]])
    expected = _select(base[0], keep)
    n = int(keep.sum())
    assert n >= 1
    for key, value in expected.items():
        np.testing.assert_array_equal(results[key], value)
    assert results["object_counts"] == Counter({"cat": n})

    image = read_image(CAR)
    crops = results["extracted_objects"]
    assert len(crops) == n
    for k, crop in enumerate(crops):  # PixelLib's crop: the rows and columns with mask pixels
        mask = expected["masks"][:, :, k]
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        np.testing.assert_array_equal(
            crop, np.where(mask[..., None], image, 0)[np.ix_(rows, cols)])
    names = sorted(p.name for p in folder.iterdir())
    assert names == [f"segmented_object_{k}.jpg" for k in range(1, n + 1)]  # no empty mask
    for k, crop in enumerate(crops, start=1):
        assert cv2.imread(str(folder / f"segmented_object_{k}.jpg")).shape == crop.shape


def test_box_extraction_into_cwd_with_polygons(ins, base, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    targets = ins.select_target_classes(umbrella=True)
    results, _ = ins.segmentImage(CAR, segment_target_classes=targets,
                                  extract_segmented_objects=True, extract_from_box=True,
                                  save_extracted_objects=True, mask_points_values=True)
    keep = np.array([n == "umbrella" for n in base[0]["class_names"]])
    expected = _select(base[0], keep)
    n = int(keep.sum())
    assert n >= 5 and results["class_names"] == ["umbrella"] * n
    np.testing.assert_array_equal(results["boxes"], expected["boxes"])

    image = read_image(CAR)
    crops = results["extracted_objects"]
    assert len(crops) == n
    for crop, (x1, y1, x2, y2) in zip(crops, expected["boxes"]):
        np.testing.assert_array_equal(crop, image[y1:y2, x1:x2])
    names = sorted((p.name for p in tmp_path.iterdir()), key=lambda s: int(s[15:-4]))
    assert names == [f"object_extract_{k}.jpg" for k in range(1, n + 1) if crops[k - 1].size]
    assert len(names) >= n - 1

    # An (N,) object array, as PixelLib's np.asarray(..., dtype=object) gives (a list was
    # returned before: `.shape` failed on it), of lists of int outlines OpenCV can draw.
    polygons = results["masks"]
    assert isinstance(polygons, np.ndarray) and polygons.dtype == object
    assert polygons.shape == (n,)
    for k, parts in enumerate(polygons):
        assert isinstance(parts, list) and parts
        for points in parts:
            assert points.ndim == 2 and points.shape[1] == 2
            assert np.issubdtype(points.dtype, np.integer)
        mask = expected["masks"][:, :, k]
        assert _iou(_rasterise(parts, mask.shape), mask) >= 0.9


def test_outlines_of_equal_length_stay_drawable():
    """np.asarray(outlines, dtype=object) stacks single outlines of one length into an
    (N, 1, K, 2) array of Python ints, which cv2.fillPoly refuses ("Can't parse 'pts'")."""
    from pixellib.torchbackend.instance.results import points_array

    square = np.array([[1, 1], [8, 1], [8, 8], [1, 8]], np.int64)
    cells = points_array([[square], [square + 10]])
    assert cells.shape == (2,) and cells.dtype == object
    canvas = np.zeros((20, 20), np.uint8)
    for parts in cells:
        cv2.fillPoly(canvas, parts, 1)
    assert canvas.sum() == 2 * 64
    assert points_array([]) == []


def test_select_target_classes(ins):
    flags = ins.select_target_classes(person=True, traffic_light=True, car=False)
    assert list(flags) == list(COCO_CLASSES)
    assert {k for k, v in flags.items() if v == "valid"} == {"person", "traffic light"}
    assert set(flags.values()) == {"valid", "invalid"}
    # PixelLib's 80 parameters can be given by position, in COCO order.
    assert ins.select_target_classes(True, False, True) == ins.select_target_classes(
        person=True, car=True)
    assert ins.select_target_classes(*[False] * 78, True)["hair dryer"] == "valid"
    with pytest.raises(TypeError, match="multiple values for 'person'"):
        ins.select_target_classes(True, person=False)
    with pytest.raises(TypeError, match="80 class flags"):
        ins.select_target_classes(*[False] * 81)
    with pytest.raises(TypeError, match=r"True or False by position .*car=True"):
        ins.select_target_classes("car")  # not person
    # By name as by position: PixelLib's `flag == True` took 1, and "no" or 2 as not selected
    # (a flag read from a config file as text selected the class here).
    assert ins.select_target_classes(person=1, car=0) == ins.select_target_classes(person=True)
    assert ins.select_target_classes(person=1.0, car=None) == ins.select_target_classes(
        person=True)
    for odd in ("no", "False", 2, 0.5, [0]):
        with pytest.raises(TypeError, match=r"select_target_classes\(person=...\) takes True"):
            ins.select_target_classes(person=odd)


def test_pixellib_attributes_and_filter_objects(ins, base):
    """ins.class_names[class_id] and ins.filter_objects(...) raised AttributeError."""
    assert instanceSegmentation().class_names == list(COCO_CLASSES)
    results = base[0]
    targets = ins.select_target_classes(umbrella=True)
    kept = ins.filter_objects(results, targets)
    filtered, _ = ins.segmentImage(str(CAR), segment_target_classes=targets)
    assert set(kept) == set(filtered)
    for key in ("boxes", "class_ids", "scores", "masks"):
        np.testing.assert_array_equal(kept[key], filtered[key])
        assert kept[key].dtype == filtered[key].dtype
    assert kept["class_names"] == filtered["class_names"] and len(kept["class_names"]) >= 5
    assert kept["object_counts"] == filtered["object_counts"]
    assert len(results["class_names"]) > len(kept["class_names"])  # the input is untouched
    none = ins.filter_objects(results, ins.select_target_classes(person=True))
    assert none["masks"].shape == (*results["masks"].shape[:2], 0) and none["class_names"] == []
    points, _ = ins.segmentImage(str(CAR), mask_points_values=True)
    kept_points = ins.filter_objects(points, ["umbrella"])["masks"]
    assert len(kept_points) == len(kept["class_names"]) and kept_points.dtype == object


def test_style_arguments_go_unchecked_when_no_box_is_drawn(ins, base):
    """PixelLib took box_thickness=None (and any value) when show_bboxes was off; here it
    was int(None): a bare TypeError."""
    _, plain = ins.segmentImage(str(CAR))
    _, unstyled = ins.segmentImage(str(CAR), text_size=None, text_thickness=None,
                                   box_thickness=None)
    np.testing.assert_array_equal(unstyled, plain)
    with pytest.raises(InvalidArgumentError, match="box_thickness"):
        ins.segmentImage(str(CAR), show_bboxes=True, box_thickness=None)


def test_an_empty_output_name_says_so(ins):
    with pytest.raises(InvalidArgumentError, match="file name is empty"):
        ins.segmentImage(str(CAR), output_image_name="")


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"detection_speed": "turbo"}, "detection_speed"),
        ({"detection_speed": "Fast"}, "detection_speed"),
        ({"network_backbone": "resnet152"}, "network_backbone"),
        ({"confidence": 1.5}, "confidence"),
        ({"confidence": -0.1}, "confidence"),
    ],
)
def test_load_model_bad_settings_are_refused_before_reading(tmp_path, kwargs, match):
    # the file does not exist: a ValueError (not ModelNotFoundError) shows the order
    with pytest.raises(ValueError, match=match):
        instanceSegmentation().load_model(tmp_path / "nothing.pkl", **kwargs)


def test_load_model_missing_file_says_where_to_download(tmp_path):
    with pytest.raises(ModelNotFoundError, match="https://.*pointrend_resnet50.pkl"):
        instanceSegmentation().load_model(str(tmp_path / "pointrend_resnet50.pkl"))


def test_load_model_from_file_reuses_an_unchanged_model(r50_checkpoint, caplog):
    ins = instanceSegmentation()
    ins.load_model(str(r50_checkpoint), detection_speed="rapid", device="cpu")
    model, inference = ins._predictor.model, ins._predictor.inference
    assert (inference.score_thresh, inference.max_size) == (0.2, 333)
    ins.load_model(Path(r50_checkpoint), confidence=0.7, device="cpu")  # new settings only
    inference = ins._predictor.inference
    assert ins._predictor.model is model
    assert (inference.score_thresh, inference.max_size) == (0.7, 1333)
    with caplog.at_level("WARNING"):  # PixelLib's name for the other model: the file wins
        ins.load_model(r50_checkpoint, network_backbone="resnet101", device="cpu")
    assert "'resnet101'" in caplog.text and "resnet50" in caplog.text
    assert ins._predictor.model.config.name == "resnet50"


def test_backbone_disagreeing_with_the_model_warns(r50_model, caplog):
    with caplog.at_level("WARNING"):
        instanceSegmentation().load_model(r50_model, network_backbone="resnet101")
    assert "resnet101" in caplog.text and "resnet50" in caplog.text


def test_segment_before_load_model():
    with pytest.raises(RuntimeError, match="load_model"):
        instanceSegmentation().segmentImage(str(CAR))
    with pytest.raises(RuntimeError, match="load_model"):
        instanceSegmentation().segmentBatch(str(IMAGES))


def test_unknown_class_flag_lists_valid_names(ins):
    with pytest.raises(ValueError, match="persn") as info:
        ins.select_target_classes(persn=True)
    assert "traffic_light" in str(info.value) and "toothbrush" in str(info.value)


@pytest.mark.parametrize(
    "targets, error",
    [({"person": "yes"}, ValueError), ({"persn": "valid"}, ValueError), (3.5, TypeError),
     (["car", 99], ValueError)],
)
def test_bad_segment_target_classes(ins, targets, error):
    with pytest.raises(error):
        ins.segmentImage(CAR, segment_target_classes=targets)


def test_bad_image_inputs_name_the_file(ins, tmp_path):
    missing = tmp_path / "no such image.jpg"
    with pytest.raises(InputNotFoundError, match="no such image.jpg"):
        ins.segmentImage(str(missing))
    broken = tmp_path / "broken.jpg"
    broken.write_text("not an image")
    with pytest.raises(ImageReadError, match="broken.jpg"):
        ins.segmentImage(broken)
    with pytest.raises(InputNotFoundError):
        ins.segmentBatch(tmp_path / "no folder")


def test_batch_output_folder_equal_to_input_is_refused(ins, tmp_path):
    image = tmp_path / "a.jpg"
    image.write_bytes((IMAGES / "small.jpg").read_bytes())
    before = image.read_bytes()
    for out in (tmp_path, tmp_path / ".", str(tmp_path) + "/"):
        with pytest.raises(ValueError, match="input folder"):
            ins.segmentBatch(tmp_path, output_folder_name=out)
    assert image.read_bytes() == before and sorted(tmp_path.iterdir()) == [image]
    a_file = tmp_path / "afile.txt"
    a_file.write_text("x")
    with pytest.raises(ValueError, match="afile.txt.* is a file, not a folder"):
        ins.segmentBatch(tmp_path, output_folder_name=a_file)


@pytest.mark.parametrize("style, name", [
    ({"text_size": 5000}, "text_size"),      # OpenCV's putText crashed the process at this
    ({"text_size": float("nan")}, "text_size"),
    ({"text_size": -1}, "text_size"),
    ({"box_thickness": 10**6}, "box_thickness"),
    ({"box_thickness": -2}, "box_thickness"),  # -1 fills them, as in OpenCV and PixelLib
    ({"text_thickness": 1.5}, "text_thickness"),
])
def test_drawing_sizes_opencv_cannot_draw_are_refused_up_front(ins, tmp_path, style, name):
    out = tmp_path / "out.jpg"
    with pytest.raises(InvalidArgumentError, match=name):
        ins.segmentImage(str(tmp_path / "not read.jpg"), show_bboxes=True,
                         output_image_name=out, **style)  # refused before reading the image
    with pytest.raises(InvalidArgumentError, match=name):
        ins.segmentBatch(tmp_path, show_bboxes=True, **style)
    with pytest.raises(InvalidArgumentError, match=name):
        ins.process_video(str(tmp_path / "v.mp4"), show_bboxes=True, **style)
    assert not out.exists()
    # Without boxes nothing is drawn, so nothing is checked (as PixelLib).
    with pytest.raises(InputNotFoundError):
        ins.segmentImage(str(tmp_path / "not read.jpg"), **style)


# --------------------------------------------------------------------------- batch


@pytest.mark.parametrize("overlap", ["0", "1"])
def test_segment_batch_mixed_extensions_bad_files_filter_and_extracts(ins, tmp_path,
                                                                      monkeypatch, overlap,
                                                                      capsys):
    """Also with PIXELLIB_OVERLAP=1 (reading ahead, drawing and writing behind the model on
    background threads): the same results, order, warnings and files."""
    monkeypatch.setenv("PIXELLIB_OVERLAP", overlap)
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    small = (IMAGES / "small.jpg").read_bytes()
    (src / "b.JPG").write_bytes(small)
    (src / "a.Jpeg").write_bytes(small)
    (src / "c.PNG").write_bytes((IMAGES / "small_gray.png").read_bytes())
    (src / "d_broken.jpg").write_text("this is not a JPEG")
    (src / "e_truncated.png").write_bytes((IMAGES / "small_gray.png").read_bytes()[:200])
    (src / "notes.txt").write_text("ignored")
    (src / "sub.jpg").mkdir()  # a folder with an image-like name is not an image
    (src / "f_link.jpg").symlink_to(tmp_path / "gone.jpg")  # broken: reported, not dropped
    inputs = {p.name: p.read_bytes() for p in src.iterdir() if p.is_file()}

    targets = ins.select_target_classes(umbrella=True)
    with pytest.warns(SkippedImageWarning) as caught:
        results, outputs = ins.segmentBatch(
            src, show_bboxes=True, segment_target_classes=targets,
            extract_segmented_objects=True, save_extracted_objects=True,
            output_folder_name=out)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 3
    assert "d_broken.jpg" in messages[0] and "e_truncated.png" in messages[1]
    assert "truncated" in messages[1]
    assert "f_link.jpg" in messages[2] and "broken link" in messages[2]
    assert [Path(p).name for p, _ in ins.batch_failures] == ["d_broken.jpg", "e_truncated.png",
                                                             "f_link.jpg"]
    assert all(reason for _, reason in ins.batch_failures)
    # the progress bar ended at "6/6 100%" as if all had gone well: it says what was skipped
    last = capsys.readouterr().err.strip().split("\r")[-1]
    assert "6/6" in last and "3 skipped" in last, last
    good = ["a.Jpeg", "b.JPG", "c.PNG"]
    assert len(results) == len(outputs) == 3
    extract_dirs = {f"{Path(n).stem}_extracts" for n, r in zip(good, results) if r["class_names"]}
    assert {p.name for p in out.iterdir()} == set(good) | extract_dirs
    for name, res, output in zip(good, results, outputs):
        assert list(res) == KEYS
        assert set(res["class_names"]) <= {"umbrella"}  # the filter applies when extracting
        written = cv2.imread(str(out / name))
        assert written.shape == output.shape
        if name.endswith(".PNG"):  # lossless: exactly the returned picture
            np.testing.assert_array_equal(written, output)
        n = len(res["class_names"])
        assert len(res["extracted_objects"]) == n
        folder = out / f"{Path(name).stem}_extracts"
        saved = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
        # an empty crop (a mask with no pixel) has nothing to save; numbering counts it
        numbers = [k for k, crop in enumerate(res["extracted_objects"], 1) if crop.size]
        assert saved == sorted(f"segmented_object_{k}.jpg" for k in numbers)
    _assert_same_results(results[0], results[1])  # a and b are the same photo
    assert len(results[0]["class_names"]) >= 1
    assert {p.name: p.read_bytes() for p in src.iterdir() if p.is_file()} == inputs


def _assert_close_results(a: dict, b: dict) -> None:
    """Same objects, up to float rounding (a batch runs images on fewer threads)."""
    assert list(a) == list(b)
    assert a["class_ids"].tolist() == b["class_ids"].tolist()
    np.testing.assert_allclose(a["boxes"], b["boxes"], atol=1)
    np.testing.assert_allclose(a["scores"], b["scores"], atol=1)
    for m, n in zip(a["masks"].transpose(2, 0, 1), b["masks"].transpose(2, 0, 1)):
        assert _iou(m, n) > 0.99 or not (m.any() or n.any())


def test_segment_batch_with_a_bad_pixel_limit_fails_once(ins, tmp_path, monkeypatch):
    """A bad $PIXELLIB_MAX_PIXELS skipped every image with the same warning."""
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.jpg").write_bytes((IMAGES / "small.jpg").read_bytes())
    monkeypatch.setenv("PIXELLIB_MAX_PIXELS", "abc")
    with pytest.raises(InvalidArgumentError, match="PIXELLIB_MAX_PIXELS must be a positive "
                                                   "integer, got 'abc'"):
        ins.segmentBatch(src, output_folder_name=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_segment_batch_two_at_a_time_matches_single_images(ins, tmp_path, monkeypatch):
    """PIXELLIB_BATCH_WORKERS=2: order and results as one at a time; shared stems get their
    own extract folders."""
    monkeypatch.setenv("PIXELLIB_BATCH_WORKERS", "2")
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    photos = {"a.jpg": IMAGES / "small.jpg", "a.png": CAR, "b.jpg": IMAGES / "wide.jpg"}
    for name, photo in photos.items():
        (src / name).write_bytes(photo.read_bytes())
    calls = []
    predictor = ins._predictor

    class Recording:
        device = predictor.device

        def __call__(self, image, classes=None):
            calls.append((threading.current_thread().name, torch.get_num_threads()))
            return predictor(image, classes=classes)

    ins._predictor = Recording()
    try:
        results, outputs = ins.segmentBatch(src, show_bboxes=True, output_folder_name=out,
                                            extract_segmented_objects=True,
                                            save_extracted_objects=True)
    finally:
        ins._predictor = predictor
    from pixellib.runtime.parallel import batch_plan

    workers, threads = batch_plan()
    assert len(calls) == 3
    assert all(n == threads for _, n in calls)
    assert len({name for name, _ in calls}) == min(workers, 3)
    assert {"a_jpg_extracts", "a_png_extracts"} <= {p.name for p in out.iterdir()}
    for name, res, output in zip(sorted(photos), results, outputs):
        single, single_out = ins.segmentImage(photos[name], show_bboxes=True)
        _assert_close_results(res, single)
        assert output.shape == single_out.shape
        folder = out / f"{Path(name).stem}_{Path(name).suffix[1:]}_extracts"
        if name.startswith("a") and any(c.size for c in res["extracted_objects"]):
            assert folder.is_dir()
            saved = sorted(folder.iterdir())
            assert len(saved) == sum(1 for c in res["extracted_objects"] if c.size)


# --------------------------------------------------------------------------- threads


def test_threads_sharing_one_instance_match_sequential(ins, base):
    paths = [CAR, IMAGES / "small.jpg", IMAGES / "wide.jpg"]
    barrier = threading.Barrier(len(paths))

    def run(path):
        barrier.wait()
        return ins.segmentImage(path, show_bboxes=True)

    with ThreadPoolExecutor(len(paths)) as pool:
        parallel = list(pool.map(run, paths))
    sequential = [base] + [ins.segmentImage(p, show_bboxes=True) for p in paths[1:]]
    for (r_par, out_par), (r_seq, out_seq) in zip(parallel, sequential):
        _assert_same_results(r_par, r_seq)
        np.testing.assert_array_equal(out_par, out_seq)


def test_extracts_of_a_mask_in_parts_are_cropped_as_pixellib_crops_them(ins, tmp_path):
    """PixelLib keeps only the rows and columns holding mask pixels, closing the gap between
    the parts of a split mask; 87 of 100 crops of a crowded photo had other sizes here."""
    results, _ = ins.segmentImage(str(IMAGES / "small.jpg"), extract_segmented_objects=True)
    image = read_image(IMAGES / "small.jpg")
    masks = results["masks"]
    gapped = 0
    for k, crop in enumerate(results["extracted_objects"]):
        mask = masks[:, :, k]
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        gapped += rows.size and (rows[-1] - rows[0] + 1 > rows.size or
                                 cols[-1] - cols[0] + 1 > cols.size)
        np.testing.assert_array_equal(
            crop, np.where(mask[..., None], image, 0)[np.ix_(rows, cols)])
    assert gapped >= 1  # the photo has split masks: the case where the two crops differ


def test_the_input_photos_own_name_is_refused_as_an_output(ins, tmp_path, monkeypatch):
    """segmentImage(p, output_image_name=p) replaced the user's photo with its segmented
    copy (process_video already refused its input's name)."""
    photo = tmp_path / "p.jpg"
    photo.write_bytes((IMAGES / "small.jpg").read_bytes())
    before = photo.read_bytes()
    (tmp_path / "link.jpg").symlink_to(photo)
    monkeypatch.chdir(tmp_path)
    for name in (photo, str(photo), tmp_path / "link.jpg", "p.jpg", "./p.jpg", "../" +
                 tmp_path.name + "/p.jpg"):
        with pytest.raises(InvalidArgumentError, match="it is the input image itself"):
            ins.segmentImage(str(photo), output_image_name=name)
    assert photo.read_bytes() == before


def test_segment_batch_refuses_an_output_folder_an_input_links_into(ins, tmp_path):
    """in/p.jpg, a link to real/p.jpg, with output_folder_name='real': the output replaced
    the real photo (the CLI refused it)."""
    (tmp_path / "real").mkdir()
    (tmp_path / "in").mkdir()
    photo = tmp_path / "real" / "p.jpg"
    photo.write_bytes((IMAGES / "small.jpg").read_bytes())
    (tmp_path / "in" / "p.jpg").symlink_to(photo)
    with pytest.raises(InvalidArgumentError, match="holds the input image .*p.jpg"):
        ins.segmentBatch(tmp_path / "in", output_folder_name=tmp_path / "real")
    assert photo.read_bytes() == (IMAGES / "small.jpg").read_bytes()


def test_batch_failures_describe_the_last_call_even_when_it_raised(ins, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "bad.jpg").write_bytes(b"no")
    with pytest.warns(SkippedImageWarning):
        ins.segmentBatch(tmp_path / "in")
    assert len(ins.batch_failures) == 1
    with pytest.raises(ValueError, match="input folder"):
        ins.segmentBatch(tmp_path / "in", output_folder_name=tmp_path / "in")
    assert ins.batch_failures == []


def test_segment_batch_into_a_folder_it_cannot_write_refuses_before_segmenting(tmp_path):
    """It ran the model on every image, then failed each write ("6 failures" after 25 s);
    PixelLib failed at once."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jpg").write_bytes((IMAGES / "small.jpg").read_bytes())
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    script = (
        "import sys\n"
        "from pixellib.torchbackend.instance import instanceSegmentation\n"
        "ins = instanceSegmentation()\n"
        "class StandIn:  # no model is needed to refuse it\n"
        "    device = __import__('torch').device('cpu')\n"
        "    def __call__(self, image, classes=None):\n"
        "        raise ValueError('a stand-in')\n"
        "ins._predictor = StandIn()\n"
        "for out in (sys.argv[2], sys.argv[2] + '/new'):\n"
        "    try:\n"
        "        ins.segmentBatch(sys.argv[1], output_folder_name=out)\n"
        "    except ValueError as e:\n"
        "        print(e)\n"
        "try:  # saves nothing: not refused, it reaches the model\n"
        "    ins.segmentBatch(sys.argv[3], save_extracted_objects=True)\n"
        "except ValueError as e:\n"
        "    print('ran:', e)\n"
    )
    (locked / "b.jpg").write_bytes((IMAGES / "small.jpg").read_bytes())
    argv = [sys.executable, "-c", script, str(tmp_path / "in"), str(locked), str(locked)]
    from faults import run_locked_out

    done = run_locked_out(argv, locked, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3 and all("no permission to write there" in line for line in lines[:2])
    assert lines[0].startswith(f"output_folder_name: cannot write in '{locked}'")
    assert lines[2] == "ran: a stand-in", lines
    assert [p.name for p in locked.iterdir()] == ["b.jpg"]


def test_on_off_options_take_pixellibs_values_and_refuse_a_string(ins, tmp_path, monkeypatch,
                                                                 caplog):
    """``show_bboxes="False"`` drew boxes and ``extract_segmented_objects="False"`` wrote
    extracts (``bool()`` of a non-empty string); PixelLib compared with ``== True``."""
    photo = str(IMAGES / "small.jpg")
    for call, option in ((ins.segmentImage, "show_bboxes"),
                         (ins.segmentImage, "extract_segmented_objects"),
                         (ins.segmentBatch, "save_extracted_objects"),
                         (ins.process_video, "mask_points_values"),
                         (ins.segmentFrame, "extract_from_box")):
        source = str(tmp_path) if call == ins.segmentBatch else photo
        if call == ins.segmentFrame:
            source = read_image(photo)
        with pytest.raises(InvalidArgumentError, match=f"{option} must be True or False, "
                                                       "got 'False' \\(a str\\)"):
            call(source, **{option: "False"})
    with pytest.raises(InvalidArgumentError, match="show_bboxes must be True or False, got 2"):
        ins.segmentImage(photo, show_bboxes=2)
    assert list(tmp_path.iterdir()) == []  # nothing was written
    results, _ = ins.segmentImage(photo, show_bboxes=np.bool_(False),
                                  extract_segmented_objects=1, mask_points_values=None)
    assert len(results["extracted_objects"]) == len(results["class_ids"]) > 0
    assert results["masks"].dtype == bool
    # options that need extract_segmented_objects, without it: PixelLib's nothing, said
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.WARNING, logger="pixellib"):
        results, _ = ins.segmentImage(photo, save_extracted_objects=True, extract_from_box=1)
    assert "extracted_objects" not in results or not results["extracted_objects"]
    assert list(tmp_path.iterdir()) == []
    assert [r.getMessage() for r in caplog.records] == [
        "extract_from_box=True and save_extracted_objects=True do nothing without "
        "extract_segmented_objects=True: no objects are extracted"]


def _failing_at(name):
    """``save_extracts`` whose write of the file ``name`` fails as a full disk does."""
    import pixellib.export as export
    from faults import full_disk_for

    def save(*args, **kwargs):
        real = export.write_image
        export.write_image = full_disk_for(name, real)
        try:
            return export.save_extracts(*args, **kwargs)
        finally:
            export.write_image = real

    return save


def test_a_failed_call_puts_back_the_extracts_of_the_call_before(ins, tmp_path, monkeypatch):
    """A second call whose output cannot be written undid its extracts by deleting them:
    files of the same names, which were the first call's, were lost with them."""
    import pixellib.torchbackend.instance.segmentation as segmentation
    from faults import full_disk_for

    folder = tmp_path / "extracts"
    photo = str(IMAGES / "small.jpg")
    options = dict(extract_segmented_objects=True, save_extracted_objects=True,
                   extracted_objects_folder=str(folder))
    ins.segmentImage(photo, output_image_name=str(tmp_path / "first.jpg"), **options)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert before
    # a different picture, so that the second call's extracts differ from the first's
    flipped = read_image(photo)[:, ::-1]
    monkeypatch.setattr(segmentation, "write_image",
                        full_disk_for("second.jpg", segmentation.write_image))
    with pytest.raises(OSError, match="second.jpg.*No space left"):
        ins.segmentImage(flipped, output_image_name=str(tmp_path / "second.jpg"), **options)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    # failing at an extract that was there before: it is the earlier one still, and the link
    # kept to it is not left behind as a hidden file
    first = sorted(before)[0]
    monkeypatch.setattr(segmentation.fmt, "save_extracts", _failing_at(first))
    with pytest.raises(OSError, match=f"{first}.*No space left"):
        ins.segmentImage(flipped, output_image_name=str(tmp_path / "third.jpg"), **options)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    monkeypatch.undo()
    # the folders the failed call made are removed again
    monkeypatch.setattr(segmentation, "write_image",
                        full_disk_for("second.jpg", segmentation.write_image))
    with pytest.raises(OSError, match="second.jpg"):
        ins.segmentImage(flipped, output_image_name=str(tmp_path / "second.jpg"),
                         **{**options, "extracted_objects_folder": str(tmp_path / "new" / "in")})
    assert not (tmp_path / "new").exists()


def test_a_failed_video_leaves_no_frames_extracts(ins, tmp_path, monkeypatch):
    """process_video failing at frame 3: frames 1 and 2's extracts stayed, for a video that
    was not written."""
    import pixellib.media.images as images
    from pixellib.media.writer import VideoWriter

    frame = cv2.resize(read_image(IMAGES / "small.jpg"), (160, 120))
    clip = tmp_path / "clip.avi"
    with VideoWriter(clip, 5.0, (160, 120)) as writer:
        for _ in range(4):
            writer.write(frame)
    folder = tmp_path / "extracts"
    folder.mkdir()
    (folder / "mine.txt").write_text("the user's")
    real = images.write_image

    def full_at_frame_3(path, image, *args, **kwargs):
        if Path(path).name.startswith("frame_3_"):
            raise OSError(28, f"cannot write {str(path)!r}: No space left on device")
        return real(path, image, *args, **kwargs)

    monkeypatch.setattr(images, "write_image", full_at_frame_3)
    import pixellib.export as export

    monkeypatch.setattr(export, "write_image", full_at_frame_3)
    with pytest.raises(OSError, match="frame_3_.*No space left"):
        ins.process_video(str(clip), extract_segmented_objects=True,
                          save_extracted_objects=True, extracted_objects_folder=str(folder),
                          output_video_name=str(tmp_path / "out.mp4"))
    assert sorted(p.name for p in folder.iterdir()) == ["mine.txt"]
    assert not (tmp_path / "out.mp4").exists()
    # the same call, able to write: every frame's extracts
    monkeypatch.undo()
    ins.process_video(str(clip), extract_segmented_objects=True, save_extracted_objects=True,
                      extracted_objects_folder=str(folder),
                      output_video_name=str(tmp_path / "out.mp4"))
    assert {p.name.split("_segmented")[0] for p in folder.glob("frame_*")} == {
        f"frame_{k}" for k in range(1, 5)}


def test_a_batch_image_whose_output_cannot_be_written_leaves_no_extracts(ins, tmp_path,
                                                                         monkeypatch):
    """Its extracts were written first and stayed, for an image reported as skipped."""
    import pixellib.torchbackend.instance.segmentation as segmentation
    from faults import full_disk_for

    (tmp_path / "in").mkdir()
    for name in ("a.jpg", "b.jpg"):
        (tmp_path / "in" / name).write_bytes((IMAGES / "small.jpg").read_bytes())
    monkeypatch.setattr(segmentation, "write_image",
                        full_disk_for("a.jpg", segmentation.write_image))
    out = tmp_path / "out"
    with pytest.warns(SkippedImageWarning, match="a.jpg.*No space left"):
        results, _ = ins.segmentBatch(tmp_path / "in", output_folder_name=out,
                                      extract_segmented_objects=True,
                                      save_extracted_objects=True)
    assert len(results) == 1 and len(ins.batch_failures) == 1
    assert sorted(p.name for p in out.iterdir()) == ["b.jpg", "b_extracts"]
    assert len(list((out / "b_extracts").iterdir())) >= 1
