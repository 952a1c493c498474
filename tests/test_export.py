"""pixellib.export: polygons, object extraction, COCO RLE and JSON."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis.extra import numpy as hnp

from pixellib.classes import COCO_CLASSES
from pixellib.export import (
    COCO_CATEGORY_IDS,
    extract_objects,
    mask_polygons,
    mask_to_rle,
    rle_to_mask,
    to_coco_json,
)
from pixellib.structures import Detections

RNG = np.random.default_rng(0)


def _blob(seed: int, h=64, w=80) -> np.ndarray:
    """A random smooth blob mask (thresholded blurred noise), possibly several parts/holes."""
    noise = np.random.default_rng(seed).random((h, w)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), 6)
    return smooth > np.quantile(smooth, 0.6)


# ---------------------------------------------------------------- polygons

@pytest.mark.parametrize("seed", range(8))
def test_polygons_rasterise_back_to_the_mask(seed):
    mask = _blob(seed)
    polygons = mask_polygons(mask)
    assert polygons and all(p.ndim == 2 and p.shape[1] == 2 for p in polygons)
    assert all(p.dtype == np.int64 for p in polygons)
    # RETR_LIST has no hierarchy: fill outer outlines, then cut holes traced clockwise-inward
    # by filling with XOR parity (each hole outline lies inside exactly one outer outline).
    canvas = np.zeros(mask.shape, np.uint8)
    for p in polygons:
        layer = np.zeros_like(canvas)
        cv2.fillPoly(layer, [p.reshape(-1, 1, 2).astype(np.int32)], 1)
        canvas ^= layer
    iou = np.logical_and(canvas, mask).sum() / np.logical_or(canvas, mask).sum()
    assert iou >= 0.9


def test_polygon_points_are_pixel_indices():
    mask = np.zeros((10, 12), bool)
    mask[2:5, 3:8] = True  # rows 2..4, columns 3..7
    (outline,) = mask_polygons(mask)
    assert outline[:, 0].min() == 3 and outline[:, 0].max() == 7
    assert outline[:, 1].min() == 2 and outline[:, 1].max() == 4
    assert sorted(map(tuple, outline.tolist())) == [(3, 2), (3, 4), (7, 2), (7, 4)]


def test_polygons_touching_the_border_and_single_pixels():
    mask = np.zeros((5, 5), bool)
    mask[0, 0] = True
    mask[:, 4] = True
    polygons = sorted(mask_polygons(mask), key=len)
    assert polygons[0].tolist() == [[0, 0]]  # like the seed's array([[295, 497]])
    assert polygons[1][:, 0].tolist() == [4, 4] and sorted(polygons[1][:, 1]) == [0, 4]
    assert mask_polygons(np.zeros((4, 4), bool)) == []
    with pytest.raises(ValueError, match="shape"):
        mask_polygons(np.zeros((2, 4, 4), bool))


# ---------------------------------------------------------------- extraction

def test_extract_from_masks():
    image = RNG.integers(1, 256, (30, 40, 3), np.uint8)
    masks = np.zeros((3, 30, 40), bool)
    masks[0, 5:10, 7:20] = True
    masks[0, 6, 3] = True  # widens the extent to column 3
    masks[1, 0, 0] = True
    before = image.copy()
    crops = extract_objects(image, masks, None)
    np.testing.assert_array_equal(image, before)
    assert crops[0].shape == (5, 17, 3) and crops[0].dtype == np.uint8
    inside = masks[0, 5:10, 3:20]
    np.testing.assert_array_equal(crops[0][inside], image[5:10, 3:20][inside])
    assert (crops[0][~inside] == 0).all()
    np.testing.assert_array_equal(crops[1], image[:1, :1])
    assert crops[2].shape == (0, 0, 3)  # empty mask
    crops[1][:] = 0
    np.testing.assert_array_equal(image, before)  # crops are copies


def test_extract_from_boxes():
    image = RNG.integers(0, 256, (30, 40, 3), np.uint8)
    boxes = np.array([[5, 6, 15, 20], [30, 25, 60, 50], [10, 10, 10, 20], [-5, -5, 3, 2]])
    crops = extract_objects(image, None, boxes, from_box=True)
    np.testing.assert_array_equal(crops[0], image[6:20, 5:15])
    np.testing.assert_array_equal(crops[1], image[25:30, 30:40])  # clipped
    assert crops[2].shape == (0, 0, 3)
    np.testing.assert_array_equal(crops[3], image[0:2, 0:3])


def test_extract_errors():
    image = np.zeros((5, 5, 3), np.uint8)
    with pytest.raises(ValueError, match="boxes"):
        extract_objects(image, np.zeros((1, 5, 5), bool), None, from_box=True)
    with pytest.raises(ValueError, match="masks"):
        extract_objects(image, None, np.zeros((1, 4)))
    with pytest.raises(ValueError, match=r"\(N, 5, 5\)"):
        extract_objects(image, np.zeros((1, 4, 5), bool), None)


# ---------------------------------------------------------------- RLE

@pytest.mark.parametrize(
    "mask, counts",
    [
        (np.ones((1, 1), bool), "01"),
        (np.zeros((2, 2), bool), "4"),
        (np.ones((2, 3), bool), "06"),
        # column-major runs [1, 2, 5, 1, 1]; the 4th and 5th are stored as the differences
        # 1 - 2 = -1 and 1 - 5 = -4: 31 + 48 = 'O' and 28 + 48 = 'L'
        (np.array([[0, 1, 0, 0, 1], [1, 0, 0, 0, 0]], bool), "125OL"),
    ],
)
def test_rle_known_values(mask, counts):
    rle = mask_to_rle(mask)
    assert rle["size"] == list(mask.shape)
    assert rle["counts"] == counts
    np.testing.assert_array_equal(rle_to_mask(rle), mask)


def test_rle_hand_computed_differences():
    # 1x12 mask, runs 2 zeros, 5 ones, 3 zeros, 2 ones -> [2, 5, 3, 2]; the 4th run is
    # written as 2 - 5 = -3: group -3 & 31 = 29 with the sign bit, char 29 + 48 = 'M'.
    mask = np.array([[0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1]], bool)
    assert mask_to_rle(mask)["counts"] == "253M"
    # a run of 100: 100 = 0b11_00100 -> groups 4 (+0x20 more) then 3: chars 'T', '3'
    long = np.zeros((1, 100), bool)
    assert mask_to_rle(long)["counts"] == "T3"


@settings(max_examples=100, deadline=None)
@given(mask=hnp.arrays(bool, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=40)))
def test_rle_round_trip(mask):
    rle = mask_to_rle(mask)
    assert set(rle["counts"]) <= {chr(c) for c in range(48, 48 + 64)}
    np.testing.assert_array_equal(rle_to_mask(rle), mask)
    np.testing.assert_array_equal(rle_to_mask({**rle, "counts": rle["counts"].encode()}), mask)


def test_rle_of_blobs_and_uncompressed_counts():
    for seed in range(4):
        mask = _blob(seed, 120, 90)
        np.testing.assert_array_equal(rle_to_mask(mask_to_rle(mask)), mask)
    assert rle_to_mask({"size": [2, 2], "counts": [1, 2, 1]}).tolist() == [
        [False, True], [True, False]]


@pytest.mark.parametrize(
    "rle", [{"size": [2, 2], "counts": "5"}, {"size": [2, 2], "counts": "0\x7f"},
            {"size": [2, 2], "counts": "P"}, {"size": [2, 2], "counts": [3, 2]}],
)
def test_rle_bad_input(rle):
    with pytest.raises(ValueError):
        rle_to_mask(rle)


@pytest.mark.parametrize(("rle", "said"), [
    ({"counts": "5"}, "no 'size' key"), ({"size": [2, 2]}, "no 'counts' key"),
    ({"size": [3], "counts": [3]}, "'size' must be [height, width]"),
    ({"size": [2.0, 2], "counts": [4]}, "'size' must be [height, width]"),
    ({"size": [2, 2], "counts": None}, "'counts' must be a string or a list of runs, not NoneType"),
    ("5", "a str, not a dict"),
])
def test_rle_that_is_not_rle_is_named(rle, said):
    from pixellib.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match="not a COCO RLE") as e:
        rle_to_mask(rle)
    assert said in str(e.value)


# ---------------------------------------------------------------- COCO JSON

def test_category_ids_follow_coco():
    assert len(set(COCO_CATEGORY_IDS)) == 80
    assert COCO_CATEGORY_IDS[COCO_CLASSES.index("person")] == 1
    assert COCO_CATEGORY_IDS[COCO_CLASSES.index("stop sign")] == 13
    assert COCO_CATEGORY_IDS[COCO_CLASSES.index("backpack")] == 27
    assert COCO_CATEGORY_IDS[COCO_CLASSES.index("dining table")] == 67
    assert COCO_CATEGORY_IDS[COCO_CLASSES.index("toothbrush")] == 90


def test_to_coco_json():
    masks = np.zeros((2, 20, 30), bool)
    masks[0, 2:8, 3:9] = True
    masks[1, 10:15, 0:30] = True
    dets = Detections(
        boxes=np.array([[3.0, 2.0, 9.5, 8.0], [0.0, 10.0, 30.0, 15.0]], np.float32),
        scores=np.array([0.9, 0.6], np.float32),
        class_ids=np.array([0, 79], np.int64),
        masks=masks,
        image_size=(20, 30),
    )
    doc = json.loads(json.dumps(to_coco_json(dets, image_id=7, file_name="a.jpg")))
    assert doc["images"] == [{"id": 7, "width": 30, "height": 20, "file_name": "a.jpg"}]
    first, second = doc["annotations"]
    assert first["bbox"] == [3.0, 2.0, 6.5, 6.0] and first["category_id"] == 1
    assert first["area"] == 36.0 and first["image_id"] == 7 and first["iscrowd"] == 0
    assert first["score"] == pytest.approx(0.9) and first["id"] == 1
    assert second["category_id"] == 90
    np.testing.assert_array_equal(rle_to_mask(second["segmentation"]), masks[1])
    assert len(doc["categories"]) == 80
    assert {"id": 89, "name": "hair drier"} in doc["categories"]
    empty = to_coco_json(Detections.empty((5, 6)))
    assert empty["annotations"] == [] and empty["images"][0]["width"] == 6


def test_extract_objects_keeps_the_gap_unless_asked_to_drop_it_as_pixellib_does():
    image = np.arange(6 * 7 * 3, dtype=np.uint8).reshape(6, 7, 3)
    mask = np.zeros((1, 6, 7), bool)
    mask[0, 1, 1:3] = True   # two parts: rows 1 and 4, columns 1-2 and 5
    mask[0, 4, 5] = True
    kept, = extract_objects(image, mask, None)
    assert kept.shape == (4, 5, 3)  # rows 1..4, columns 1..5: the bounding extent
    assert (kept[1:3] == 0).all() and (kept[0, 0] == image[1, 1]).all()
    dropped, = extract_objects(image, mask, None, drop_gaps=True)
    assert dropped.shape == (2, 3, 3)  # rows 1, 4; columns 1, 2, 5
    np.testing.assert_array_equal(dropped, np.where(mask[0, :, :, None], image, 0)[
        np.ix_([1, 4], [1, 2, 5])])
    one_part = np.zeros((1, 6, 7), bool)
    one_part[0, 2:4, 1:6] = True
    np.testing.assert_array_equal(extract_objects(image, one_part, None)[0],
                                  extract_objects(image, one_part, None, drop_gaps=True)[0])


def test_save_extracts_leaves_nothing_when_one_cannot_be_written(tmp_path):
    """A write failing half-way (here a crop too wide for JPEG) left the first crops."""
    from pixellib.export import save_extracts

    crops = [np.full((4, 4, 3), 9, np.uint8), np.zeros((1, 70_000, 3), np.uint8)]
    folder = tmp_path / "a_extracts"
    with pytest.raises(Exception, match="70000"):
        save_extracts(crops, folder, from_box=False)
    assert not folder.exists()
    folder.mkdir()
    (folder / "mine.txt").write_text("a file of the user's")
    with pytest.raises(Exception, match="70000"):
        save_extracts(crops, folder, from_box=False)
    assert [p.name for p in folder.iterdir()] == ["mine.txt"]  # its folder: kept
