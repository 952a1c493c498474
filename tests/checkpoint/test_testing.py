"""The synthetic checkpoint generator reproduces the known digests, in memory and on disk."""
from __future__ import annotations

import numpy as np
import pytest

from pixellib.checkpoint import synthetic as testing

DIGESTS = {
    ("resnet50", 0): "af0caa4e8c433e328604e4b343c823f07926734a57d68ececaaa1896e0c3aa57",
    ("resnext101_32x8d", 1): "048007d0560083b6d0261604e012b2f719166fd398f18b992449d5f3c30cb5a2",
}


@pytest.mark.parametrize("arch,seed", list(DIGESTS))
def test_generator_matches_spec_digest(arch, seed):
    model = testing.make_checkpoint(arch, seed)
    assert len(model) == {"resnet50": 311, "resnext101_32x8d": 566}[arch] + 5
    assert testing.digest(model) == DIGESTS[(arch, seed)]


def test_written_file_is_the_same_checkpoint(r50_checkpoint):
    from pixellib.checkpoint.state_dict import read_checkpoint

    loaded = read_checkpoint(r50_checkpoint)
    assert testing.digest({k: v.numpy() for k, v in loaded.items()}) == DIGESTS[("resnet50", 0)]


def test_command_line_digest_and_write(tmp_path, capsys):
    testing.main(["resnet50", "0", "--digest"])
    assert capsys.readouterr().out.strip() == DIGESTS[("resnet50", 0)]
    out = tmp_path / "legacy.pkl"
    testing.main(["resnet50", "0", str(out), "--legacy-names"])
    from pixellib.checkpoint.state_dict import read_checkpoint

    keys = set(read_checkpoint(out))
    assert "roi_heads.mask_coarse_head.coarse_mask_fc1.weight" in keys
    assert "roi_heads.mask_point_head.fc1.weight" in keys
    assert not any(k.startswith("roi_heads.mask_head.") for k in keys)


def test_legacy_names_give_identical_detections(tmp_path, r50_model):
    """End to end: the legacy-named file loads into exactly the modern model's outputs."""
    import cv2

    from golden import IMAGES
    from pixellib.predictor import Predictor, load_model

    legacy = load_model(testing.write_checkpoint(tmp_path / "old.pkl", legacy_names=True))
    image = cv2.imread(str(IMAGES / "street.jpg"))
    a = Predictor(legacy, speed="rapid")(image)
    b = Predictor(r50_model, speed="rapid")(image)
    assert len(a) > 0
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.masks, b.masks)


@pytest.mark.parametrize("precision", ["bfloat16"])
def test_reduced_precision_runs_and_stays_close(r50_model, precision):
    """The opt-in autocast mode runs end to end and finds mostly the same objects."""
    import cv2

    from golden import IMAGES
    from pixellib.predictor import Predictor

    image = cv2.imread(str(IMAGES / "street.jpg"))
    full = Predictor(r50_model, speed="rapid")(image)
    reduced = Predictor(r50_model, speed="rapid", precision=precision)(image)
    assert reduced.boxes.dtype == np.float32 and reduced.masks.dtype == np.bool_
    assert abs(len(reduced) - len(full)) <= 0.2 * len(full)
    with pytest.raises(ValueError):
        Predictor(r50_model, precision="int8")
