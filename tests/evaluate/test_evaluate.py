"""``pixellib evaluate``: COCOeval on annotations made here from the synthetic model's own
detections (AP 1.0), on degraded copies (lower AP), and on broken annotation files."""
from __future__ import annotations

import copy
import json
import os
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from faults import run_locked_out
from pixellib.cli.main import main
from pixellib.errors import AnnotationFileError, ImageReadError, InputNotFoundError
from pixellib.evaluate import (
    category_map,
    coco_evaluate,
    evaluate,
    format_report,
    image_paths,
    load_annotations,
    prepare,
)
from pixellib.export import mask_to_rle, rle_to_mask, to_coco_json
from pixellib.predictor import Predictor
from pixellib.torchbackend.instance import SkippedImageWarning

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
    assert f"1 image, {len(first)} detections" in printed.out


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


def _ids_changed(gt, results, change):
    gt, results = copy.deepcopy(gt), copy.deepcopy(results)
    if change in ("annotation ids from 0", "string annotation ids"):
        for k, ann in enumerate(gt["annotations"]):
            ann["id"] = k if change == "annotation ids from 0" else f"ann-{k}"
        return gt, results
    key, new = (("image_id", {7: 2**53 + 1, 9: 2**63 + 5}) if change == "huge image ids" else
                ("category_id", {c["id"]: 2**63 + c["id"] for c in gt["categories"]}))
    for item in gt["images" if key == "image_id" else "categories"]:
        item["id"] = new[item["id"]]
    for item in gt["annotations"] + results:
        item[key] = new[item[key]]
    return gt, results


@pytest.mark.parametrize("change", ["annotation ids from 0", "string annotation ids",
                                    "huge image ids", "huge category ids"])
def test_ids_score_the_same_whatever_their_form(dataset, change):
    """COCOeval takes annotation id 0 for "no match" (AP fell with no word), failed on
    string ids after the whole detection pass, and with an id of 2**63 or more made every
    image id a float, so that images whose ids a float cannot hold left the scores."""
    results = _nonempty(dataset["results"])
    missed = next(k for k, r in enumerate(results) if r["image_id"] == 9)
    results = results[:missed] + results[missed + 1:]  # one object missed: AP < 1
    want = coco_evaluate(dataset["gt"], results)
    assert want.box[0] < 1
    gt, changed = _ids_changed(dataset["gt"], results, change)
    ev = coco_evaluate(gt, changed)
    assert (ev.box, ev.mask, ev.per_class) == (want.box, want.mask, want.per_class)
    assert (ev.images, ev.detections, ev.objects) == (want.images, want.detections, want.objects)


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


def test_a_class_with_only_crowd_regions_has_no_ap_with_or_without_detections(dataset):
    """It read 0.000 in the per-class table when nothing was detected, and was left out
    (COCOeval's "nothing to measure") when something was."""
    gt = copy.deepcopy(dataset["gt"])
    ann = gt["annotations"][0]
    crowd_id = max(c["id"] for c in gt["categories"]) + 1
    gt["categories"].append({"id": crowd_id, "name": "crowd only"})
    gt["annotations"].append({**ann, "id": len(gt["annotations"]) + 1, "iscrowd": 1,
                              "category_id": crowd_id})
    named = {c["id"]: c["name"] for c in gt["categories"]}
    for results in ([], _nonempty(dataset["results"])):
        ev = coco_evaluate(gt, results)
        assert ev.per_class["crowd only"] == (None, None)
        assert "crowd only" not in format_report(ev)
        found = ev.per_class[named[ann["category_id"]]]  # a class with objects is scored
        assert found == ((0.0, 0.0) if not results else (pytest.approx(1.0),) * 2)


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
    ("images", 0, "id", [1], "'id' must be a whole number"),
    ("images", 0, "id", "7", "'id' must be a whole number"),
    ("images", 0, "id", 7.0, "'id' must be a whole number, got 7.0"),
    ("categories", 0, "id", "person", "'id' must be a whole number"),
    ("categories", 0, "name", "", "'name' must be a class name"),
    ("images", 0, "file_name", 123, "'file_name' must be a file name"),
    ("images", 0, "width", "96", "'width' must be a whole number > 0"),
    ("annotations", 0, "category_id", [1], "'category_id' must be a whole number"),
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
                         (tmp_path / "odir", "it is a folder"),
                         ("-", "-o -: the detections go to a file, not to stdout")):
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


def _renumbered(gt):
    """The same ground truth with the categories numbered 1..N (as a user's own export
    does) and their names spelt another way ("Traffic_Light")."""
    gt = copy.deepcopy(gt)
    new = {c["id"]: k for k, c in enumerate(gt["categories"], start=1)}
    for c in gt["categories"]:
        c["id"], c["name"] = new[c["id"]], c["name"].title().replace(" ", "_")
    for ann in gt["annotations"]:
        ann["category_id"] = new[ann["category_id"]]
    assert any(old != k for old, k in new.items())
    return gt, new


