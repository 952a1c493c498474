"""Fuzzing the public entry points with random arrays and random files: each call returns a
valid result or raises a PixellibError; never another exception type, a crash or a hang."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pixellib.errors import PixellibError

DTYPES = [np.uint8, np.uint16, np.int32, np.float32, np.float64, np.bool_]


@pytest.fixture(scope="module")
def ins(r50_model):
    from pixellib.torchbackend.instance import instanceSegmentation

    segmenter = instanceSegmentation()
    # rapid mode and a high threshold keep each forward short
    segmenter.load_model(r50_model, detection_speed="rapid", confidence=0.9)
    return segmenter


arrays = st.sampled_from(DTYPES).flatmap(
    lambda dt: hnp.arrays(
        dt, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6),
        elements=hnp.from_dtype(np.dtype(dt), allow_nan=True, allow_infinity=True),
    )
)


def _check_results(results, shape):
    h, w = shape
    n = len(results["class_ids"])
    assert results["boxes"].shape == (n, 4) and results["masks"].shape == (h, w, n)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(array=arrays)
def test_random_arrays_through_segment_frame_and_predictor(ins, array):
    from pixellib.predictor import Predictor

    before = array.copy()
    for call in (lambda a: ins.segmentFrame(a), lambda a: Predictor(ins._predictor.model,
                                                                     speed="rapid")(a)):
        try:
            out = call(array)
        except PixellibError:
            continue
        if isinstance(out, tuple):
            _check_results(out[0], array.shape[:2])
            assert out[1].shape == (*array.shape[:2], 3) and out[1].dtype == np.uint8
        else:
            assert out.masks.shape[1:] == array.shape[:2]
    np.testing.assert_array_equal(array, before)  # inputs are never modified


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=2048), suffix=st.sampled_from([".jpg", ".png", ".bmp", ".tif"]))
def test_random_files_through_segment_image(ins, tmp_path, data, suffix):
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(data)
    try:
        results, output = ins.segmentImage(str(path))
    except PixellibError as exc:
        assert path.name in str(exc)
        return
    _check_results(results, output.shape[:2])
