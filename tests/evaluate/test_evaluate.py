"""``pixellib evaluate``: COCOeval on annotations made here from the synthetic model's own
detections (AP 1.0), on degraded copies (lower AP), and on broken annotation files."""
from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from pixellib.cli.main import main
from pixellib.errors import AnnotationFileError, InputNotFoundError
from pixellib.evaluate import (
    coco_evaluate,
    evaluate,
    format_report,
    image_paths,
    load_annotations,
)
from pixellib.export import mask_to_rle, rle_to_mask, to_coco_json
from pixellib.predictor import Predictor

DATA = Path(__file__).parents[1] / "data" / "images"


def _nonempty(results):
    return [r for r in results if rle_to_mask(r["segmentation"]).any()]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, r50_model):
    """Two small photos and a COCO file whose ground truth is the model's own output.

    Detections whose mask came out empty (random synthetic weights make some) stay out of
    the ground truth: an empty mask can never match in mask evaluation."""
    root = tmp_path_factory.mktemp("coco")
    images = root / "images"
    images.mkdir()
    shutil.copy(DATA / "small.jpg", images / "small.jpg")
    cv2.imwrite(str(images / "street.jpg"),
                cv2.resize(cv2.imread(str(DATA / "street.jpg")), (360, 241)))
    predictor = Predictor(r50_model, speed="rapid", confidence=0.5)
    gt = {"images": [], "annotations": [], "categories": None}
    results = []
    for image_id, name in ((7, "small.jpg"), (9, "street.jpg")):
        coco = to_coco_json(predictor(images / name), image_id=image_id, file_name=name)
        for ann in coco["annotations"]:
            results.append({k: ann[k] for k in ("image_id", "category_id", "bbox", "score",
                                               "segmentation")})
            if ann["area"] > 0:
                gt["annotations"].append({**ann, "id": len(gt["annotations"]) + 1})
        gt["images"] += coco["images"]
        gt["categories"] = coco["categories"]
    assert len(gt["annotations"]) >= 3, "the synthetic model should find a few objects"
    path = root / "annotations.json"
    path.write_text(json.dumps(gt))
    return {"root": root, "images": images, "path": path, "gt": gt, "predictor": predictor,
            "results": results}


def test_own_detections_score_ap_1(dataset):
    ev = coco_evaluate(dataset["gt"], _nonempty(dataset["results"]))
    assert ev.box[0] == pytest.approx(1.0) and ev.mask[0] == pytest.approx(1.0)
    assert ev.box[1] == pytest.approx(1.0) and ev.mask[2] == pytest.approx(1.0)
    classes = [pair for pair in ev.per_class.values() if pair != (None, None)]
    assert classes and all(b == pytest.approx(1.0) and m == pytest.approx(1.0)
                           for b, m in classes)
    assert "AP per class" in format_report(ev)


