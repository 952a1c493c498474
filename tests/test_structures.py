"""``Detections``: what a user builds, indexes and converts."""
from __future__ import annotations

import numpy as np
import pytest

from pixellib.errors import InvalidArgumentError
from pixellib.export import to_coco_json
from pixellib.structures import Detections


def _detections(n=3, size=(6, 8), class_ids=None):
    masks = np.zeros((n, *size), bool)
    for k in range(n):
        masks[k, k, k:k + 2] = True
    return Detections(
        boxes=np.array([[k, k, k + 2, k + 1] for k in range(n)], np.float32).reshape(n, 4),
        scores=np.linspace(0.9, 0.5, n).astype(np.float32),
        class_ids=np.asarray(class_ids if class_ids is not None else range(n), np.int64),
        masks=masks, image_size=size)


@pytest.mark.parametrize("bad", [-1, 80, 200])
def test_class_ids_outside_coco_are_refused(bad):
    with pytest.raises(InvalidArgumentError, match=f"class_ids must be COCO class ids 0..79, "
                                                   f"got {bad}"):
        _detections(class_ids=[0, bad, 1])


@pytest.mark.parametrize("index", [True, False, np.bool_(True)])
def test_a_single_bool_is_not_an_index(index):
    with pytest.raises(InvalidArgumentError, match="not a single"):
        _detections()[index]


@pytest.mark.parametrize("index", [(0, 1), (slice(None), 0), np.array([[0, 1]]), [[0, 1]]])
def test_detections_are_one_dimensional(index):
    with pytest.raises(InvalidArgumentError, match="it is one-dimensional"):
        _detections()[index]


def test_indexing_keeps_every_field_and_empty_images_work():
    d = _detections()
    np.testing.assert_array_equal(d[1].masks[0], d.masks[1])
    np.testing.assert_array_equal(d[np.array([True, False, True])].class_ids, [0, 2])
    assert len(d[1:1]) == 0 and d[1:1].masks.shape == (0, 6, 8)
    empty = Detections.empty((0, 0))
    assert len(empty[0:0]) == 0 and empty[0:0].masks.shape == (0, 0, 0)
    assert len(Detections.empty((5, 0))[:]) == 0


def test_both_spellings_of_hair_dryer_name_class_78():
    """COCO's files (and our COCO JSON) say "hair drier", PixelLib "hair dryer"."""
    from pixellib.classes import class_ids

    d = _detections(class_ids=[78, 0, 78])
    for name in ("hair dryer", "hair drier", "Hair_Drier"):
        assert class_ids([name]) == [78]
        np.testing.assert_array_equal(d.with_classes([name]).class_ids, [78, 78])
    names = {c["id"]: c["name"] for c in to_coco_json(d)["categories"]}
    assert names[89] == "hair drier"


def test_detections_do_not_pretend_to_be_an_array():
    with pytest.raises(TypeError, match="not one array"):
        np.asarray(_detections())


def test_coco_json_takes_numpy_ids_and_refuses_others():
    import json

    out = json.loads(json.dumps(to_coco_json(_detections(), image_id=np.int64(7))))
    assert out["images"][0]["id"] == 7 and {a["image_id"] for a in out["annotations"]} == {7}
    from pathlib import Path

    named = json.loads(json.dumps(to_coco_json(_detections(), file_name=Path("a/b.jpg"))))
    assert named["images"][0]["file_name"] == "a/b.jpg"  # a path is written as its text
    for bad in ("7", 7.0, True, None):
        with pytest.raises(InvalidArgumentError, match="image_id must be a whole number"):
            to_coco_json(_detections(), image_id=bad)


def test_repr_is_one_short_line_naming_the_objects():
    """The dataclass repr printed every box and mask row: about 10 KB at 100 objects."""
    many = _detections(n=100, size=(100, 120), class_ids=np.arange(100) % 80)
    text = repr(many)
    assert "\n" not in text and len(text) < 200, text
    assert text.startswith("Detections(100 objects in 120x100: person ") and text.endswith(", ...)")
    assert repr(many[:1]).startswith("Detections(1 object in 120x100: person ")
    assert repr(Detections.empty((48, 64))) == "Detections(0 objects in 64x48)"


def test_a_model_that_is_not_a_path_is_named_as_such():
    from pixellib.predictor import Predictor

    for bad in (None, 123):
        with pytest.raises(TypeError, match="the model must be a checkpoint path"):
            Predictor(bad)
