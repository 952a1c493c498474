"""Make the README's effects gallery (docs/img/effects_*.jpg) with the synthetic model.

The synthetic checkpoint has random weights: its "objects" are blobs with arbitrary class
names, so the pictures show what each effect does to a mask, not what a trained model finds.

    python examples/effects_gallery.py [--checkpoint FILE]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", help="model file (default: synthetic ResNet-50, seed 0)")
    p.add_argument("--out", default=str(ROOT / "docs" / "img"))
    args = p.parse_args(argv)

    import tempfile

    import cv2
    import numpy as np

    from pixellib.checkpoint.synthetic import write_checkpoint
    from pixellib.effects import apply_effect
    from pixellib.media.images import read_image, write_image
    from pixellib.predictor import Predictor

    checkpoint = args.checkpoint or write_checkpoint(
        Path(tempfile.mkdtemp()) / "r50.pkl", "resnet50", 0)
    image = read_image(ROOT / "tests" / "data" / "images" / "street.jpg")
    image = cv2.resize(image, (400, int(400 * image.shape[0] / image.shape[1])),
                       interpolation=cv2.INTER_AREA)
    det = Predictor(str(checkpoint), confidence=0.2)(image)
    backdrop = image[:, ::-1].copy()
    quality = (cv2.IMWRITE_JPEG_QUALITY, 80)
    for name, effect, kwargs in [
        ("blur_bg", "blur-bg=extreme", {}),
        ("replace_bg", "replace-bg", {"background": backdrop, "feather": 3}),
        ("pixelate_objects", "pixelate-objects=8", {}),
    ]:
        after = apply_effect(image, det, effect, **kwargs)
        pair = np.hstack([image, np.full((image.shape[0], 6, 3), 255, np.uint8), after])
        print(write_image(Path(args.out) / f"effects_{name}.jpg", pair, quality))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