def test_categories_are_matched_by_name_not_by_id(dataset, tmp_path):
    """A file numbering its classes 1..N scored AP 0 (detections carried COCO's ids)."""
    gt, new = _renumbered(dataset["gt"])
    path = _write(tmp_path, gt)
    saved = []
    ev = evaluate(dataset["predictor"], path, dataset["images"], progress=False,
                  on_results=saved.append)
    want = coco_evaluate(dataset["gt"], dataset["results"])
    assert ev.box == pytest.approx(want.box) and ev.mask == pytest.approx(want.mask)
    assert ev.box[0] == pytest.approx(1.0) and not ev.unmatched_categories and not ev.left_out
    assert sorted(r["category_id"] for r in saved[0]) == sorted(
        new[r["category_id"]] for r in dataset["results"])  # written in the file's ids
    assert category_map(dataset["gt"])[0] == {c["id"]: c["id"] for c in dataset["gt"]["categories"]
                                              if c["id"] in new}


def test_categories_no_coco_class_is(dataset, tmp_path):
    """A user's own class scores 0 and is named; detections of COCO classes the file does not
    have are left out (the synthetic model finds umbrellas only here)."""
    gt = copy.deepcopy(dataset["gt"])
    gt["categories"] = [{"id": 1, "name": "person"}, {"id": 1000, "name": "widget"}]
    for ann in gt["annotations"]:
        ann["category_id"] = 1000
    saved = []
    ev = evaluate(dataset["predictor"], _write(tmp_path, gt), dataset["images"],
                  progress=False, on_results=saved.append)
    assert ev.unmatched_categories == ["widget"] and saved == [[]]
    assert ev.left_out == len(dataset["results"]) > 0
    assert ev.per_class["widget"] == (0.0, 0.0) and ev.box[0] == 0.0
    report = format_report(ev)
    assert "no COCO class" in report and "widget" in report
    assert f"{ev.left_out} detections of COCO classes" in report
    for c in gt["categories"]:
        c["name"] = f"my_{c['id']}"
    with pytest.raises(AnnotationFileError, match="none of the 2 categories.*my_"):
        prepare(_write(tmp_path, gt), dataset["images"])
    gt["categories"] = [{"id": 1000, "name": "hair drier"}, {"id": 2, "name": "Hair_Dryer"}]
    with pytest.raises(AnnotationFileError, match="1000 and 2 are both the COCO class"):
        prepare(_write(tmp_path, gt), dataset["images"])


def test_duplicate_categories_are_refused(dataset, tmp_path):
    gt = copy.deepcopy(dataset["gt"])
    gt["categories"].append({**gt["categories"][0]})
    with pytest.raises(AnnotationFileError, match=r"categories\[\d+\] \(id \d+\): duplicate"):
        load_annotations(_write(tmp_path, gt))
    gt["categories"][-1] = {"id": 5000, "name": gt["categories"][0]["name"].upper()}
    with pytest.raises(AnnotationFileError, match="names must be distinct"):
        load_annotations(_write(tmp_path, gt))


def _first_rle(gt):
    return next(i for i, a in enumerate(gt["annotations"]) if isinstance(a["segmentation"], dict))


@pytest.mark.parametrize("change, says", [
    (lambda seg, h, w: seg.update(size=[w, h]), "RLE 'size' .* is not the image's"),
    (lambda seg, h, w: seg.update(counts=[-5, h * w + 5]), "runs must be >= 0"),
    (lambda seg, h, w: seg.update(counts=[3, 4]), "add up to"),
    (lambda seg, h, w: seg.update(counts="!!!garbage"), "not a COCO compressed string"),
])
def test_rle_that_does_not_fit_its_image_is_refused(dataset, tmp_path, change, says):
    """They gave a silently wrong mask AP, or a traceback from pycocotools after the model ran."""
    gt = copy.deepcopy(dataset["gt"])
    k = _first_rle(gt)
    image = next(im for im in gt["images"] if im["id"] == gt["annotations"][k]["image_id"])
    change(gt["annotations"][k]["segmentation"], image["height"], image["width"])
    with pytest.raises(AnnotationFileError, match=rf"annotations\[{k}\] .*{says}"):
        load_annotations(_write(tmp_path, gt))


def test_polygon_far_outside_its_image_is_refused(dataset, tmp_path):
    """One coordinate of 1e12 made pycocotools allocate until the process was killed."""
    gt = copy.deepcopy(dataset["gt"])
    gt["annotations"][0]["segmentation"] = [[1, 2, 30, 2, 5, 1e12]]
    with pytest.raises(AnnotationFileError, match=r"annotations\[0\].*far outside"):
        load_annotations(_write(tmp_path, gt))
    gt["annotations"][0]["segmentation"] = [[-3, -2, 30, 2, 5, 20.5]]  # a little over: fine
    load_annotations(_write(tmp_path, gt))


