"""``Predictor.predict_batch``: several images per backbone forward, the results of one-image
calls. The same code runs on every device; CUDA joins the parametrisation where present."""
from __future__ import annotations

import copy
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from golden import match
from pixellib.errors import ImageReadError, InvalidArgumentError
from pixellib.model.detector import padded_size
from pixellib.predictor import Predictor, resized_shape

IMAGES = Path(__file__).parent / "data" / "images"
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def as_golden(det) -> dict:
    return {"boxes": det.boxes, "scores": det.scores, "classes": det.class_ids,
            "masks": det.masks}


def assert_same(one, batched) -> None:
    assert batched.image_size == one.image_size
    result = match(as_golden(one), batched.boxes, batched.scores, batched.class_ids,
                   batched.masks)
    assert result.ok, str(result)
    assert result.unmatched == 0, str(result)


@pytest.fixture(scope="module")
def photos():
    street = cv2.imread(str(IMAGES / "street.jpg"))
    small = cv2.imread(str(IMAGES / "small.jpg"))
    wide = cv2.imread(str(IMAGES / "wide.jpg"))
    return {"street": street, "street_flipped": street[:, ::-1].copy(), "small": small,
            "wide": wide}


@pytest.fixture(scope="module", params=DEVICES)
def predictor(request, r50_model):
    # Predictor moves a built model to its device: the shared fixture stays on the CPU
    model = r50_model if request.param == "cpu" else copy.deepcopy(r50_model)
    return Predictor(model, device=request.param)


@pytest.fixture(scope="module")
def one_by_one(predictor, photos):
    return {name: predictor(image) for name, image in photos.items()}


def test_same_size_images_share_a_forward_and_equal_one_image_calls(predictor, photos,
                                                                    one_by_one):
    names = ["street", "street_flipped"]
    assert padded_size(resized_shape(*photos["street"].shape[:2], 800, 1333)) == \
        padded_size(resized_shape(*photos["street_flipped"].shape[:2], 800, 1333))
    batched = predictor.predict_batch([photos[n] for n in names], batch_size=2)
    assert len(batched) == 2
    assert len(one_by_one["street"]) > 0
    for name, det in zip(names, batched):
        assert_same(one_by_one[name], det)
        # same padded size: the forward saw what a one-image pass sees, up to float rounding
        np.testing.assert_allclose(det.boxes, one_by_one[name].boxes, atol=1e-2)


def test_mixed_sizes_keep_their_order_and_results(predictor, photos, one_by_one):
    # street and wide differ in size (1196 and 1211 px wide once resized) but both pad to
    # 1216: one forward; small pads to 1088: its own
    names = ["small", "street", "wide", "street_flipped"]
    batched = predictor.predict_batch([photos[n] for n in names], batch_size=4)
    assert [d.image_size for d in batched] == [photos[n].shape[:2] for n in names]
    for name, det in zip(names, batched):
        assert_same(one_by_one[name], det)


def test_paths_and_class_filter_like_single_calls(predictor, one_by_one):
    paths = [IMAGES / "street.jpg", str(IMAGES / "small.jpg")]
    classes = sorted(set(one_by_one["street"].class_ids.tolist()))[:2]
    batched = predictor.predict_batch(paths, classes=classes, batch_size=2)
    for name, det in zip(["street", "small"], batched):
        assert set(det.class_ids.tolist()) <= set(classes)
        assert_same(one_by_one[name].with_classes(classes), det)


def test_pad_mixed_puts_different_sizes_in_one_forward(predictor, photos, one_by_one,
                                                       monkeypatch):
    calls = []
    forward = predictor.model.forward_batch

    def counting(images, *args, **kwargs):
        calls.append([tuple(t.shape) for t in images])
        return forward(images, *args, **kwargs)

    monkeypatch.setattr(predictor.model, "forward_batch", counting)
    names = ["street", "small"]  # padded to 800x1216 and 800x1088
    grouped = predictor.predict_batch([photos[n] for n in names], batch_size=2)
    assert len(calls) == 2  # different padded sizes: one forward each
    calls.clear()
    padded = predictor.predict_batch([photos[n] for n in names], batch_size=2, pad_mixed=True)
    assert len(calls) == 1 and len(calls[0]) == 2
    for name, det in zip(names, grouped):
        assert_same(one_by_one[name], det)
    for name, det in zip(names, padded):
        assert det.image_size == one_by_one[name].image_size
        # padding moves results near the border a little; most detections stay
        result = match(as_golden(one_by_one[name]), det.boxes, det.scores, det.class_ids,
                       det.masks)
        assert len(result.mask_ious) >= 0.8 * len(one_by_one[name]), str(result)


def test_batch_size_bounds_each_forward(predictor, photos, monkeypatch):
    calls = []
    forward = predictor.model.forward_batch

    def counting(images, *args, **kwargs):
        calls.append(len(images))
        return forward(images, *args, **kwargs)

    monkeypatch.setattr(predictor.model, "forward_batch", counting)
    small = photos["small"]
    out = predictor.predict_batch([small, small[:, ::-1].copy(), small], batch_size=2)
    assert calls == [2, 1]
    assert len(out) == 3