@pytest.mark.slow
def test_cli_evaluate_first_image(dataset, r50_checkpoint, capsys):
    out = dataset["root"] / "dets.json"
    code = main(["evaluate", str(dataset["path"]), str(dataset["images"]), "--limit", "1",
                 "--model", str(r50_checkpoint), "--speed", "rapid", "--confidence", "0.5",
                 "--output", str(out)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    written = json.loads(out.read_text())
    assert not list(dataset["root"].glob("*.tmp*"))  # written atomically, nothing left over
    first = [r for r in dataset["results"] if r["image_id"] == 7]
    assert [(r["category_id"], r["segmentation"]) for r in written] == [
        (r["category_id"], r["segmentation"]) for r in first]
    np.testing.assert_allclose([r["bbox"] for r in written], [r["bbox"] for r in first],
                               atol=1e-3)
    expected = coco_evaluate(dataset["gt"], written, [7])
    assert format_report(expected) in printed.out  # the tables, for the first image only
    assert f"1 images, {len(first)} detections" in printed.out


def test_shifted_boxes_lower_box_ap_only(dataset):
    gt = copy.deepcopy(dataset["gt"])
    for ann in gt["annotations"]:
        x, y, w, h = ann["bbox"]
        ann["bbox"] = [x + 0.3 * w, y, w, h]  # box IoU 0.54: fails every threshold >= .55
    ev = coco_evaluate(gt, _nonempty(dataset["results"]))
    assert ev.box[0] < 0.9 and ev.box[1] > ev.box[0]  # most still match at IoU .50
    assert ev.mask[0] == pytest.approx(1.0)


def test_eroded_masks_lower_mask_ap_only(dataset):
    gt = copy.deepcopy(dataset["gt"])
    for ann in gt["annotations"]:
        mask = rle_to_mask(ann["segmentation"]).astype(np.uint8)
        eroded = cv2.erode(mask, np.ones((5, 5), np.uint8)).astype(bool)
        ann["segmentation"] = mask_to_rle(eroded)
        ann["area"] = float(eroded.sum())
    ev = coco_evaluate(gt, _nonempty(dataset["results"]))
    assert ev.mask[0] < 0.99
    assert ev.box[0] == pytest.approx(1.0)
    assert "mask" in format_report(ev)


def test_no_detections_score_zero(dataset):
    ev = coco_evaluate(dataset["gt"], [])
    assert ev.box[0] == 0.0 and ev.mask[0] == 0.0 and ev.detections == 0
    # Area ranges without ground truth read -1, as COCOeval gives them when it can run.
    areas = [a["area"] for a in dataset["gt"]["annotations"] if not a["iscrowd"]]
    ranges = {3: (0, 32**2), 4: (32**2, 96**2), 5: (96**2, 1e10)}
    for k, (lo, hi) in ranges.items():
        want = 0.0 if any(lo <= a <= hi for a in areas) else -1.0
        assert ev.box[k] == ev.mask[k] == ev.box[k + 6] == want
    assert -1.0 in ev.box  # the test photos leave at least one range empty


def _write(tmp_path, data):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("section, index, field", [
    ("images", 1, "height"), ("annotations", 0, "bbox"), ("annotations", 1, "segmentation"),
    ("categories", 0, "name"),
])
def test_missing_field_names_file_and_entry(dataset, tmp_path, section, index, field):
    data = copy.deepcopy(dataset["gt"])
    entry = data[section][index]
    del entry[field]
    path = _write(tmp_path, data)
    with pytest.raises(AnnotationFileError) as err:
        load_annotations(path)
    msg = str(err.value)
    assert str(path) in msg and f"{section}[{index}] (id {entry['id']})" in msg and field in msg


def test_other_bad_annotation_files(dataset, tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(AnnotationFileError, match="broken.json"):
        load_annotations(path)
    data = copy.deepcopy(dataset["gt"])
    data["annotations"][1]["image_id"] = 999
    with pytest.raises(AnnotationFileError, match=r"annotations\[1\].*image_id 999"):
        load_annotations(_write(tmp_path, data))
    with pytest.raises(AnnotationFileError, match="missing list 'categories'"):
        load_annotations(_write(tmp_path, {"images": [], "annotations": []}))
    with pytest.raises(AnnotationFileError, match="a folder, not an annotation file"):
        load_annotations(tmp_path)
    bom = tmp_path / "bom.json"  # as some Windows editors save it
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps(dataset["gt"]).encode())
    assert load_annotations(bom)["images"] == dataset["gt"]["images"]


@pytest.mark.parametrize("section, index, field, value, says", [
    ("images", 0, "id", [1], "'id' must be a number or a string"),
    ("images", 0, "file_name", 123, "'file_name' must be a file name"),
    ("images", 0, "width", "96", "'width' must be a whole number > 0"),
    ("annotations", 0, "category_id", [1], "'category_id' must be a number or a string"),
    ("annotations", 0, "segmentation", "oops", "'segmentation' must be polygons"),
    ("annotations", 0, "segmentation", [], "'segmentation' must be polygons"),
    ("annotations", 0, "segmentation", [[1, 2, 3]], "'segmentation' must be polygons"),
    ("annotations", 0, "area", "big", "'area' must be a number >= 0"),
    ("annotations", 0, "iscrowd", "no", "'iscrowd' must be 0 or 1"),
    ("annotations", 0, "bbox", [0, 0, float("nan"), 4], "'bbox' must be"),
])
def test_wrong_types_name_the_entry_before_any_work(dataset, tmp_path, section, index, field,
                                                    value, says):
    """They crashed in pycocotools with a traceback, some after the whole detection pass."""
    data = copy.deepcopy(dataset["gt"])
    data[section][index][field] = value
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))  # NaN is written as the JSON extension NaN
    with pytest.raises(AnnotationFileError, match=says) as err:
        load_annotations(path)
    assert str(path) in str(err.value) and f"{section}[{index}]" in str(err.value)


def test_duplicate_ids_and_empty_image_lists_are_refused(dataset, tmp_path):
    data = copy.deepcopy(dataset["gt"])
    for ann in data["annotations"]:
        ann["id"] = 1  # pycocotools kept one of them: AP 0.000 without a word
    with pytest.raises(AnnotationFileError, match=r"annotations\[1\] \(id 1\): duplicate"):
        load_annotations(_write(tmp_path, data))
    with pytest.raises(AnnotationFileError, match="'images' is empty"):
        load_annotations(_write(tmp_path, {"images": [], "annotations": [], "categories": []}))
    for limit in (0, -1, 1.5):
        with pytest.raises(ValueError, match="limit"):
            image_paths(dataset["gt"], dataset["images"], limit=limit)


def test_cli_output_is_checked_before_the_model_loads(dataset, tmp_path, capsys):
    path = _write(tmp_path, dataset["gt"])
    (tmp_path / "odir").mkdir()
    for output, says in ((path, "is the annotation file itself"),
                         (tmp_path / "odir", "it is a folder")):
        argv = ["evaluate", str(path), str(dataset["images"]), "--model", "nope.pkl",
                "-o", str(output)]
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert says in err and "nope" not in err
    assert json.loads(path.read_text()) == dataset["gt"]  # the ground truth is intact


def test_missing_image_names_file_and_entry(dataset, tmp_path, capsys):
    data = copy.deepcopy(dataset["gt"])
    data["images"][1]["file_name"] = "gone.jpg"
    path = _write(tmp_path, data)
    with pytest.raises(InputNotFoundError, match=r"images\[1\] \(id 9\): file 'gone.jpg'"):
        evaluate(dataset["predictor"], path, dataset["images"], progress=False)
    # the command fails before loading any model, with one clear line
    assert main(["evaluate", str(path), str(dataset["images"]), "--model", "nope.pkl"]) == 1
    err = capsys.readouterr().err
    assert "gone.jpg" in err and str(path) in err and "Traceback" not in err
