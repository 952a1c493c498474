"""Our COCO RLE encoder against pycocotools' own, string for string."""
from __future__ import annotations

import numpy as np
import pycocotools.mask as mask_util  # the `test` extra
import pytest

from pixellib.export import mask_to_rle, rle_to_mask


def _theirs(mask: np.ndarray) -> dict:
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _edge_masks():
    yield "empty", np.zeros((7, 5), bool)
    yield "full", np.ones((7, 5), bool)
    one = np.zeros((9, 11), bool)
    one[4, 6] = True
    yield "one pixel", one
    corner = np.zeros((9, 11), bool)
    corner[-1, -1] = True
    yield "last pixel", corner
    first = np.zeros((9, 11), bool)
    first[0, 0] = True
    yield "first pixel", first
    yield "single row", np.array([[0, 1, 1, 0, 1, 1, 1, 0, 0, 1]], bool)
    yield "single column", np.array([[1], [1], [0], [1], [0], [0]], bool)
    yield "1x1 on", np.ones((1, 1), bool)
    yield "1x1 off", np.zeros((1, 1), bool)
    stripes = np.zeros((20, 30), bool)
    stripes[:, ::3] = True
    yield "stripes", stripes
    long_runs = np.zeros((300, 400), bool)  # runs long enough for 3+ character groups
    long_runs[50:250, 100:380] = True
    yield "long runs", long_runs
    rng = np.random.default_rng(3)
    fortran = np.asfortranarray(rng.random((13, 17)) > 0.5)
    yield "Fortran order", fortran
    yield "non-contiguous view", (rng.random((40, 60)) > 0.3)[::2, 1::3]
    yield "transposed view", (rng.random((21, 8)) > 0.6).T
    yield "uint8 0/1", (rng.random((10, 12)) > 0.5).astype(np.uint8)


EDGE = list(_edge_masks())


@pytest.mark.parametrize("name, mask", EDGE, ids=[n for n, _ in EDGE])
def test_edge_masks_match_pycocotools(name, mask):
    ours = mask_to_rle(mask)
    assert ours == _theirs(mask)
    np.testing.assert_array_equal(rle_to_mask(ours), mask.astype(bool))
    np.testing.assert_array_equal(mask_util.decode({"size": ours["size"],
                                                    "counts": ours["counts"].encode()}),
                                  mask.astype(np.uint8))


@pytest.mark.parametrize("seed", range(8))
def test_random_masks_match_pycocotools(seed):
    rng = np.random.default_rng(seed)
    for _ in range(25):
        h, w = rng.integers(1, 120, 2)
        kind = rng.integers(3)
        if kind == 0:  # salt and pepper at a random density
            mask = rng.random((h, w)) < rng.random()
        elif kind == 1:  # a few blobs: long runs and large differences between runs
            mask = np.zeros((h, w), bool)
            for _ in range(rng.integers(1, 5)):
                y0, x0 = rng.integers(0, h), rng.integers(0, w)
                mask[y0:y0 + rng.integers(1, h + 1), x0:x0 + rng.integers(1, w + 1)] = True
        else:  # big image, sparse: runs of thousands
            mask = np.zeros((h * 7, w * 9), bool)
            mask[rng.integers(0, h * 7, 3), rng.integers(0, w * 9, 3)] = True
        assert mask_to_rle(mask) == _theirs(mask), (seed, mask.shape, kind)