def test_default_batch_size_is_one_on_the_cpu(r50_model, photos, monkeypatch):
    predictor = Predictor(r50_model)
    calls = []
    forward = predictor.model.forward_batch
    monkeypatch.setattr(predictor.model, "forward_batch",
                        lambda images, *a, **k: calls.append(len(images)) or forward(images, *a,
                                                                                      **k))
    predictor.predict_batch([photos["small"]] * 2)
    assert calls == [1, 1]
    calls.clear()
    predictor.predict_batch([photos["small"]] * 2, batch_size=np.int64(2))  # numpy is fine
    assert calls == [2]


def test_empty_input_gives_no_detections(predictor):
    assert predictor.predict_batch([]) == []


@pytest.mark.parametrize("bad", [0, -1, 2.0, True, "4", np.bool_(True), np.int64(0)])
def test_bad_batch_size_is_refused(predictor, bad):
    with pytest.raises(InvalidArgumentError, match="batch_size"):
        predictor.predict_batch([np.zeros((8, 8, 3), np.uint8)], batch_size=bad)


def test_unreadable_image_is_named_before_any_forward(predictor, tmp_path, monkeypatch):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    monkeypatch.setattr(predictor.model, "forward_batch",
                        lambda *a, **k: pytest.fail("forward ran before reading finished"))
    with pytest.raises(ImageReadError, match="broken.jpg"):
        predictor.predict_batch([IMAGES / "small.jpg", bad])


def test_thin_strips_are_resized_to_at_least_one_pixel(r50_model):
    """A strip thinner than 1 : 2 * max_size / min_size would round its short side to 0;
    it stays 1 px thick and segments like any photo."""
    assert resized_shape(1, 1000, 800, 1333) == (1, 1333)
    assert resized_shape(5000, 1, 800, 1333) == (1333, 1)
    predictor = Predictor(r50_model, confidence=0.01)
    rng = np.random.default_rng(0)
    for shape in ((1, 1000, 3), (3000, 1, 3)):
        det = predictor(rng.integers(0, 256, shape, dtype=np.uint8))
        assert det.image_size == shape[:2]
        assert det.masks.shape == (len(det.boxes), *shape[:2])
        assert len(det.boxes) > 0
        assert (det.boxes[:, [0, 2]] <= shape[1]).all() and (det.boxes[:, [1, 3]] <= shape[0]).all()


def test_predictors_sharing_a_model_follow_it(r50_model):
    """A model shared by two predictors and moved by one is where both run: each reads its
    device (and autocast's device type) from the model, not from its own argument."""
    model = copy.deepcopy(r50_model)
    first, second = Predictor(model), Predictor(model)
    assert first.device == second.device == torch.device("cpu")
    model.to("meta")  # as Predictor(model, device="cuda") would move it
    assert first.device.type == second.device.type == "meta"


def test_one_image_or_path_is_not_a_batch(r50_model, photos, tmp_path):
    """A picture passed on its own was split into its rows (one "image" per row, hundreds of
    forwards); a path into its characters."""
    predictor = Predictor(r50_model, speed="rapid")
    calls = []
    handle = predictor.model.backbone.register_forward_hook(lambda *a: calls.append(1))
    try:
        for single in (photos["small"], str(tmp_path / "a.jpg"), tmp_path / "a.jpg",
                       torch.zeros(3, 8, 8)):
            with pytest.raises(InvalidArgumentError, match="list of images or paths, got one"):
                predictor.predict_batch(single)
        stack = np.stack([photos["small"]] * 2)  # a stack is a batch, said so
        with pytest.raises(InvalidArgumentError, match=r"one array of shape \(2, .*list\(array\)"):
            predictor.predict_batch(stack)
    finally:
        handle.remove()
    assert calls == []


@pytest.mark.parametrize("confidence", ["high", "0.5", [0.5], True, {}])
def test_confidence_must_be_a_number(r50_model, confidence):
    with pytest.raises(InvalidArgumentError, match="confidence must be a number between 0 and 1"):
        Predictor(r50_model, confidence=confidence)


@pytest.mark.parametrize("device, message", [
    ("gpu", "unknown device 'gpu'"),
    ("meta", "device 'meta' is not supported"),
    ([0], "unknown device"),
    ("cuda:99" if torch.cuda.is_available() else "cuda", "CUDA"),
])
def test_unusable_devices_are_refused_before_loading(tmp_path, device, message):
    missing = tmp_path / "not-loaded.pkl"  # the device is checked first: no model needed
    with pytest.raises(InvalidArgumentError, match=message):
        Predictor(missing, device=device)


def test_float16_on_the_cpu_warns(r50_model):
    with pytest.warns(UserWarning, match="float16.*many times slower"):
        predictor = Predictor(r50_model, precision="float16")
    assert predictor.precision == "float16"
