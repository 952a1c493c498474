"""Cut-outs and mask files: they decode back to the masks they came from."""
from __future__ import annotations

import cv2
import numpy as np
from test_effects import H, W, make_detections, make_image

from pixellib import export
from pixellib.structures import Detections


def test_rgba_cutouts_decode_back_to_the_mask(tmp_path):
    image, det = make_image(), make_detections()
    image0, masks0 = image.copy(), det.masks.copy()
    paths = export.save_cutouts(image, det, tmp_path, prefix="street_")
    assert [p.name for p in paths] == ["street_object_1_person.png", "street_object_2_car.png",
                                       "street_object_3_dog.png"]
    for k, path in enumerate(paths):
        decoded = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert decoded.shape[2] == 4
        rows = np.flatnonzero(det.masks[k].any(1))
        cols = np.flatnonzero(det.masks[k].any(0))
        crop = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        mask = det.masks[k][crop]
        assert np.array_equal(decoded[:, :, 3] == 255, mask)  # alpha = mask, cropped to it
        assert set(np.unique(decoded[:, :, 3])) <= {0, 255}
        assert np.array_equal(decoded[:, :, :3][mask], image[crop][mask])
        assert (decoded[~mask] == 0).all()
    assert np.array_equal(image, image0) and np.array_equal(det.masks, masks0)
    assert not list(tmp_path.glob(".*"))  # atomic writes leave no temporary file


def test_mask_files_and_the_label_image(tmp_path):
    det = make_detections()
    paths = export.save_masks(det, tmp_path)
    assert [p.name for p in paths] == ["mask_1_person.png", "mask_2_car.png", "mask_3_dog.png",
                                       "labels.png"]
    for k in range(3):
        decoded = cv2.imread(str(paths[k]), cv2.IMREAD_UNCHANGED)
        assert decoded.dtype == np.uint8 and decoded.shape == (H, W)
        assert np.array_equal(decoded == 255, det.masks[k])
        assert set(np.unique(decoded)) <= {0, 255}
    labels = cv2.imread(str(paths[3]), cv2.IMREAD_UNCHANGED)
    assert labels.dtype == np.uint8
    expected = np.zeros((H, W), np.uint8)
    for k in (3, 2, 1):
        expected[det.masks[k - 1]] = k
    assert np.array_equal(labels, expected)


def test_label_image_overlap_goes_to_the_first_object():
    masks = np.zeros((2, 4, 4), bool)
    masks[0, :2] = True
    masks[1, 1:] = True
    det = Detections(np.zeros((2, 4), np.float32), np.array([0.9, 0.8], np.float32),
                     np.zeros(2, np.int64), masks, (4, 4))
    assert export.label_image(det).tolist() == [[1] * 4, [1] * 4, [2] * 4, [2] * 4]


def test_label_png_is_16_bit_beyond_255_objects(tmp_path):
    n, h, w = 300, 20, 15  # one pixel per object
    masks = np.zeros((n, h, w), bool)
    masks[np.arange(n), np.arange(n) // w, np.arange(n) % w] = True
    det = Detections(np.zeros((n, 4), np.float32), np.linspace(1, 0.5, n, dtype=np.float32),
                     np.zeros(n, np.int64), masks, (h, w))
    labels = export.label_image(det)
    assert labels.dtype == np.uint16 and labels.max() == n
    path = export.save_masks(det[:0], tmp_path / "none")[-1]
    assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED).dtype == np.uint8  # 0 objects: 8-bit
    path = export.save_masks(det, tmp_path)[-1]
    decoded = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert decoded.dtype == np.uint16
    assert np.array_equal(decoded, labels)
    assert decoded.reshape(-1)[:n].tolist() == list(range(1, n + 1))
