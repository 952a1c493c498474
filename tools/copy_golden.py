"""Copy the reference's golden outputs into tests/data/golden, compacted (developer tool).

    python tools/copy_golden.py ../shared/golden

Keeps the final outputs of every case; keeps stage traces only for two cases, with the large
per-proposal tensors cut to their first rows, so the copy stays small.
"""
import shutil
import sys
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent.parent / "tests" / "data"
FINAL = ("boxes", "scores", "classes", "masks", "mask_shape", "resized_hw", "pixellib_boxes",
         "pixellib_scores", "pixellib_class_names")
TRACE_CASES = {("r50_seed0", "street.default"), ("x101_seed1", "small.default")}
TRACE_ROWS = {"trace_box_predictor_class_logits": 300, "trace_box_predictor_box_deltas": 300,
              "trace_coarse_mask_logits": 10, "trace_mask_logits_224_first10": 4}


def main(src: str) -> None:
    src = Path(src)
    for image in sorted((src / "images").iterdir()):
        shutil.copy(image, OUT / "images" / image.name)
    for case_dir in sorted(p for p in src.iterdir() if p.name.endswith(("seed0", "seed1"))):
        (OUT / "golden" / case_dir.name).mkdir(parents=True, exist_ok=True)
        for f in sorted(case_dir.glob("*.npz")):
            data = np.load(f)
            keep = {k: data[k] for k in FINAL}
            if (case_dir.name, f.stem) in TRACE_CASES:
                for k in data.files:
                    if k.startswith("trace_"):
                        keep[k] = data[k][: TRACE_ROWS.get(k, len(data[k]))]
            np.savez_compressed(OUT / "golden" / case_dir.name / f.name, **keep)


if __name__ == "__main__":
    main(sys.argv[1])