def test_integral_float_sizes_are_read_as_numbers(dataset, tmp_path):
    gt = copy.deepcopy(dataset["gt"])
    gt["images"][0]["width"] = float(gt["images"][0]["width"])
    assert load_annotations(_write(tmp_path, gt))["images"][0]["width"] == dataset["gt"][
        "images"][0]["width"]


def test_image_size_and_kind_are_checked_before_the_model(dataset, tmp_path):
    gt = copy.deepcopy(dataset["gt"])
    gt["images"][1]["width"] *= 2
    gt["annotations"] = []
    with pytest.raises(AnnotationFileError, match=r"images\[1\] \(id 9\): the annotations say"):
        prepare(_write(tmp_path, gt), dataset["images"])
    folder = tmp_path / "imgs"
    shutil.copytree(dataset["images"], folder)
    (folder / "sub").mkdir()
    gt = copy.deepcopy(dataset["gt"])
    gt["images"][0]["file_name"] = "sub"
    with pytest.raises(AnnotationFileError, match="'sub' in .* is a folder, not an image"):
        prepare(_write(tmp_path, gt), folder)


def test_exif_turned_image_says_why_its_size_differs(dataset, tmp_path):
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    stored = Image.open(dataset["images"] / "small.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # turned 90 degrees when read
    stored.save(folder / "small.jpg", exif=exif)
    gt = copy.deepcopy(dataset["gt"])
    gt["images"] = [im for im in gt["images"] if im["file_name"] == "small.jpg"]
    gt["annotations"] = [a for a in gt["annotations"] if a["image_id"] == gt["images"][0]["id"]]
    with pytest.raises(AnnotationFileError, match=r"EXIF orientation \(6\) turns it"):
        prepare(_write(tmp_path, gt), folder)
    w, h = stored.size
    gt["images"][0]["width"], gt["images"][0]["height"] = h, w  # the size as read: accepted
    gt["annotations"] = []
    assert len(prepare(_write(tmp_path, gt), folder).items) == 1


def test_unreadable_image_is_left_out_and_reported(dataset, tmp_path):
    """One corrupt image threw away the whole detection pass."""
    folder = tmp_path / "imgs"
    shutil.copytree(dataset["images"], folder)
    data = (folder / "street.jpg").read_bytes()
    (folder / "street.jpg").write_bytes(data[: len(data) // 2])
    path = _write(tmp_path, dataset["gt"])
    with pytest.warns(SkippedImageWarning, match=r"image id 9 .*street.jpg.*truncated"):
        ev = evaluate(dataset["predictor"], path, folder, progress=False)
    assert ev.images == 1 and [f for f, _ in ev.skipped] == ["street.jpg"]
    assert ev.box == pytest.approx(coco_evaluate(dataset["gt"], dataset["results"], [7]).box)
    assert "1 image could not be read and is left out" in format_report(ev)
    (folder / "small.jpg").write_bytes(b"")
    with pytest.warns(SkippedImageWarning), pytest.raises(ImageReadError, match="none of the 2"):
        evaluate(dataset["predictor"], path, folder, progress=False)


def test_no_ground_truth_is_said(dataset):
    gt = copy.deepcopy(dataset["gt"])
    gt["annotations"] = []
    ev = coco_evaluate(gt, dataset["results"])
    assert ev.objects == 0 and set(ev.box) == {-1.0}
    assert "no ground-truth object" in format_report(ev)


def test_cli_refuses_an_image_or_an_unwritable_output_before_the_model(dataset, tmp_path,
                                                                       capsys):
    path = _write(tmp_path, dataset["gt"])
    before = (dataset["images"] / "small.jpg").read_bytes()
    for output, says in ((dataset["images"] / "small.jpg", "is one of the images itself"),
                         (Path("/proc/pixellib-test/x.json"), "cannot write the detections")):
        argv = ["evaluate", str(path), str(dataset["images"]), "--model", "nope.pkl",
                "--limit", "1", "-o", str(output)]
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert says in err and "nope" not in err and "Traceback" not in err
    assert (dataset["images"] / "small.jpg").read_bytes() == before


def test_cli_writes_an_existing_output_in_a_locked_folder(dataset, r50_checkpoint, tmp_path):
    """``-o locked/dets.json``, a file the user may write in a folder they may not, was
    refused before the detection pass, though every other output is written in place then
    (``segment -o``, ``--coco``)."""
    path = _write(tmp_path, dataset["gt"])
    locked = tmp_path / "locked"
    locked.mkdir()
    out = locked / "dets.json"
    out.write_text("old")
    inode = out.stat().st_ino
    locked.chmod(0o555)
    done = run_locked_out(
        [sys.executable, "-m", "pixellib", "evaluate", str(path), str(dataset["images"]),
         "--limit", "1", "--model", str(r50_checkpoint), "--speed", "rapid", "-o", str(out)],
        locked, env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(DATA.parents[2])),
        timeout=300)
    assert done.returncode == 0, done.stderr
    assert isinstance(json.loads(out.read_text()), list) and out.stat().st_ino == inode
    assert [p.name for p in locked.iterdir()] == ["dets.json"]
